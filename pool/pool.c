/* pool.c: the pool's VMs, what each is charged, and moving memory between them within the budget */
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
		/* not measured yet: what it was started with, or what its process holds (an
		 * attached VM that hangs before its first answer is not free) */
		if (!v->have_stats)
			return v->launch_limit > v->boot_charge ? v->launch_limit : v->boot_charge;
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
		pool_measure_unknown(v);
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
	/* its socket failed: it is no VM we can manage. Only a process it has: a VM whose
	 * launch failed has pid 0, and kill(0) would signal the pool's own group */
	if (v->child && !v->reaped && v->pid > 0)
		kill(v->pid, SIGTERM);
}

void pool_link_lost(struct pool *p, struct pool_vm *v, int err)
{
	uint64_t now = pool_now(p);
	pid_t pid;

	/* A VM ending closes its socket and removes it: then connect fails. A live
	 * VM that dropped us (too many clients, say) is tried again, a few times. */
	if (err == -EMSGSIZE) { /* not a VM's control socket, or a broken one: not again */
		pool_set_gone(p, v,
			      "its answer is too long (over 64 KiB without a newline): not "
			      "a control socket the pool can use");
		return;
	}
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

void pool_measure_unknown(struct pool_vm *v)
{
	uint64_t anon = 0, shmem = 0;

	if (v->child)
		return; /* charged the limit it was started with */
	/* unreadable (its pid is 0 from another pid namespace, say): the last figure stays;
	 * its guest RAM is not known before its stats either */
	if (pool_proc_rss(v->pid, &anon, &shmem))
		v->boot_charge = (anon + shmem + POOL_PAGE - 1) / POOL_PAGE;
}

void pool_tick(struct pool *p)
{
	uint64_t now = pool_now(p);

	for (unsigned i = 0; i < p->nvm; i++) {
		struct pool_vm *v = p->vm[i];

		if (v->state != VM_UP)
			continue;
		if (!v->have_stats)
			pool_measure_unknown(v);
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
		x->refault =
		    v->stall_acc_s > 0 ? v->refault_acc / 1e9 / v->stall_acc_s : v->refault;
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
		v->stall_acc = v->refault_acc = v->stall_acc_s = 0;
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
		/* a VM just attached is measured once it answers (or is late: then it is
		 * charged what its process holds; it is reported, and not waited on) */
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
