/* api.c: the pool's requests: status, start, attach, detach, set, mark, stop (pool/README.md) */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jsonl.h"
#include "pool/pool.h"

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
	json_decref(req);
	return jsonl_encode(ans, 6, outlen);
}
