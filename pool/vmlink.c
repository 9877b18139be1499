/* vmlink.c: the pool's side of a VM's control socket: pipelined requests, answers in order */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "pool/pool.h"

void plink_init(struct pool_link *l)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
}

int plink_connect(struct pool_link *l, const char *path, pid_t *peer)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno == EINPROGRESS ? -EAGAIN : -errno;
		close(fd);
		return err;
	}
	*peer = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 ? cr.pid : 0;
	plink_close(l);
	l->fd = fd;
	return 0;
}

void plink_close(struct pool_link *l)
{
	if (l->fd >= 0)
		close(l->fd);
	free(l->in);
	free(l->out);
	plink_init(l);
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n > *cap) {
		size_t c = *cap ? *cap : 4096;
		char *b;

		while (c < *len + n)
			c *= 2;
		b = realloc(*buf, c);
		if (!b)
			return -ENOMEM;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	return 0;
}

int plink_send(struct pool_link *l, enum plink_req kind, uint64_t arg, uint64_t now)
{
	char line[96];
	int n, err;

	if (l->qlen == PLINK_QUEUE)
		return -ENOBUFS;
	if (kind == PLINK_LIMIT)
		n = snprintf(line, sizeof(line), "{\"cmd\":\"limit\",\"bytes\":%llu}\n",
			     (unsigned long long)arg);
	else
		n = snprintf(line, sizeof(line), "{\"cmd\":\"%s\"}\n",
			     kind == PLINK_STATS ? "stats" : "wss");
	if (l->outoff == l->outlen)
		l->outoff = l->outlen = 0;
	err = append(&l->out, &l->outlen, &l->outcap, line, (size_t)n);
	if (err)
		return err;
	l->q[(l->qhead + l->qlen) % PLINK_QUEUE].kind = kind;
	l->q[(l->qhead + l->qlen) % PLINK_QUEUE].arg = arg;
	l->q[(l->qhead + l->qlen) % PLINK_QUEUE].sent_ns = now;
	l->qlen++;
	return 0;
}

bool plink_busy(const struct pool_link *l, enum plink_req kind)
{
	for (unsigned i = 0; i < l->qlen; i++)
		if (l->q[(l->qhead + i) % PLINK_QUEUE].kind == kind)
			return true;
	return false;
}

uint64_t plink_oldest(const struct pool_link *l)
{
	return l->qlen ? l->q[l->qhead].sent_ns : 0;
}

bool plink_wants_write(const struct pool_link *l)
{
	return l->fd >= 0 && l->outoff < l->outlen;
}

int plink_flush(struct pool_link *l)
{
	while (l->outoff < l->outlen) {
		ssize_t n = send(l->fd, l->out + l->outoff, l->outlen - l->outoff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		if (n < 0)
			return errno == ECONNRESET || errno == EPIPE ? -EPIPE : -errno;
		l->outoff += (size_t)n;
	}
	return 0;
}

int plink_read(struct pool_link *l)
{
	for (;;) {
		ssize_t n;
		char *nl;

		/* complete answers first: the caller takes them, poll() says when there is more */
		if (l->inlen >= PLINK_IN_MAX)
			return 0;
		if (l->incap - l->inlen < 16384) {
			size_t c = l->incap ? l->incap * 2 : 65536;
			char *b;

			c = c < PLINK_IN_MAX ? c : PLINK_IN_MAX;
			b = realloc(l->in, c);
			if (!b)
				return -ENOMEM;
			l->in = b;
			l->incap = c;
		}
		n = recv(l->fd, l->in + l->inlen, l->incap - l->inlen, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		if (n < 0)
			return errno == ECONNRESET ? -EPIPE : -errno;
		if (n == 0)
			return -EPIPE;
		l->inlen += (size_t)n;
		/* the answer being received, from the last newline on, must fit in a line */
		nl = memrchr(l->in, '\n', l->inlen);
		if (l->inlen - (nl ? (size_t)(nl + 1 - l->in) : 0) > PLINK_LINE_MAX)
			return -EMSGSIZE;
	}
}

int plink_next(struct pool_link *l, json_t **ans, enum plink_req *kind, uint64_t *arg,
	       uint64_t *sent_ns)
{
	char *nl = l->inlen ? memchr(l->in, '\n', l->inlen) : NULL;
	size_t len;

	*ans = NULL;
	if (!nl)
		return 0;
	len = (size_t)(nl - l->in);
	*ans = json_loadb(l->in, len, 0, NULL);
	memmove(l->in, nl + 1, l->inlen - len - 1);
	l->inlen -= len + 1;
	if (!json_is_object(*ans) || !l->qlen) {
		json_decref(*ans);
		*ans = NULL;
		return -EBADMSG;
	}
	*kind = l->q[l->qhead].kind;
	*arg = l->q[l->qhead].arg;
	*sent_ns = l->q[l->qhead].sent_ns;
	l->qhead = (l->qhead + 1) % PLINK_QUEUE;
	l->qlen--;
	return 1;
}
