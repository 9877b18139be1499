/* control.c: the control socket server: one thread poll()s the listener and its clients */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/jsonl.h"
#include "vmm/vmm.h"

#define CTL_MAX_CLIENTS 16
#define CTL_LINE_MAX	65536	       /* longest request, newline excluded */
#define CTL_ROUND_LINES 4	       /* requests answered per client per poll round */
#define CTL_OUT_SLOW	(1u << 20)     /* stop serving a client that does not read its answers */
#define CTL_OUT_MAX	(256ull << 20) /* ... and drop it past this */

/* Answers that need no JSON library, hence cannot fail to be built. */
static const char too_long_err[] = "{\"ok\":false,\"error\":\"request too long: more than "
				   "65536 bytes before the newline\"}\n";
static const char too_many_err[] = "{\"ok\":false,\"error\":\"too many clients (16)\"}\n";
static const char internal_err[] = "{\"ok\":false,\"error\":\"internal: the answer could "
				   "not be built (out of memory?)\"}\n";

struct ctl_client {
	int fd;
	bool slow;	 /* its request runs on the worker: its next ones wait for it */
	bool waits;	 /* its next request is slow and the worker was busy */
	bool gone;	 /* its socket failed: closed once the worker is done with it */
	bool discarding; /* inside an oversized line: drop bytes up to its newline */
	bool eof;	 /* the client shut down its side: close once its answers are out */
	bool ready;	 /* in holds a complete line not yet answered */
	size_t inlen;
	char in[CTL_LINE_MAX + 1];
	struct jsonl_out out; /* answers not yet sent */
};

/*
 * Requests that may wait long (ctl_request_slow: pause, swapout, ...) run on a worker
 * thread, one at a time, while the server thread goes on answering the others: a
 * swap-out of a large VM, or a pause that waits for the vCPUs, never keeps `stop` or
 * `stats` from being answered. A client's requests are still answered in order: one
 * whose request runs on the worker is not served further until its answer is queued.
 */
struct ctl_job {
	struct ctl_client *k; /* NULL: no job */
	char *line;
	size_t len;
	char *ans; /* the answer, NULL when out of memory */
	size_t anslen;
	bool done;
};

struct ctl {
	struct ctl_ctx ctx;
	char *path;
	int file; /* vmm_file_track handle of the socket file */
	int lfd;
	int stop_pipe[2];
	pthread_t tid;
	struct ctl_client *cl[CTL_MAX_CLIENTS];
	/* the worker: started at the first slow request */
	pthread_t wtid;
	bool wstarted, wquit;
	int wefd; /* the worker tells the server thread that a job is done */
	pthread_mutex_t wlock;
	pthread_cond_t wcond;
	struct ctl_job job;
};

static void client_close(struct ctl *c, unsigned i)
{
	close(c->cl[i]->fd);
	jsonl_out_free(&c->cl[i]->out);
	free(c->cl[i]);
	c->cl[i] = NULL;
}

/* The client's answers not yet sent stay under CTL_OUT_SLOW: it may be fed more. */
static bool client_reads(const struct ctl_client *k)
{
	return jsonl_backlog(&k->out) < CTL_OUT_SLOW;
}

/* Queue bytes for a client; false when it must be dropped. */
static bool client_queue(struct ctl_client *k, const char *buf, size_t len)
{
	return jsonl_queue(&k->out, buf, len, CTL_OUT_MAX);
}

static bool client_answer(struct ctl *c, struct ctl_client *k, const char *line, size_t len)
{
	size_t outlen;
	char *ans = ctl_answer(&c->ctx, line, len, &outlen);
	bool ok;

	if (!ans) /* out of memory: say so rather than leave the client waiting */
		return client_queue(k, internal_err, sizeof(internal_err) - 1);
	ok = client_queue(k, ans, outlen);
	free(ans);
	return ok;
}

static void *ctl_worker(void *arg)
{
	struct ctl *c = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&c->wlock);
	for (;;) {
		while (!c->wquit && (!c->job.k || c->job.done))
			pthread_cond_wait(&c->wcond, &c->wlock);
		if (c->wquit)
			break;
		pthread_mutex_unlock(&c->wlock);
		c->job.ans = ctl_answer(&c->ctx, c->job.line, c->job.len, &c->job.anslen);
		pthread_mutex_lock(&c->wlock);
		c->job.done = true;
		if (write(c->wefd, &one, sizeof(one)) < 0) {
			/* cannot fail: the server reads it at every wake-up */
		}
	}
	pthread_mutex_unlock(&c->wlock);
	return NULL;
}

/*
 * Hand a slow request to the worker: 1 when it took it, 0 when it is busy (the line
 * then waits for it), -1 when there is no worker to be had (no thread, no memory: the
 * server thread answers it itself, as before there was a worker).
 */
static int worker_take(struct ctl *c, struct ctl_client *k, const char *line, size_t len)
{
	char *copy;

	if (c->job.k)
		return 0;
	if (!c->wstarted) {
		if (pthread_create(&c->wtid, NULL, ctl_worker, c) != 0)
			return -1;
		pthread_setname_np(c->wtid, "ufvm-apiwork");
		c->wstarted = true;
	}
	copy = malloc(len ? len : 1);
	if (!copy)
		return -1;
	memcpy(copy, line, len);
	pthread_mutex_lock(&c->wlock);
	c->job = (struct ctl_job){.k = k, .line = copy, .len = len};
	pthread_cond_signal(&c->wcond);
	pthread_mutex_unlock(&c->wlock);
	k->slow = true;
	return 1;
}

/* The worker's job is done: queue its answer to its client. */
static void worker_reap(struct ctl *c)
{
	struct ctl_client *k;
	uint64_t v;
	bool done;

	if (read(c->wefd, &v, sizeof(v)) < 0) {
		/* not ready after all */
	}
	pthread_mutex_lock(&c->wlock);
	done = c->job.k && c->job.done;
	pthread_mutex_unlock(&c->wlock);
	if (!done)
		return;
	k = c->job.k;
	k->slow = false;
	if (!k->gone && !(c->job.ans ? client_queue(k, c->job.ans, c->job.anslen)
				     : client_queue(k, internal_err, sizeof(internal_err) - 1)))
		k->gone = true;
	free(c->job.ans);
	free(c->job.line);
	c->job = (struct ctl_job){0};
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		if (c->cl[i])
			c->cl[i]->waits = false; /* the worker is free: try again */
}

/*
 * Answer up to CTL_ROUND_LINES complete lines of k->in, fewer while the
 * client's unread answers exceed CTL_OUT_SLOW: a client that pipelines many
 * requests gets its turn like the others, and one that does not read is not
 * fed more. The rest waits in k->in (k->ready). False when the client must go.
 */
static bool client_serve(struct ctl *c, struct ctl_client *k)
{
	size_t start = 0;
	int taken;
	unsigned n = 0;
	char *nl = NULL;

	while (n < CTL_ROUND_LINES && client_reads(k) && !k->slow &&
	       (nl = memchr(k->in + start, '\n', k->inlen - start))) {
		size_t len = (size_t)(nl - (k->in + start));

		if (k->discarding) {
			k->discarding = false; /* the tail of an oversized line */
		} else if (ctl_request_slow(k->in + start, len) &&
			   (taken = worker_take(c, k, k->in + start, len)) >= 0) {
			if (!taken) {
				k->waits = true; /* the worker is busy: this line waits */
				break;
			}
			n++;
		} else {
			if (!client_answer(c, k, k->in + start, len))
				return false;
			n++;
		}
		start += len + 1;
	}
	memmove(k->in, k->in + start, k->inlen - start);
	k->inlen -= start;
	k->ready = memchr(k->in, '\n', k->inlen) != NULL;
	if (!k->ready && k->inlen > CTL_LINE_MAX) { /* no newline within the limit */
		if (!k->discarding && !client_queue(k, too_long_err, sizeof(too_long_err) - 1))
			return false;
		k->discarding = true;
		k->inlen = 0;
	}
	return true;
}

/* Read what fits; the lines are answered by client_serve. */
static bool client_read(struct ctl_client *k)
{
	ssize_t n;

	if (k->eof || k->inlen == sizeof(k->in))
		return true; /* full of complete lines: served first */
	n = recv(k->fd, k->in + k->inlen, sizeof(k->in) - k->inlen, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
	if (n == 0) {
		k->eof = true; /* perhaps mid-request: a partial line is dropped, nothing to undo */
		return true;
	}
	k->inlen += (size_t)n;
	return true;
}

/* Accept one waiting client; false when none is left. */
static bool ctl_accept(struct ctl *c)
{
	int fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	unsigned i;

	if (fd < 0)
		return errno == EINTR || errno == ECONNABORTED;
	for (i = 0; i < CTL_MAX_CLIENTS && c->cl[i]; i++)
		;
	if (i == CTL_MAX_CLIENTS) {
		(void)!send(fd, too_many_err, sizeof(too_many_err) - 1,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		return true;
	}
	c->cl[i] = calloc(1, sizeof(*c->cl[i]));
	if (!c->cl[i]) {
		close(fd);
		return true;
	}
	c->cl[i]->fd = fd;
	return true;
}

/* Can the client be served now, without waiting for it (or for the worker)? */
static bool client_servable(const struct ctl *c, const struct ctl_client *k)
{
	(void)c;
	return k->ready && client_reads(k) && !k->slow && !k->gone && !k->waits;
}

static void *ctl_thread(void *arg)
{
	struct ctl *c = arg;
	struct pollfd pf[3 + CTL_MAX_CLIENTS];
	int who[3 + CTL_MAX_CLIENTS];

	for (;;) {
		nfds_t n = 3;
		bool busy = false; /* a client has requests waiting: poll without blocking */

		pf[0] = (struct pollfd){.fd = c->stop_pipe[0], .events = POLLIN};
		pf[1] = (struct pollfd){.fd = c->lfd, .events = POLLIN};
		pf[2] = (struct pollfd){.fd = c->wefd, .events = POLLIN};
		for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
			struct ctl_client *k = c->cl[i];

			if (!k || k->gone)
				continue;
			busy |= client_servable(c, k);
			pf[n].fd = k->fd;
			pf[n].events =
			    (!k->eof && k->inlen < sizeof(k->in) && client_reads(k) ? POLLIN : 0) |
			    (jsonl_backlog(&k->out) ? POLLOUT : 0);
			who[n++] = (int)i;
		}
		if (poll(pf, n, busy ? 0 : -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[0].revents)
			break;
		if (pf[2].revents)
			worker_reap(c);
		for (nfds_t j = 3; j < n; j++) {
			struct ctl_client *k = c->cl[who[j]];
			bool ok = true;

			if (pf[j].revents & (POLLIN | POLLHUP | POLLERR))
				ok = client_read(k);
			if (ok)
				ok = client_serve(c, k);
			if (ok)
				ok = jsonl_flush(&k->out, k->fd);
			if (!ok)
				k->gone = true;
		}
		for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
			struct ctl_client *k = c->cl[i];

			/* never one whose request the worker holds: its answer has a place */
			if (k && !k->slow &&
			    (k->gone || (k->eof && !k->ready && !jsonl_backlog(&k->out))))
				client_close(c, i);
		}
		/* every waiting client, not one per round: a burst must not meet a full
		 * backlog (the surplus is told `too many clients`) */
		if (pf[1].revents & POLLIN)
			while (ctl_accept(c))
				;
	}
	return NULL;
}

static int ctl_listen(struct ctl *c, const char **why)
{
	c->lfd = jsonl_listen(c->path, "in use by a running ufvm (stop it, or choose another path)",
			      why);
	if (c->lfd < 0)
		return c->lfd;
	c->file = vmm_file_track(c->path);
	if (c->file < 0) {
		*why = "bind/listen";
		close(c->lfd);
		c->lfd = -1;
		return c->file;
	}
	return 0;
}

int ctl_start(struct ctl **out, const char *path, struct vm *vm, const char **why)
{
	struct ctl *c = calloc(1, sizeof(*c));
	int err;

	*why = "out of memory";
	if (!c || !(c->path = strdup(path))) {
		free(c);
		return -ENOMEM;
	}
	c->ctx.vm = vm;
	c->file = -1;
	signal(SIGPIPE, SIG_IGN); /* belt and braces: every send uses MSG_NOSIGNAL */
	err = ctl_listen(c, why);
	if (err)
		goto err_free;
	if (pipe2(c->stop_pipe, O_CLOEXEC) < 0) {
		err = -errno;
		*why = "pipe";
		goto err_close;
	}
	c->wefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wefd < 0) {
		err = -errno;
		*why = "eventfd";
		goto err_pipe;
	}
	pthread_mutex_init(&c->wlock, NULL);
	pthread_cond_init(&c->wcond, NULL);
	err = -pthread_create(&c->tid, NULL, ctl_thread, c);
	if (err) {
		*why = "thread";
		goto err_efd;
	}
	pthread_setname_np(c->tid, "ufvm-api");
	*out = c;
	return 0;

err_efd:
	pthread_cond_destroy(&c->wcond);
	pthread_mutex_destroy(&c->wlock);
	close(c->wefd);
err_pipe:
	close(c->stop_pipe[0]);
	close(c->stop_pipe[1]);
err_close:
	close(c->lfd);
	vmm_file_remove(c->file);
err_free:
	free(c->path);
	free(c);
	return err;
}

void ctl_stop(struct ctl *c)
{
	if (!c)
		return;
	vmm_file_remove(c->file); /* first: nobody new connects to an ending VM */
	(void)!write(c->stop_pipe[1], "x", 1);
	pthread_join(c->tid, NULL);
	if (c->wstarted) { /* its job, if any, ends with the VM's stop (vm_pause, swaps) */
		pthread_mutex_lock(&c->wlock);
		c->wquit = true;
		pthread_cond_signal(&c->wcond);
		pthread_mutex_unlock(&c->wlock);
		pthread_join(c->wtid, NULL);
	}
	free(c->job.ans);
	free(c->job.line);
	if (atomic_load(&c->ctx.paused))
		vm_resume(c->ctx.vm);
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		if (c->cl[i])
			client_close(c, i);
	pthread_cond_destroy(&c->wcond);
	pthread_mutex_destroy(&c->wlock);
	close(c->wefd);
	close(c->stop_pipe[0]);
	close(c->stop_pipe[1]);
	close(c->lfd);
	free(c->path);
	free(c);
}
