/* status.c: the pool's `status` answer: every VM, its process's RSS, the latest events */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "pool/pool.h"

bool pool_proc_rss(pid_t pid, uint64_t *anon, uint64_t *shmem)
{
	char path[64], line[256];
	unsigned got = 0;
	FILE *f;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kb;

		if (sscanf(line, "RssAnon: %llu kB", &kb) == 1)
			*anon = kb * 1024, got |= 1;
		else if (sscanf(line, "RssShmem: %llu kB", &kb) == 1)
			*shmem = kb * 1024, got |= 2;
	}
	fclose(f);
	return got == 3;
}

static json_t *vm_json(struct pool *p, struct pool_vm *v)
{
	uint64_t anon = 0, shmem = 0;
	bool rss = v->state == VM_UP && pool_proc_rss(v->pid, &anon, &shmem);
	json_t *o = json_pack(
	    "{s:s, s:s, s:i, s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:b}", "name",
	    v->name, "state", pool_state_name(v), "pid", (int)v->pid, "child", v->child, "socket",
	    v->sock, "shares", (json_int_t)v->shares, "mem_bytes",
	    (json_int_t)(v->mem_pages * POOL_PAGE), "resident_bytes",
	    (json_int_t)(v->resident * POOL_PAGE), "swapped_bytes",
	    (json_int_t)(v->swapped * POOL_PAGE), "limit_bytes",
	    (json_int_t)((v->state == VM_LAUNCHED ? v->launch_limit : v->limit_want) * POOL_PAGE),
	    "target_bytes", (json_int_t)(v->target * POOL_PAGE), "charge_bytes",
	    (json_int_t)(pool_charge(v) * POOL_PAGE), "paused", v->paused, "late", v->late, "stuck",
	    v->stuck);

	if (!o)
		return NULL;
	json_object_set_new(o, "wss_bytes",
			    v->have_wss ? json_integer((json_int_t)(v->wss_pages * POOL_PAGE))
					: json_null());
	json_object_set_new(o, "stall_pct", json_real(v->stall * 100));
	json_object_set_new(o, "refault_pct", json_real(v->refault * 100));
	json_object_set_new(o, "faults_per_s", json_real(v->fault_rate));
	json_object_set_new(o, "swapins_per_s", json_real(v->swapin_rate));
	json_object_set_new(o, "swapin_bytes_per_s", json_real(v->in_rate));
	json_object_set_new(o, "swapout_bytes_per_s", json_real(v->out_rate));
	json_object_set_new(o, "rss_anon_bytes",
			    rss ? json_integer((json_int_t)anon) : json_null());
	json_object_set_new(o, "rss_shmem_bytes",
			    rss ? json_integer((json_int_t)shmem) : json_null());
	json_object_set_new(o, "why",
			    json_string(v->stuck	      ? v->stuck_why
					: v->state == VM_GONE ? v->gone_why
							      : ""));
	if (v->child && v->reaped)
		json_object_set_new(o, "exit",
				    WIFEXITED(v->wstatus)
					? json_pack("{s:i}", "status", WEXITSTATUS(v->wstatus))
					: json_pack("{s:i}", "signal", WTERMSIG(v->wstatus)));
	json_object_set_new(
	    o, "up_s",
	    json_real(v->t_up ? (double)((v->t_gone ? v->t_gone : pool_now(p)) - v->t_up) / 1e9
			      : 0));
	return o;
}

json_t *pool_status_json(struct pool *p)
{
	json_t *vms = json_array(), *evs = json_array(), *o;
	uint64_t charged = 0, resident = 0;

	for (unsigned i = 0; i < p->nvm; i++) {
		charged += pool_charge(p->vm[i]);
		if (p->vm[i]->state == VM_UP)
			resident += p->vm[i]->resident;
		json_array_append_new(vms, vm_json(p, p->vm[i]));
	}
	for (unsigned i = p->nev > POOL_EVENTS ? p->nev - POOL_EVENTS : 0; i < p->nev; i++) {
		const struct pool_event *e = &p->ev[i % POOL_EVENTS];

		json_array_append_new(
		    evs, json_pack("{s:f, s:s, s:s}", "t", e->t, "vm", e->vm, "what", e->what));
	}
	o = json_pack("{s:b, s:f, s:s, s:I, s:I, s:I, s:b, s:i, s:o, s:o}", "ok", 1, "t",
		      (double)pool_now(p) / 1e9, "policy", pool_policy_name(p->pp.policy),
		      "budget_bytes", (json_int_t)(p->pp.budget * POOL_PAGE), "charged_bytes",
		      (json_int_t)(charged * POOL_PAGE), "resident_bytes",
		      (json_int_t)(resident * POOL_PAGE), "over_budget", charged > p->pp.budget,
		      "interval_ms", (int)p->interval_ms, "vms", vms, "events", evs);
	return o;
}
