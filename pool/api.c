/* api.c: the pool's socket: status, start, attach, detach, set, mark, stop (pool/README.md) */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pool/pool.h"

#define API_CLIENTS  16
#define API_LINE_MAX 65536
#define API_OUT_MAX  (16u << 20) /* a client that reads nothing is dropped past this */

struct api_client {
	int fd;
	bool discarding, eof;
	size_t inlen, outlen, outoff, outcap;
	char in[API_LINE_MAX + 1];
	char *out;
};

struct pool_api {
	int lfd;
	char path[108];
	dev_t dev; /* the socket file we made: removed only if it is still ours */
	ino_t ino;
	struct api_client *cl[API_CLIENTS];
	int who[API_CLIENTS + 1]; /* pollfd slot -> client (-1: the listener) */
};

/* ---- requests ---- */

static json_t *err(const char *fmt, const char *arg)
{
	char msg[400];

	snprintf(msg, sizeof(msg), fmt, arg);
	return json_pack("{s:b, s:s?}", "ok", 0, "error", msg);
}

static bool keys_ok(json_t *req, const char *const *allowed, json_t **e)
{
	const char *k;
	json_t *v;

	json_object_foreach(req, k, v)
	{
		bool ok = !strcmp(k, "cmd") || !strcmp(k, "id");

		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(k, *a);
		if (!ok) {
			char q[64];

			snprintf(q, sizeof(q), "%.48s", k);
			*e = err("bad argument: unknown key '%s'", q);
			return false;
		}
	}
	return true;
}

static int parse_size_json(json_t *j, uint64_t *bytes)
{
	if (json_is_string(j))
		return pool_parse_size(json_string_value(j), bytes);
	if (json_is_integer(j) && json_integer_value(j) >= 0) {
		*bytes = (uint64_t)json_integer_value(j);
		return 0;
	}
	return -EINVAL;
}

static bool get_shares(json_t *req, uint64_t *shares, json_t **e)
{
	json_t *j = json_object_get(req, "shares");

	*shares = 1;
	if (!j)
		return true;
	if (!json_is_integer(j) || json_integer_value(j) < 1 || json_integer_value(j) > 1000000) {
		*e = err("bad argument: %s", "'shares' must be an integer in 1..1000000");
		return false;
	}
	*shares = (uint64_t)json_integer_value(j);
	return true;
}

static json_t *req_start(struct pool *p, json_t *req)
{
	static const char *const keys[] = {"name", "args", "shares", NULL};
	json_t *name = json_object_get(req, "name"), *args = json_object_get(req, "args"),
	       *e = NULL;
	const char *why = "";
	uint64_t shares;
	char **argv;
	size_t n;
	int rc;

	if (!keys_ok(req, keys, &e) || !get_shares(req, &shares, &e))
		return e;
	if (!json_is_string(name) || !json_is_array(args) || !json_array_size(args) ||
	    json_array_size(args) > 256)
		return err("bad argument: %s", "start needs 'name' (a string) and 'args' (1..256 "
					       "strings: ufvm run's arguments, the guest last)");
	n = json_array_size(args);
	argv = calloc(n + 1, sizeof(*argv));
	for (size_t i = 0; argv && i < n; i++) {
		json_t *a = json_array_get(args, i);

		if (!json_is_string(a) || strlen(json_string_value(a)) > 4096) {
			for (size_t j = 0; j < i; j++)
				free(argv[j]);
			free(argv);
			return err("bad argument: %s", "every one of 'args' must be a string of at "
						       "most 4096 bytes");
		}
		argv[i] = strdup(json_string_value(a));
		if (!argv[i])
			break; /* caught below: a NULL before n */
	}
	for (size_t i = 0; argv && i < n; i++)
		if (!argv[i]) {
			for (size_t j = 0; j < i; j++)
				free(argv[j]);
			free(argv);
			argv = NULL;
		}
	if (!argv)
		return err("internal: %s", "out of memory");
	if (p->stopping)
		why = "the pool is stopping", rc = -ESHUTDOWN;
	else
		rc = pool_add(p, json_string_value(name), NULL, argv, shares, &why);
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			free(argv[i]);
		free(argv);
		return err("start failed: %s", why);
	}
	pool_decide_now(p); /* make room for it now */
	return json_pack("{s:b, s:s, s:s}", "ok", 1, "state",
			 pool_state_name(pool_find(p, json_string_value(name))), "socket",
			 pool_find(p, json_string_value(name))->sock);
}

static json_t *req_attach(struct pool *p, json_t *req)
{
	static const char *const keys[] = {"name", "socket", "shares", NULL};
	json_t *name = json_object_get(req, "name"), *sock = json_object_get(req, "socket"),
	       *e = NULL;
	const char *why = "";
	uint64_t shares;

	if (!keys_ok(req, keys, &e) || !get_shares(req, &shares, &e))
		return e;
	if (!json_is_string(name) || !json_is_string(sock))
		return err("bad argument: %s", "attach needs 'name' and 'socket' (strings)");
	if (pool_add(p, json_string_value(name), json_string_value(sock), NULL, shares, &why) < 0)
		return err("attach failed: %s", why);
	return json_pack("{s:b}", "ok", 1);
}

static struct pool_vm *named(struct pool *p, json_t *req, json_t **e)
{
	json_t *name = json_object_get(req, "name");
	struct pool_vm *v;

	if (!json_is_string(name)) {
		*e = err("bad argument: %s", "'name' (a string) is required");
		return NULL;
	}
	v = pool_find(p, json_string_value(name));
	if (!v) {
		char q[64];

		snprintf(q, sizeof(q), "%.48s", json_string_value(name));
		*e = err("no VM named '%s' in the pool", q);
	}
	return v;
}

static json_t *req_detach(struct pool *p, json_t *req)
{
	static const char *const keys[] = {"name", NULL};
	json_t *e = NULL;
	struct pool_vm *v;

	if (!keys_ok(req, keys, &e) || !(v = named(p, req, &e)))
		return e;
	if (v->child && !v->reaped)
		return err("%s", "cannot detach a VM the pool started (it would be left "
				 "unmanaged): stop it instead");
	pool_forget(p, v);
	return json_pack("{s:b}", "ok", 1);
}

static json_t *req_set(struct pool *p, json_t *req)
{
	static const char *const keys[] = {"budget", "policy", "name", "shares", NULL};
	json_t *b = json_object_get(req, "budget"), *pol = json_object_get(req, "policy"),
	       *e = NULL;
	struct pool_vm *v = NULL;
	enum pool_policy np = p->pp.policy;
	uint64_t bytes = p->pp.budget * POOL_PAGE, shares = 0;

	if (!keys_ok(req, keys, &e))
		return e;
	if (b && (parse_size_json(b, &bytes) < 0 || bytes < (4ULL << 20)))
		return err("bad argument: %s",
			   "'budget' must be a size of at least 4M, like \"1G\"");
	if (pol && (!json_is_string(pol) || pool_policy_parse(json_string_value(pol), &np) < 0))
		return err("bad argument: %s", "'policy' must be static, wss, tax or pressure");
	if (json_object_get(req, "shares") || json_object_get(req, "name")) {
		if (!(v = named(p, req, &e)) || !get_shares(req, &shares, &e))
			return e;
		if (!json_object_get(req, "shares"))
			return err("bad argument: %s", "'name' goes with 'shares'");
	}
	if (b && bytes / POOL_PAGE != p->pp.budget) {
		p->pp.budget = bytes / POOL_PAGE;
		pool_event(p, NULL, "budget now %" PRIu64 " MiB", p->pp.budget / 256);
	}
	if (np != p->pp.policy) {
		p->pp.policy = np;
		pool_event(p, NULL, "policy now %s", pool_policy_name(np));
	}
	if (v && shares != v->shares) {
		v->shares = shares;
		pool_event(p, v, "shares now %" PRIu64, shares);
	}
	pool_decide_now(p);
	return json_pack("{s:b, s:I, s:s}", "ok", 1, "budget_bytes",
			 (json_int_t)(p->pp.budget * POOL_PAGE), "policy",
			 pool_policy_name(p->pp.policy));
}

static json_t *req_mark(struct pool *p, json_t *req)
{
	static const char *const keys[] = {"label", "name", NULL};
	json_t *l = json_object_get(req, "label"), *n = json_object_get(req, "name"), *e = NULL;
	struct pool_vm *v = NULL;

	if (!keys_ok(req, keys, &e))
		return e;
	if (!json_is_string(l) || !*json_string_value(l) || strlen(json_string_value(l)) > 120)
		return err("bad argument: %s", "'label' must be a string of 1..120 bytes");
	if (n && !(v = named(p, req, &e)))
		return e;
	pool_event(p, v, "mark: %s", json_string_value(l));
	return json_pack("{s:b}", "ok", 1);
}

static json_t *req_status(struct pool *p, json_t *req)
{
	static const char *const keys[] = {NULL};
	json_t *e = NULL;

	if (!keys_ok(req, keys, &e))
		return e;
	return pool_status_json(p);
}

static json_t *req_stop(struct pool *p, json_t *req)
{
	static const char *const keys[] = {NULL};
	json_t *e = NULL;

	if (!keys_ok(req, keys, &e))
		return e;
	p->stopping = true;
	return json_pack("{s:b}", "ok", 1);
}

static const struct {
	const char *name;
	json_t *(*fn)(struct pool *p, json_t *req);
} cmds[] = {
    {"status", req_status}, {"start", req_start}, {"attach", req_attach}, {"detach", req_detach},
    {"set", req_set},	    {"mark", req_mark},	  {"stop", req_stop},
};

char *pool_request(struct pool *p, const char *line, size_t len, size_t *outlen)
{
	json_error_t je;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je), *ans = NULL, *cmd;
	char *s, *n;

	if (!json_is_object(req)) {
		char why[200];

		snprintf(why, sizeof(why), "%s", req ? "not a JSON object" : je.text);
		ans = err("malformed request: %s", why);
	} else if (!json_is_string(cmd = json_object_get(req, "cmd"))) {
		ans = err("malformed request: %s", "no \"cmd\" string");
	} else {
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]) && !ans; i++)
			if (!strcmp(cmds[i].name, json_string_value(cmd)))
				ans = cmds[i].fn(p, req);
		if (!ans) {
			char q[64];

			snprintf(q, sizeof(q), "%.48s", json_string_value(cmd));
			ans = err("unknown command '%s' (expected status, start, attach, detach, "
				  "set, mark or stop)",
				  q);
		}
	}
	if (ans && json_is_object(req) && json_object_get(req, "id"))
		json_object_set(ans, "id", json_object_get(req, "id"));
	s = ans ? json_dumps(ans, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	json_decref(ans);
	json_decref(req);
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

/* ---- the server: the VMs' control socket in small (one thread: the pool's loop) ---- */

static const char too_long[] = "{\"ok\":false,\"error\":\"request too long: more than 65536 "
			       "bytes before the newline\"}\n";
static const char internal[] = "{\"ok\":false,\"error\":\"internal: out of memory\"}\n";
static const char too_many[] = "{\"ok\":false,\"error\":\"too many clients (16)\"}\n";

static bool queue(struct api_client *k, const char *s, size_t n)
{
	if (k->outlen - k->outoff + n > API_OUT_MAX)
		return false;
	if (k->outoff == k->outlen)
		k->outoff = k->outlen = 0;
	if (k->outlen + n > k->outcap) {
		size_t c = k->outcap ? k->outcap : 4096;
		char *b;

		while (c < k->outlen + n)
			c *= 2;
		b = realloc(k->out, c);
		if (!b)
			return false;
		k->out = b;
		k->outcap = c;
	}
	memcpy(k->out + k->outlen, s, n);
	k->outlen += n;
	return true;
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
	while (k->outoff < k->outlen) {
		ssize_t n = send(k->fd, k->out + k->outoff, k->outlen - k->outoff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		k->outoff += (size_t)n;
	}
	return !k->eof || k->outoff < k->outlen; /* a half-closed client gets its answers */
}

static void drop(struct pool_api *a, unsigned i)
{
	close(a->cl[i]->fd);
	free(a->cl[i]->out);
	free(a->cl[i]);
	a->cl[i] = NULL;
}

int pool_api_open(struct pool_api **out, const char *path, const char **why)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct pool_api *a;
	struct stat st;
	mode_t old;
	int fd, e;

	*why = "path too long for a UNIX socket (at most 107 bytes)";
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			*why = "exists and is not a socket";
			return -EEXIST;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		e = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (fd >= 0)
			close(fd);
		if (e) {
			*why = "in use by a running pool (stop it, or choose another path)";
			return -EADDRINUSE;
		}
		unlink(path); /* stale */
	}
	a = calloc(1, sizeof(*a));
	*why = "out of memory";
	if (!a)
		return -ENOMEM;
	snprintf(a->path, sizeof(a->path), "%s", path);
	a->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	old = umask(0177);
	e = a->lfd < 0 || bind(a->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(a->lfd, 64) < 0 || stat(path, &st) < 0
		? -errno
		: 0;
	umask(old);
	if (e) {
		*why = "bind/listen";
		if (a->lfd >= 0)
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
							  (k->outoff < k->outlen ? POLLOUT : 0))};
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
