/* jsonl.c: JSON lines over a UNIX socket: listening, answers queued and sent, encoding */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/jsonl.h"

/* A socket file at the path: 0 once it is free (a stale one removed). */
static int socket_in_use(const struct sockaddr_un *sa, const char *busy, const char **why)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err;

	if (fd < 0) {
		*why = "socket";
		return -errno;
	}
	err = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ? errno : 0;
	close(fd);
	if (err == ECONNREFUSED) {
		if (unlink(sa->sun_path) < 0 && errno != ENOENT) {
			*why = "removing the stale socket";
			return -errno;
		}
		return 0;
	}
	if (err == ENOENT)
		return 0; /* gone meanwhile */
	if (!err || err == EAGAIN || err == EINPROGRESS) {
		*why = busy;
		return -EADDRINUSE;
	}
	*why = "an existing socket there cannot be checked (is it in use?)";
	return -err;
}

int jsonl_listen(const char *path, const char *busy, const char **why)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	mode_t old;
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		*why = "path too long for a UNIX socket (at most 107 bytes)";
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			*why = "exists and is not a socket";
			return -EEXIST;
		}
		err = socket_in_use(&sa, busy, why);
		if (err)
			return err;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*why = "socket";
		return -errno;
	}
	old = umask(0177);
	err = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old);
	if (!err && chmod(path, 0600) < 0)
		err = -errno;
	if (!err && listen(fd, SOMAXCONN) < 0)
		err = -errno;
	if (err) {
		*why = "bind/listen";
		close(fd);
		return err;
	}
	return fd;
}

bool jsonl_queue(struct jsonl_out *o, const char *s, size_t n, size_t max)
{
	size_t backlog = jsonl_backlog(o);

	if (backlog + n > max)
		return false;
	if (o->off && o->len + n > o->cap) {
		/* a client that reads as we write may never drain us completely: slide what is
		 * unsent to the front rather than grow by what was sent */
		memmove(o->buf, o->buf + o->off, backlog);
		o->off = 0;
		o->len = backlog;
	}
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		char *b;

		while (cap < o->len + n)
			cap *= 2;
		b = realloc(o->buf, cap);
		if (!b)
			return false;
		o->buf = b;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	return true;
}

bool jsonl_flush(struct jsonl_out *o, int fd)
{
	while (o->off < o->len) {
		ssize_t n = send(fd, o->buf + o->off, o->len - o->off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		o->off += (size_t)n;
	}
	return true;
}

void jsonl_out_free(struct jsonl_out *o)
{
	free(o->buf);
	*o = (struct jsonl_out){0};
}

char *jsonl_encode(json_t *ans, int real_precision, size_t *outlen)
{
	char *s = ans ? json_dumps(ans, JSON_COMPACT | JSON_REAL_PRECISION(real_precision)) : NULL;
	char *n;

	json_decref(ans);
	if (!s)
		return NULL;
	*outlen = strlen(s);
	n = realloc(s, *outlen + 2);
	if (!n) {
		free(s);
		return NULL;
	}
	n[(*outlen)++] = '\n';
	n[*outlen] = '\0';
	return n;
}
