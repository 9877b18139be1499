/* series.c: the pool's time series: every VM's memory and rates per decision, and events */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pool.h"

/*
 * JSON lines (the default): one object per VM per decision, {"t", "vm", ...},
 * one for the pool {"t", "pool": {...}}, and one per event {"t", "event", "vm"}.
 * CSV (a path ending in .csv): the same columns, a row per VM per decision and a
 * row per event (kind "event", its text in the last column). Times are seconds
 * on the pool's clock; memory in bytes.
 */
static const char csv_head[] =
    "t,kind,vm,state,resident_bytes,swapped_bytes,limit_bytes,"
    "target_bytes,wss_bytes,stall_pct,refault_pct,faults_per_s,swapins_per_s,"
    "swapin_bytes_per_s,swapout_bytes_per_s,event\n";

int pool_series_open(struct pool *p, const char *path)
{
	size_t n = strlen(path);

	p->series = fopen(path, "w");
	if (!p->series)
		return -errno;
	p->series_csv = n > 4 && !strcmp(path + n - 4, ".csv");
	if (p->series_csv)
		fputs(csv_head, p->series);
	fflush(p->series);
	return 0;
}

void pool_series_close(struct pool *p)
{
	if (p->series)
		fclose(p->series);
	p->series = NULL;
}

/* A CSV field: quoted, inner quotes doubled. */
static void csv_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void pool_series_sample(struct pool *p)
{
	double t = (double)pool_now(p) / 1e9;
	uint64_t charged = 0, resident = 0;

	if (!p->series)
		return;
	for (unsigned i = 0; i < p->nvm; i++) {
		struct pool_vm *v = p->vm[i];
		uint64_t lim = v->state == VM_LAUNCHED ? v->launch_limit : v->limit_want;
		char wss[32] = "null";

		if (v->state == VM_GONE || v->state == VM_WAITING)
			continue;
		charged += pool_charge(v);
		resident += v->resident;
		if (v->have_wss)
			snprintf(wss, sizeof(wss), "%llu",
				 (unsigned long long)(v->wss_pages * POOL_PAGE));
		if (p->series_csv) {
			fprintf(
			    p->series,
			    "%.3f,vm,%s,%s,%llu,%llu,%llu,%llu,%s,%.2f,%.2f,%.0f,%.0f,%.0f,%.0f,\n",
			    t, v->name, pool_state_name(v),
			    (unsigned long long)(v->resident * POOL_PAGE),
			    (unsigned long long)(v->swapped * POOL_PAGE),
			    (unsigned long long)(lim * POOL_PAGE),
			    (unsigned long long)(v->target * POOL_PAGE), v->have_wss ? wss : "",
			    v->stall * 100, v->refault * 100, v->fault_rate, v->swapin_rate,
			    v->in_rate, v->out_rate);
			continue;
		}
		fprintf(p->series,
			"{\"t\":%.3f,\"vm\":\"%s\",\"state\":\"%s\",\"resident_bytes\":%llu,"
			"\"swapped_bytes\":%llu,\"limit_bytes\":%llu,\"target_bytes\":%llu,"
			"\"wss_bytes\":%s,\"stall_pct\":%.2f,\"refault_pct\":%.2f,"
			"\"faults_per_s\":%.0f,"
			"\"swapins_per_s\":%.0f,\"swapin_bytes_per_s\":%.0f,"
			"\"swapout_bytes_per_s\":%.0f}\n",
			t, v->name, pool_state_name(v),
			(unsigned long long)(v->resident * POOL_PAGE),
			(unsigned long long)(v->swapped * POOL_PAGE),
			(unsigned long long)(lim * POOL_PAGE),
			(unsigned long long)(v->target * POOL_PAGE), wss, v->stall * 100,
			v->refault * 100, v->fault_rate, v->swapin_rate, v->in_rate, v->out_rate);
	}
	if (p->series_csv)
		fprintf(p->series, "%.3f,pool,,%s,%llu,,%llu,%llu,,,,,,,,\n", t,
			pool_policy_name(p->pp.policy), (unsigned long long)(resident * POOL_PAGE),
			(unsigned long long)(charged * POOL_PAGE),
			(unsigned long long)(p->pp.budget * POOL_PAGE));
	else
		fprintf(p->series,
			"{\"t\":%.3f,\"pool\":{\"policy\":\"%s\",\"budget_bytes\":%llu,"
			"\"charged_bytes\":%llu,\"resident_bytes\":%llu}}\n",
			t, pool_policy_name(p->pp.policy),
			(unsigned long long)(p->pp.budget * POOL_PAGE),
			(unsigned long long)(charged * POOL_PAGE),
			(unsigned long long)(resident * POOL_PAGE));
	fflush(p->series);
}

void pool_series_event(struct pool *p, const struct pool_event *e)
{
	json_t *o;
	char *s;

	if (!p->series)
		return;
	if (p->series_csv) {
		fprintf(p->series, "%.3f,event,%s,,,,,,,,,,,,,", e->t, e->vm);
		csv_str(p->series, e->what);
		fputc('\n', p->series);
		fflush(p->series);
		return;
	}
	/* event texts quote names and error messages: let jansson escape them */
	o = json_pack("{s:f, s:s, s:s}", "t", e->t, "vm", e->vm, "event", e->what);
	s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
	if (s)
		fprintf(p->series, "%s\n", s);
	free(s);
	json_decref(o);
	fflush(p->series);
}
