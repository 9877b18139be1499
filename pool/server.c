/* server.c: the pool's socket: JSON lines in and out, up to 16 clients, one thread */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/jsonl.h"
#include "pool/pool.h"

#define API_CLIENTS  16
#define API_LINE_MAX 65536
#define API_OUT_MAX  (16u << 20) /* a client that reads nothing is dropped past this */

struct api_client {
	int fd;
	bool discarding, eof;
	size_t inlen;
	char in[API_LINE_MAX + 1];
	struct jsonl_out out;
};

struct pool_api {
	int lfd;
	char path[108];
	dev_t dev; /* the socket file we made: removed only if it is still ours */
	ino_t ino;
	struct api_client *cl[API_CLIENTS];
	int who[API_CLIENTS + 1]; /* pollfd slot -> client (-1: the listener) */
};

/* The VMs' control socket (api/control.c) in small, served by the pool's own loop. */

static const char too_long[] = "{\"ok\":false,\"error\":\"request too long: more than 65536 "
			       "bytes before the newline\"}\n";
static const char internal[] = "{\"ok\":false,\"error\":\"internal: out of memory\"}\n";
static const char too_many[] = "{\"ok\":false,\"error\":\"too many clients (16)\"}\n";

static bool queue(struct api_client *k, const char *s, size_t n)
{
	return jsonl_queue(&k->out, s, n, API_OUT_MAX);
}

/* Read, answer every complete line, send; false when the client must go. */
static bool serve(struct pool *p, struct api_client *k, bool readable)
{
	ssize_t r = 0;
	size_t start = 0;
	char *nl;

	if (readable && !k->eof) {
		r = recv(k->fd, k->in + k->inlen, sizeof(k->in) - 1 - k->inlen, MSG_DONTWAIT);
		if (r == 0)
			k->eof = true;
		else if (r > 0)
			k->inlen += (size_t)r;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	}
	while ((nl = memchr(k->in + start, '\n', k->inlen - start))) {
		size_t len = (size_t)(nl - (k->in + start)), alen;
		char *a;

		if (k->discarding) {
			k->discarding = false;
		} else {
			a = pool_request(p, k->in + start, len, &alen);
			if (!(a ? queue(k, a, alen) : queue(k, internal, sizeof(internal) - 1))) {
				free(a);
				return false;
			}
			free(a);
		}
		start += len + 1;
	}
	memmove(k->in, k->in + start, k->inlen - start);
	k->inlen -= start;
	if (k->inlen >= API_LINE_MAX) {
		if (!k->discarding && !queue(k, too_long, sizeof(too_long) - 1))
			return false;
		k->discarding = true;
		k->inlen = 0;
	}
	if (!jsonl_flush(&k->out, k->fd))
		return false;
	return !k->eof || jsonl_backlog(&k->out); /* a half-closed client gets its answers */
}

static void drop(struct pool_api *a, unsigned i)
{
	close(a->cl[i]->fd);
	jsonl_out_free(&a->cl[i]->out);
	free(a->cl[i]);
	a->cl[i] = NULL;
}

int pool_api_open(struct pool_api **out, const char *path, const char **why)
{
	struct pool_api *a = calloc(1, sizeof(*a));
	struct stat st;

	*why = "out of memory";
	if (!a)
		return -ENOMEM;
	snprintf(a->path, sizeof(a->path), "%s", path);
	a->lfd =
	    jsonl_listen(path, "in use by a running pool (stop it, or choose another path)", why);
	if (a->lfd < 0) {
		int e = a->lfd;

		free(a);
		return e;
	}
	if (stat(path, &st) < 0) {
		int e = -errno;

		*why = "bind/listen";
		close(a->lfd);
		free(a);
		return e;
	}
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	*out = a;
	return 0;
}

void pool_api_close(struct pool_api *a)
{
	struct stat st;

	if (!a)
		return;
	for (unsigned i = 0; i < API_CLIENTS; i++)
		if (a->cl[i])
			drop(a, i);
	close(a->lfd);
	if (stat(a->path, &st) == 0 && st.st_dev == a->dev && st.st_ino == a->ino)
		unlink(a->path); /* only our own: another pool may have taken the path since */
	free(a);
}

unsigned pool_api_pollfds(struct pool_api *a, struct pollfd *pf)
{
	unsigned n = 0;

	if (!a)
		return 0;
	pf[n] = (struct pollfd){.fd = a->lfd, .events = POLLIN};
	a->who[n++] = -1;
	for (unsigned i = 0; i < API_CLIENTS; i++) {
		struct api_client *k = a->cl[i];

		if (!k)
			continue;
		pf[n] = (struct pollfd){.fd = k->fd,
					.events = (short)((k->eof ? 0 : POLLIN) |
							  (jsonl_backlog(&k->out) ? POLLOUT : 0))};
		a->who[n++] = (int)i;
	}
	return n;
}

void pool_api_handle(struct pool_api *a, struct pool *p, const struct pollfd *pf, unsigned n)
{
	for (unsigned j = 0; a && j < n; j++) {
		if (!pf[j].revents)
			continue;
		if (a->who[j] < 0) {
			int fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			unsigned i;

			if (fd < 0)
				continue;
			for (i = 0; i < API_CLIENTS && a->cl[i]; i++)
				;
			if (i == API_CLIENTS || !(a->cl[i] = calloc(1, sizeof(*a->cl[i])))) {
				(void)!send(fd, too_many, sizeof(too_many) - 1,
					    MSG_NOSIGNAL | MSG_DONTWAIT);
				close(fd);
				continue;
			}
			a->cl[i]->fd = fd;
			continue;
		}
		if (a->cl[a->who[j]] &&
		    !serve(p, a->cl[a->who[j]], pf[j].revents & (POLLIN | POLLHUP | POLLERR)))
			drop(a, (unsigned)a->who[j]);
	}
}
