/* loop.c: ufvmpool run's event loop: one thread polls the VMs' sockets, its own and signals */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool/pool.h"

static bool all_done(struct pool *p)
{
	if (!p->exit_when_done || !p->started)
		return false;
	for (unsigned i = 0; i < p->nvm; i++)
		if (p->vm[i]->child && (p->vm[i]->state != VM_GONE || !p->vm[i]->reaped))
			return false;
	return true;
}

/* Started VMs whose control socket is not up yet: try it (every loop, <= 50 ms apart). */
static void connect_launched(struct pool *p)
{
	uint64_t now = pool_now(p);

	for (unsigned i = 0; i < p->nvm; i++) {
		struct pool_vm *v = p->vm[i];
		pid_t peer;

		if (v->state != VM_LAUNCHED || v->reaped)
			continue;
		if (plink_connect(&v->link, v->sock, &peer) < 0) {
			if (now - v->reconnect_ns > 10000000000ULL) {
				v->reconnect_ns = now;
				if (now - v->t_added > 10000000000ULL)
					pool_event(p, v, "its control socket is not up yet");
			}
			continue;
		}
		v->state = VM_UP;
		v->t_up = now;
		plink_send(&v->link, PLINK_STATS, 0, now);
		plink_send(&v->link, PLINK_WSS, 0, now);
	}
}

static int next_timeout(struct pool *p)
{
	uint64_t now = pool_now(p), t = p->next_tick;

	if (p->round_open && p->round_deadline < t)
		t = p->round_deadline;
	for (unsigned i = 0; i < p->nvm; i++)
		if (p->vm[i]->state == VM_LAUNCHED ||
		    (p->vm[i]->state == VM_UP && plink_oldest(&p->vm[i]->link)))
			if (now + 50000000 < t)
				t = now + 50000000; /* connecting; or watching for late answers */
	return t <= now ? 0 : (int)((t - now) / 1000000) + 1;
}

static void handle_links(struct pool *p, struct pollfd *pf, struct pool_vm **who, unsigned n)
{
	for (unsigned j = 0; j < n; j++) {
		struct pool_vm *v = who[j];
		int err = 0, r;
		json_t *ans;
		enum plink_req kind;
		uint64_t arg, sent;

		if (v->state != VM_UP || v->link.fd != pf[j].fd)
			continue; /* gone meanwhile */
		if (pf[j].revents & POLLOUT)
			err = plink_flush(&v->link);
		if (!err && (pf[j].revents & (POLLIN | POLLHUP | POLLERR)))
			err = plink_read(&v->link);
		while ((r = plink_next(&v->link, &ans, &kind, &arg, &sent)) > 0) {
			pool_answer(p, v, ans, kind, arg, sent);
			json_decref(ans);
			if (v->state != VM_UP)
				break;
		}
		if (v->state == VM_UP && (err || r < 0))
			pool_link_lost(p, v, err ? err : -EBADMSG);
	}
}

int pool_loop(struct pool *p, struct pool_api *api)
{
	struct pollfd pf[1 + 17 + POOL_MAX_VMS];
	struct pool_vm *who[POOL_MAX_VMS];
	struct signalfd_siginfo si;
	sigset_t mask;
	int sfd, sig = 0;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		fprintf(stderr, "ufvmpool: signalfd: %s\n", strerror(errno));
		return 1;
	}
	p->next_tick = pool_now(p);
	pool_decide_now(p); /* start what was given on the command line */
	while (!p->stopping && !all_done(p)) {
		unsigned n = 1, na, nv = 0;

		if (pool_now(p) >= p->next_tick) {
			pool_tick(p);
			p->next_tick += (uint64_t)p->interval_ms * 1000000;
			if (p->next_tick < pool_now(p))
				p->next_tick = pool_now(p) + (uint64_t)p->interval_ms * 1000000;
		}
		connect_launched(p);
		pool_watch(p);
		pf[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
		for (unsigned i = 0; i < p->nvm; i++) {
			struct pool_vm *v = p->vm[i];

			if (v->state != VM_UP || v->link.fd < 0)
				continue;
			if (plink_wants_write(&v->link) && plink_flush(&v->link) < 0) {
				pool_link_lost(p, v, -EPIPE);
				continue;
			}
			pf[n + nv] = (struct pollfd){
			    .fd = v->link.fd,
			    .events =
				(short)(POLLIN | (plink_wants_write(&v->link) ? POLLOUT : 0))};
			who[nv++] = v;
		}
		na = pool_api_pollfds(api, pf + n + nv);
		if (poll(pf, n + nv + na, next_timeout(p)) < 0 && errno != EINTR)
			break;
		while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGCHLD)
				pool_reap(p);
			else
				sig = (int)si.ssi_signo, p->stopping = true;
		}
		handle_links(p, pf + n, who, nv);
		pool_api_handle(api, p, pf + n + nv, na);
	}
	if (p->stopping)
		pool_event(p, NULL,
			   sig ? "stopping (signal %d): stopping the VMs it started"
			       : "stopping: stopping the VMs it started",
			   sig);
	pool_stop_children(p, 5000);
	close(sfd);
	if (sig)
		return 128 + sig;
	for (unsigned i = 0; i < p->nvm; i++)
		if (p->vm[i]->child && p->vm[i]->reaped &&
		    !(WIFEXITED(p->vm[i]->wstatus) && WEXITSTATUS(p->vm[i]->wstatus) == 0))
			return p->exit_when_done ? 1 : 0;
	return 0;
}
