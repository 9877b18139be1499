/* conn.c: ufvmctl's connection to the control socket: one JSON line out, one in */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tools/ufvmctl.h"

int uc_connect(struct uc *c, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	memset(c, 0, sizeof(*c));
	c->path = path;
	c->cancel_fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(c->fd);
		c->fd = -1;
		return err;
	}
	return 0;
}

void uc_close(struct uc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

/*
 * Wait until the socket is ready for events. With a cancel callback the wait
 * is sliced (100 ms) so that a signal or a key is seen at once, even one that
 * arrived just before poll(). 0, -ECANCELED or -errno.
 */
static int wait_fd(struct uc *c, short events)
{
	for (;;) {
		struct pollfd pf[2] = {{.fd = c->fd, .events = events},
				       {.fd = c->cancel_fd, .events = POLLIN}};
		int n = poll(pf, c->cancel_fd >= 0 ? 2 : 1, c->cancel ? 100 : -1);

		if (n < 0 && errno != EINTR)
			return -errno;
		if (c->cancel && c->cancel(c))
			return -ECANCELED;
		if (n > 0 && (pf[1].revents & (POLLHUP | POLLERR | POLLNVAL)))
			c->cancel_fd = -1; /* a terminal that went away: stop watching it */
		if (n > 0 && pf[0].revents)
			return 0;
	}
}

/* A peer that is gone, as one error: the VM ended or dropped us. */
static int gone(int err)
{
	return err == -ECONNRESET || err == -EPIPE ? -EPIPE : err;
}

static int send_all(struct uc *c, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			int err = wait_fd(c, POLLOUT);

			if (err)
				return err;
			continue;
		}
		if (w < 0)
			return gone(-errno);
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Receive up to the next newline; returns the line's length (newline excluded) or -errno. */
static ssize_t recv_line(struct uc *c)
{
	char *nl;

	while (!(nl = c->len ? memchr(c->buf, '\n', c->len) : NULL)) {
		ssize_t r;

		if (c->cap - c->len < 65536) {
			char *n = realloc(c->buf, c->cap + (c->cap > 65536 ? c->cap : 65536));

			if (!n)
				return -ENOMEM;
			c->buf = n;
			c->cap += c->cap > 65536 ? c->cap : 65536;
		}
		r = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			int err = wait_fd(c, POLLIN);

			if (err)
				return err;
			continue;
		}
		if (r < 0)
			return gone(-errno);
		if (r == 0)
			return -EPIPE;
		c->len += (size_t)r;
	}
	return nl - c->buf;
}

static const char *err_text(int err)
{
	return err == -EPIPE	   ? "the VM closed the connection (has it ended?)"
	       : err == -ECANCELED ? "interrupted"
				   : strerror(-err);
}

json_t *uc_call(struct uc *c, json_t *req, const char **why)
{
	static char msg[256];
	char *s = json_dumps(req, JSON_COMPACT);
	json_error_t jerr;
	json_t *ans = NULL;
	ssize_t n;
	int err;

	json_decref(req);
	c->err = -ENOMEM;
	if (!s) {
		*why = "out of memory";
		return NULL;
	}
	err = send_all(c, s, strlen(s));
	if (!err)
		err = send_all(c, "\n", 1);
	free(s);
	if (err) {
		snprintf(msg, sizeof(msg), "send failed: %s", err_text(err));
		c->err = err;
		*why = msg;
		return NULL;
	}
	n = recv_line(c);
	if (n < 0) {
		snprintf(msg, sizeof(msg), "no answer: %s", err_text((int)n));
		c->err = (int)n;
		*why = msg;
		return NULL;
	}
	ans = json_loadb(c->buf, (size_t)n, 0, &jerr);
	memmove(c->buf, c->buf + n + 1, c->len - (size_t)n - 1);
	c->len -= (size_t)n + 1;
	if (!json_is_object(ans)) {
		snprintf(msg, sizeof(msg), "answer is not a JSON object: %s", jerr.text);
		json_decref(ans);
		c->err = -EBADMSG;
		*why = msg;
		return NULL;
	}
	c->err = 0;
	return ans;
}

json_t *uc_cmd(struct uc *c, const char *cmd, const char **why)
{
	return uc_call(c, json_pack("{s:s}", "cmd", cmd), why);
}

uint64_t uc_u64(json_t *o, const char *key)
{
	json_t *j = json_object_get(o, key);

	return json_is_integer(j) && json_integer_value(j) > 0 ? (uint64_t)json_integer_value(j)
							       : 0;
}

uint64_t uc_pager(json_t *stats, const char *key)
{
	return uc_u64(json_object_get(stats, "pager"), key);
}

int64_t uc_pagemap_decode(json_t *ans, const char *field, uint8_t **out)
{
	const char *s = json_string_value(json_object_get(ans, field));
	size_t n, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	*out = NULL;
	if (!s)
		return -1;
	n = strlen(s);
	*out = malloc(n / 4 * 3 + 3);
	if (!*out)
		return -1;
	for (size_t i = 0; i < n && s[i] != '='; i++) {
		const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		const char *p = strchr(t, s[i]);

		if (!p || !s[i]) {
			free(*out);
			*out = NULL;
			return -1;
		}
		acc = acc << 6 | (uint32_t)(p - t);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			(*out)[o++] = (uint8_t)(acc >> bits);
		}
	}
	return (int64_t)o;
}

const char *uc_bytes(uint64_t b, char *buf, size_t n)
{
	if (b >= (10ULL << 30))
		snprintf(buf, n, "%.1f GiB", (double)b / (1 << 30));
	else
		snprintf(buf, n, "%.1f MiB", (double)b / (1 << 20));
	return buf;
}
