/* pool.c: the pool's VMs, their measurements, and moving memory between them within the budget */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool/pool.h"

/*
 * The budget is kept by charging each VM what it holds or may take without
 * asking: the larger of its limit (in force or asked for) and its resident set.
 * A limit is raised only out of budget - sum(charges), so it never lets the
 * total pass the budget. Lowering a limit frees nothing until reclaim has run:
 * the VM stays charged its old level (limit_hold) until stats asked after the
 * lowering report its resident set, and is charged that resident set until
 * reclaim brings it under the new limit. So the resident total stays within the
 * budget, up to the reclaim batch each VM's own limit allows (its pager
 * reserves room before each fault, so in practice not even that).
 */

uint64_t pool_now(const struct pool *p)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec - p->t0;
}

static uint64_t max3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a > b ? a : b;

	return m > c ? m : c;
}

uint64_t pool_charge(const struct pool_vm *v)
{
	uint64_t lim, want;

	switch (v->state) {
	case VM_LAUNCHED:
		return v->launch_limit;
	case VM_UP:
		if (!v->have_stats)
			return v->launch_limit;
		lim = v->limit ? v->limit : v->mem_pages; /* no limit: it may take all */
		want = v->limit_want ? v->limit_want : v->mem_pages;
		return max3(lim, want, v->resident > v->limit_hold ? v->resident : v->limit_hold);
	default:
		return 0;
	}
}

const char *pool_state_name(const struct pool_vm *v)
{
	switch (v->state) {
	case VM_WAITING:
		return "waiting";
	case VM_LAUNCHED:
		return "starting";
	case VM_UP:
		return v->stuck ? "stuck" : v->late ? "late" : v->paused ? "paused" : "up";
	default:
		return "gone";
	}
}

void pool_event(struct pool *p, const struct pool_vm *v, const char *fmt, ...)
{
	struct pool_event *e = &p->ev[p->nev++ % POOL_EVENTS];
	va_list ap;

	e->t = (double)pool_now(p) / 1e9;
	snprintf(e->vm, sizeof(e->vm), "%s", v ? v->name : "");
	va_start(ap, fmt);
	vsnprintf(e->what, sizeof(e->what), fmt, ap);
	va_end(ap);
	if (!p->quiet_log)
		fprintf(stderr, "ufvmpool: %7.2f s: %s%s%s\n", e->t, e->vm, *e->vm ? ": " : "",
			e->what);
	pool_series_event(p, e);
}

struct pool_vm *pool_find(struct pool *p, const char *name)
{
	for (unsigned i = 0; i < p->nvm; i++)
		if (!strcmp(p->vm[i]->name, name))
			return p->vm[i];
	return NULL;
}

static void vm_free(struct pool_vm *v)
{
	plink_close(&v->link);
	for (char **a = v->argv; a && *a; a++)
		free(*a);
	free(v->argv);
	free(v);
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= POOL_NAME_MAX)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
		   n &&
	       s[0] != '.';
}

int pool_add(struct pool *p, const char *name, const char *sock, char **argv, uint64_t shares,
	     const char **why)
{
	struct pool_vm *v, *old = pool_find(p, name);
	uint64_t pages = 0;
	unsigned slot = p->nvm;
	int err;

	if (!name_ok(name)) {
		*why = "a VM name is 1..31 of A-Z a-z 0-9 _ . - (not starting with '.')";
		return -EINVAL;
	}
	if (old && old->state != VM_GONE) {
		*why = "a VM of that name is in the pool";
		return -EEXIST;
	}
	if (shares < 1 || shares > 1000000) {
		*why = "'shares' must be 1..1000000";
		return -EINVAL;
	}
	if (argv && (err = pool_guest_pages(argv, &pages, why)) < 0)
		return err;
	if (sock && strlen(sock) >= sizeof(v->sock)) {
		*why = "socket path too long (at most 107 bytes)";
		return -ENAMETOOLONG;
	}
	if (old) { /* a gone VM's name is free again: the new one takes its place */
		for (slot = 0; p->vm[slot] != old; slot++)
			;
	} else if (p->nvm == POOL_MAX_VMS) {
		for (slot = 0; slot < p->nvm && p->vm[slot]->state != VM_GONE; slot++)
			;
		if (slot == p->nvm) {
			*why = "the pool holds 64 VMs already";
			return -ENOSPC;
		}
		old = p->vm[slot];
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		*why = "out of memory";
		return -ENOMEM;
	}
	plink_init(&v->link);
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->shares = shares;
	v->t_added = pool_now(p);
	if (argv) {
		if (snprintf(v->sock, sizeof(v->sock), "%s/%s.sock", p->dir, name) >=
		    (int)sizeof(v->sock)) {
			free(v);
			*why = "the pool's --dir is too long for a socket path";
			return -ENAMETOOLONG;
		}
		v->argv = argv;
		v->child = true;
		v->mem_pages = pages;
		v->state = VM_WAITING;
	} else {
		snprintf(v->sock, sizeof(v->sock), "%s", sock);
		err = plink_connect(&v->link, sock, &v->pid);
		if (err < 0) {
			free(v);
			*why = err == -ENOENT	      ? "no such socket"
			       : err == -ECONNREFUSED ? "nobody serves it (has the VM ended?)"
						      : strerror(-err);
			return err;
		}
		v->state = VM_UP;
		v->t_up = v->t_added;
		plink_send(&v->link, PLINK_STATS, 0, pool_now(p));
		plink_send(&v->link, PLINK_WSS, 0, pool_now(p));
	}
	if (old)
		vm_free(old);
	p->vm[slot] = v;
	if (slot == p->nvm)
		p->nvm++;
	if (argv)
		pool_event(p, v, "to start (%" PRIu64 " MiB guest RAM, %" PRIu64 " shares)",
			   pages / 256, shares);
	else
		pool_event(p, v, "attached (%s, %" PRIu64 " shares)", sock, shares);
	return 0;
}

void pool_forget(struct pool *p, struct pool_vm *v)
{
	unsigned i;

	pool_event(p, v, "detached: its limit stays as it is (%" PRIu64 " MiB)", v->limit / 256);
	for (i = 0; p->vm[i] != v; i++)
		;
	memmove(&p->vm[i], &p->vm[i + 1], (p->nvm - i - 1) * sizeof(p->vm[0]));
	p->nvm--;
	vm_free(v);
}

void pool_set_gone(struct pool *p, struct pool_vm *v, const char *why)
{
	if (v->state == VM_GONE)
		return;
	plink_close(&v->link);
	v->state = VM_GONE;
	v->t_gone = pool_now(p);
	v->stuck = v->late = false;
	snprintf(v->gone_why, sizeof(v->gone_why), "%s", why);
	pool_event(p, v, "gone: %s; its %" PRIu64 " MiB return to the pool", why,
		   (v->limit_want > v->resident ? v->limit_want : v->resident) / 256);
	if (v->child && !v->reaped)
		kill(v->pid, SIGTERM); /* its socket failed: it is no VM we can manage */
}

void pool_link_lost(struct pool *p, struct pool_vm *v, int err)
{
	uint64_t now = pool_now(p);
	pid_t pid;

	/* A VM ending closes its socket and removes it: then connect fails. A live
	 * VM that dropped us (too many clients, say) is tried again, a few times. */
	if (now - v->reconnect_ns > 1000000000ULL)
		v->reconnects = 0;
	v->reconnect_ns = now;
	if (v->reconnects++ < 5 && plink_connect(&v->link, v->sock, &pid) == 0) {
		plink_send(&v->link, PLINK_STATS, 0, now);
		return;
	}
	pool_set_gone(p, v,
		      err == -EPIPE ? "its control socket closed" : "its control socket failed");
}

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
	uint64_t lim = v->limit, slack = lim / 8 < 512 ? lim / 8 : 512; /* reclaim's batch */
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

static void take_stats(struct pool *p, struct pool_vm *v, json_t *ans, uint64_t sent_ns)
{
	json_t *vm = json_object_get(ans, "vm"), *pg = json_object_get(ans, "pager");
	uint64_t now = pool_now(p), stall, faults, swapins, in, out;
	double dt = v->t_sample ? (double)(now - v->t_sample) / 1e9 : 0;

	if (!json_is_object(pg)) {
		pool_set_gone(p, v,
			      "it runs without the pager (--pager off): the pool cannot "
			      "set its memory limit");
		return;
	}
	v->mem_pages = ju(vm, "pages");
	v->cpus = ju(vm, "cpus") ? ju(vm, "cpus") : 1;
	v->paused = json_is_true(json_object_get(vm, "paused"));
	v->resident = ju(pg, "resident_pages");
	v->swapped = ju(pg, "swapped_pages");
	v->limit = ju(pg, "limit_pages");
	v->write_errors = ju(pg, "write_errors");
	v->reclaim_stalled = ju(pg, "reclaim_stalled");
	stall = ju(pg, "stall_ns");
	swapins = ju(pg, "faults_swapin");
	faults = ju(pg, "faults_missing") + ju(pg, "faults_minor") + swapins;
	in = ju(pg, "swapin_bytes");
	out = ju(pg, "swapout_bytes");
	if (v->have_stats && dt > 0) {
		v->stall = (double)(stall - v->c_stall) / 1e9 / dt / (double)v->cpus;
		v->fault_rate = (double)(faults - v->c_faults) / dt;
		v->swapin_rate = (double)(swapins - v->c_swapins) / dt;
		v->in_rate = (double)(in - v->c_in) / dt;
		v->out_rate = (double)(out - v->c_out) / dt;
		v->stall_acc += (double)(stall - v->c_stall);
		v->stall_acc_s += dt * (double)v->cpus;
	}
	v->c_stall = stall, v->c_faults = faults, v->c_swapins = swapins, v->c_in = in,
	v->c_out = out;
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

	if (v->late) {
		v->late = false;
		pool_event(p, v, "answers again");
	}
	switch (kind) {
	case PLINK_STATS:
		if (ok)
			take_stats(p, v, ans, sent_ns);
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

void pool_tick(struct pool *p)
{
	uint64_t now = pool_now(p);

	for (unsigned i = 0; i < p->nvm; i++) {
		struct pool_vm *v = p->vm[i];

		if (v->state != VM_UP)
			continue;
		if (!plink_busy(&v->link, PLINK_STATS))
			plink_send(&v->link, PLINK_STATS, 0, now);
		if ((v->sampling || !v->have_wss) && !plink_busy(&v->link, PLINK_WSS))
			plink_send(&v->link, PLINK_WSS, 0, now);
	}
	p->round_open = true;
	p->round_deadline = now + (uint64_t)p->interval_ms * 1000000 / 2;
}

/* Is v the policy's to move now? */
static bool movable(const struct pool_vm *v)
{
	return v->state == VM_WAITING ||
	       (v->state == VM_UP && v->have_stats && !v->late && !v->stuck);
}

void pool_decide_now(struct pool *p)
{
	struct pool_view view[POOL_MAX_VMS];
	struct pool_vm *vs[POOL_MAX_VMS];
	uint64_t now = pool_now(p), charged = 0;
	unsigned n = 0;

	p->round_open = false;
	for (unsigned i = 0; i < p->nvm; i++) {
		struct pool_vm *v = p->vm[i];
		struct pool_view *x = &view[n];

		if (v->state == VM_GONE)
			continue;
		memset(x, 0, sizeof(*x));
		x->lo = POOL_MIN_PAGES;
		x->hi = v->mem_pages > POOL_MIN_PAGES ? v->mem_pages : POOL_MIN_PAGES;
		x->shares = v->shares;
		x->limit = v->state == VM_LAUNCHED ? v->launch_limit
			   : v->limit_want	   ? v->limit_want
						   : (v->state == VM_UP ? v->mem_pages : 0);
		x->resident = v->resident;
		x->swapped = v->swapped;
		x->active_known = v->have_wss && v->wss_covered_ms >= 500;
		x->active = v->wss_pages;
		x->stall = v->stall_acc_s > 0 ? v->stall_acc / 1e9 / v->stall_acc_s : v->stall;
		x->quiet = v->quiet;
		x->fixed = !movable(v);
		x->charge = pool_charge(v);
		charged += x->charge;
		vs[n++] = v;
	}
	pool_decide(&p->pp, view, n);
	for (unsigned k = 0; k < n; k++) {
		struct pool_vm *v = vs[k];
		uint64_t t = view[k].target;

		v->quiet = view[k].quiet;
		v->stall_acc = v->stall_acc_s = 0;
		if (view[k].fixed)
			continue;
		v->target = t;
		if (v->state != VM_UP || (v->limit_want && t >= v->limit_want))
			continue;
		/* lower now; charged its old level until stats asked after this answer */
		v->limit_hold = pool_charge(v);
		v->limit_hold_t = now;
		v->limit_want = t;
		if (plink_send(&v->link, PLINK_LIMIT, t * POOL_PAGE, now) == 0)
			plink_send(&v->link, PLINK_STATS, 0, now);
	}
	if ((charged > p->pp.budget) != p->over_budget) {
		p->over_budget = charged > p->pp.budget;
		if (p->over_budget)
			pool_event(p, NULL,
				   "over budget: the VMs hold %" PRIu64 " MiB of %" PRIu64
				   " MiB; shrinking them",
				   charged / 256, p->pp.budget / 256);
		else
			pool_event(p, NULL, "within budget again");
	}
	pool_grant(p);
	pool_series_sample(p);
}

void pool_grant(struct pool *p)
{
	uint64_t charged = 0, free_pages, deficit = 0, now = pool_now(p);

	for (unsigned i = 0; i < p->nvm; i++) {
		/* a VM just attached is charged once it answers (or is late: then nothing, as
		 * nothing about it is known; it is reported, and not waited on) */
		if (p->vm[i]->state == VM_UP && !p->vm[i]->have_stats && !p->vm[i]->late)
			return;
		charged += pool_charge(p->vm[i]);
	}
	if (charged >= p->pp.budget)
		return;
	free_pages = p->pp.budget - charged;
	for (unsigned i = 0; i < p->nvm && !p->stopping; i++) { /* VMs waiting to start */
		struct pool_vm *v = p->vm[i];
		uint64_t l = v->target > POOL_MIN_PAGES ? v->target : POOL_MIN_PAGES;

		if (v->state != VM_WAITING || free_pages < POOL_MIN_PAGES)
			continue;
		l = l < free_pages ? l : free_pages;
		l = l < v->mem_pages ? l : v->mem_pages;
		if (pool_launch(p, v, l) == 0)
			free_pages -= l;
	}
	for (unsigned i = 0; i < p->nvm; i++) {
		struct pool_vm *v = p->vm[i];

		if (movable(v) && v->state == VM_UP && v->target > v->limit_want)
			deficit += v->target - v->limit_want;
	}
	for (unsigned i = 0; i < p->nvm && deficit && free_pages; i++) {
		struct pool_vm *v = p->vm[i];
		uint64_t d, g;

		if (!movable(v) || v->state != VM_UP || v->target <= v->limit_want)
			continue;
		d = v->target - v->limit_want;
		g = deficit <= free_pages ? d : (uint64_t)((double)d * free_pages / deficit);
		if (g < d && g < 256)
			continue; /* less than 1 MiB: wait for more room */
		if (plink_send(&v->link, PLINK_LIMIT, (v->limit_want + g) * POOL_PAGE, now) == 0)
			v->limit_want += g; /* charged from now on */
	}
}

void pool_watch(struct pool *p)
{
	uint64_t now = pool_now(p);

	for (unsigned i = 0; i < p->nvm; i++) {
		struct pool_vm *v = p->vm[i];
		uint64_t t = v->state == VM_UP ? plink_oldest(&v->link) : 0;

		if (v->state == VM_WAITING && !v->late && now - v->t_added > 10000000000ULL) {
			v->late = true; /* reported once; it still starts when there is room */
			pool_event(p, v,
				   "still waiting for 4 MiB of room: the budget is all in use");
		}
		if (t && !v->late && now - t > (uint64_t)p->late_ms * 1000000) {
			v->late = true;
			pool_event(p, v,
				   "unresponsive: no answer for %.1f s (busy swapping, or hung); "
				   "charged what it last held",
				   (double)(now - t) / 1e9);
		}
	}
	if (p->round_open && now >= p->round_deadline)
		pool_decide_now(p);
}

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
