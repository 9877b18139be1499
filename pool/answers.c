/* answers.c: what the VMs answer: their stats and working sets; VMs that cannot shrink */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "mm/batch.h"
#include "pool/pool.h"

/* Numbers from answers: a missing or malformed field reads 0. */
static uint64_t ju(json_t *o, const char *k)
{
	json_t *j = json_object_get(o, k);

	return json_is_integer(j) && json_integer_value(j) > 0 ? (uint64_t)json_integer_value(j)
							       : 0;
}

/* Resident above its limit and not coming down: reclaim cannot shrink it. */
static void check_stuck(struct pool *p, struct pool_vm *v, uint64_t now)
{
	uint64_t lim = v->limit, slack = mm_reclaim_batch(lim);
	bool over = lim && v->resident > lim + slack;
	char why[160] = "";

	if (v->reclaim_stalled)
		snprintf(why, sizeof(why),
			 "cannot shrink: its reclaim stalled (swap full or failing: %" PRIu64
			 " write errors); %" PRIu64 " MiB resident, limit %" PRIu64 " MiB",
			 v->write_errors, v->resident / 256, lim / 256);
	if (!over) {
		v->over_t = 0;
	} else if (!v->over_t || v->resident + slack < v->over_res) {
		v->over_t = now; /* over, but coming down: give it time */
		v->over_res = v->resident;
	} else if (!*why && now - v->over_t > (uint64_t)p->stuck_ms * 1000000) {
		snprintf(why, sizeof(why),
			 "cannot shrink: %" PRIu64 " MiB resident stays above its %" PRIu64
			 " MiB limit for %.1f s",
			 v->resident / 256, lim / 256, (double)(now - v->over_t) / 1e9);
	}
	if (*why && !v->stuck && (over || v->reclaim_stalled)) {
		v->stuck = true;
		snprintf(v->stuck_why, sizeof(v->stuck_why), "%s", why);
		pool_event(p, v, "%s (the pool charges it what it holds and goes on)", why);
	} else if (v->stuck && !over && !v->reclaim_stalled) {
		v->stuck = false;
		pool_event(p, v, "shrinks again: %" PRIu64 " MiB resident, limit %" PRIu64 " MiB",
			   v->resident / 256, lim / 256);
	}
}

/* What the pool cannot do without in an ok `stats` answer: NULL when it is all there. */
static const char *stats_lack(json_t *ans)
{
	json_t *vm = json_object_get(ans, "vm"), *pg = json_object_get(ans, "pager");

	if (!json_is_object(pg))
		return "it runs without the pager (--pager off): the pool cannot set its "
		       "memory limit";
	if (!json_is_integer(json_object_get(vm, "pages")) || !ju(vm, "pages") ||
	    !json_is_integer(json_object_get(pg, "resident_pages")) ||
	    !json_is_integer(json_object_get(pg, "limit_pages")))
		return "its stats lack vm.pages, pager.resident_pages or pager.limit_pages";
	return NULL;
}

static void take_stats(struct pool *p, struct pool_vm *v, json_t *ans, uint64_t sent_ns)
{
	json_t *vm = json_object_get(ans, "vm"), *pg = json_object_get(ans, "pager");
	uint64_t now = pool_now(p), stall, refault, faults, swapins, in, out;
	double dt = v->t_sample ? (double)(now - v->t_sample) / 1e9 : 0;

	v->mem_pages = ju(vm, "pages");
	v->cpus = ju(vm, "cpus") ? ju(vm, "cpus") : 1;
	v->paused = json_is_true(json_object_get(vm, "paused"));
	v->resident = ju(pg, "resident_pages");
	v->swapped = ju(pg, "swapped_pages");
	v->limit = ju(pg, "limit_pages");
	v->write_errors = ju(pg, "write_errors");
	v->reclaim_stalled = ju(pg, "reclaim_stalled");
	stall = ju(pg, "stall_ns");
	refault = ju(pg, "refault_ns");
	swapins = ju(pg, "faults_swapin");
	faults = ju(pg, "faults_missing") + ju(pg, "faults_minor") + swapins;
	in = ju(pg, "swapin_bytes");
	out = ju(pg, "swapout_bytes");
	if (v->have_stats && dt > 0) {
		v->stall = (double)(stall - v->c_stall) / 1e9 / dt / (double)v->cpus;
		v->refault = (double)(refault - v->c_refault) / 1e9 / dt / (double)v->cpus;
		v->fault_rate = (double)(faults - v->c_faults) / dt;
		v->swapin_rate = (double)(swapins - v->c_swapins) / dt;
		v->in_rate = (double)(in - v->c_in) / dt;
		v->out_rate = (double)(out - v->c_out) / dt;
		v->stall_acc += (double)(stall - v->c_stall);
		v->refault_acc += (double)(refault - v->c_refault);
		v->stall_acc_s += dt * (double)v->cpus;
	}
	v->c_stall = stall, v->c_refault = refault, v->c_faults = faults, v->c_swapins = swapins,
	v->c_in = in, v->c_out = out;
	v->t_sample = now;
	if (!plink_busy(&v->link, PLINK_LIMIT))
		v->limit_want = v->limit; /* in step (and adopts a limit set by someone else) */
	if (v->limit_hold && sent_ns >= v->limit_hold_t)
		v->limit_hold = 0;
	if (!v->have_stats)
		pool_event(p, v, "up: %" PRIu64 " MiB guest RAM, %" PRIu64 " vCPU(s), pid %d",
			   v->mem_pages / 256, v->cpus, (int)v->pid);
	v->have_stats = true;
	check_stuck(p, v, now);
}

static void take_wss(struct pool_vm *v, json_t *ans)
{
	json_t *w = json_object_get(ans, "windows"), *w1 = json_array_get(w, 0),
	       *w10 = json_array_get(w, 1);

	v->sampling = json_is_true(json_object_get(ans, "ok"));
	v->have_wss = v->sampling && w1;
	if (!v->have_wss)
		return;
	/* the longer window holds on to memory a few seconds after a phase ends */
	v->wss_pages = ju(w1, "pages") > ju(w10, "pages") ? ju(w1, "pages") : ju(w10, "pages");
	v->wss_covered_ms = ju(w1, "covered_ms");
}

void pool_answer(struct pool *p, struct pool_vm *v, json_t *ans, enum plink_req kind, uint64_t arg,
		 uint64_t sent_ns)
{
	bool ok = json_is_true(json_object_get(ans, "ok"));
	const char *lack = kind == PLINK_STATS && ok ? stats_lack(ans) : NULL;
	bool failed = kind == PLINK_STATS && (!ok || lack);

	/* an answer ends lateness, unless it is a failed stats or the stats still fail */
	if (v->late && !failed && (kind == PLINK_STATS || !v->stats_failed)) {
		v->late = false;
		pool_event(p, v, "answers again");
	}
	if (failed) {
		const char *e = json_string_value(json_object_get(ans, "error"));
		char why[160];

		snprintf(why, sizeof(why), "%s%s", lack ? "" : "its stats failed: ",
			 lack ? lack
			 : e  ? e
			      : "no error given");
		if (!v->have_stats) { /* never measured: nothing to charge it, nothing to manage */
			pool_set_gone(p, v, why);
			return;
		}
		if (!v->stats_failed) /* measured: charged what it last held, as if late */
			pool_event(p, v, "%s; charged what it last held until its stats work again",
				   why);
		v->stats_failed = v->late = true;
	}
	switch (kind) {
	case PLINK_STATS:
		if (!failed) {
			v->stats_failed = false;
			take_stats(p, v, ans, sent_ns);
		}
		break;
	case PLINK_WSS:
		take_wss(v, ans);
		break;
	case PLINK_LIMIT:
		if (ok) {
			v->limit = arg / POOL_PAGE;
		} else {
			const char *e = json_string_value(json_object_get(ans, "error"));

			pool_event(p, v, "refused a limit of %" PRIu64 " MiB: %s",
				   (uint64_t)(arg / POOL_PAGE / 256), e ? e : "?");
			if (!plink_busy(&v->link, PLINK_LIMIT))
				v->limit_want = v->limit;
		}
		break;
	}
	if (v->state == VM_UP && p->round_open) { /* the round ends when every VM answered */
		bool waiting = false;

		for (unsigned i = 0; i < p->nvm; i++)
			waiting |= p->vm[i]->state == VM_UP && !p->vm[i]->late &&
				   plink_busy(&p->vm[i]->link, PLINK_STATS);
		if (!waiting)
			pool_decide_now(p);
	}
	if (kind == PLINK_STATS && v->state == VM_UP)
		pool_grant(p); /* what a lowered limit freed, handed on at once */
}
