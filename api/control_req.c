/* control_req.c: the control socket's requests, one JSON object in, one out (docs/API.md) */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <jansson.h>

#include "api/jsonl.h"
#include "vmm/vmm.h"

typedef json_t *(*ctl_fn)(struct ctl_ctx *c, json_t *req);

#define CTL_PAGER(c) ((c)->vm->mem->pager)

/*
 * Copy at most max bytes of src into dst (cap >= 4 bytes) as whole, valid UTF-8
 * characters: an invalid byte becomes '?', a cut is marked "...". Answers must
 * be valid UTF-8 (jansson refuses anything else), and a quoted argument must
 * not crowd out the message around it.
 */
static void utf8_copy(char *dst, size_t cap, const char *src, size_t max)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t o = 0;

	if (max > cap - 4)
		max = cap - 4; /* room for the "..." and the NUL */
	while (*s) {
		unsigned n = *s < 0x80			? 1
			     : *s >= 0xc2 && *s <= 0xdf ? 2
			     : *s >= 0xe0 && *s <= 0xef ? 3
			     : *s >= 0xf0 && *s <= 0xf4 ? 4
							: 0;
		bool ok = n > 0;

		for (unsigned i = 1; ok && i < n; i++)
			ok = (s[i] & 0xc0) == 0x80;
		/* no overlong forms, surrogates or code points past U+10FFFF */
		if (ok && n == 3)
			ok = !(*s == 0xe0 && s[1] < 0xa0) && !(*s == 0xed && s[1] >= 0xa0);
		if (ok && n == 4)
			ok = !(*s == 0xf0 && s[1] < 0x90) && !(*s == 0xf4 && s[1] >= 0x90);
		if (!ok)
			n = 1;
		if (o + n > max) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (ok)
			memcpy(dst + o, s, n);
		else
			dst[o] = '?';
		o += n;
		s += n;
	}
	dst[o] = '\0';
}

/* An error answer; fmt has one %s for arg, which is quoted up to 128 bytes.
 * NULL only when out of memory (ctl_answer answers that too). */
static json_t *err_json(const char *fmt, const char *arg)
{
	char quoted[136], msg[512], clean[520];

	utf8_copy(quoted, sizeof(quoted), arg, 128);
	snprintf(msg, sizeof(msg), fmt, quoted);
	utf8_copy(clean, sizeof(clean), msg, sizeof(clean) - 8); /* in case snprintf cut it */
	return json_pack("{s:b, s:s}", "ok", 0, "error", clean);
}

static json_t *ok_json(void)
{
	return json_pack("{s:b}", "ok", 1);
}

/* The pager, or NULL with *e set to the error to answer. */
static struct mm_pager *need_pager(struct ctl_ctx *c, json_t **e)
{
	struct mm_pager *p = CTL_PAGER(c);

	if (!p)
		*e = err_json("not available: %s", "this VM runs without the pager");
	return p;
}

/* An optional non-negative integer argument; false (and *e) when malformed. */
static bool arg_u64(json_t *req, const char *key, uint64_t lo, uint64_t hi, uint64_t *v, json_t **e)
{
	json_t *j = json_object_get(req, key);

	if (!j)
		return true;
	if (!json_is_integer(j) || json_integer_value(j) < 0 ||
	    (uint64_t)json_integer_value(j) < lo || (uint64_t)json_integer_value(j) > hi) {
		char range[96];

		snprintf(range, sizeof(range), "'%s' must be an integer in %llu..%llu", key,
			 (unsigned long long)lo, (unsigned long long)hi);
		*e = err_json("bad argument: %s", range);
		return false;
	}
	*v = (uint64_t)json_integer_value(j);
	return true;
}

static json_t *vm_json(struct ctl_ctx *c)
{
	struct vm *vm = c->vm;

	return json_pack("{s:I, s:I, s:i, s:b, s:I}", "mem_bytes", (json_int_t)vm->mem->size,
			 "pages", (json_int_t)(vm->mem->size / 4096), "cpus", (int)vm->ncpus,
			 "paused", (int)atomic_load(&c->paused), "uptime_ms",
			 (json_int_t)(vm->start_ns ? (vmm_now_ns() - vm->start_ns) / 1000000 : 0));
}

#define PSTAT(f)                                                                                   \
	{                                                                                          \
#f, offsetof(struct mm_pager_stats, f)                                             \
	}
static const struct {
	const char *name;
	size_t off;
} pager_fields[] = {
    PSTAT(pages),
    PSTAT(resident_pages),
    PSTAT(swapped_pages),
    PSTAT(memfd_bytes),
    PSTAT(limit_pages),
    PSTAT(swap_slots_used),
    PSTAT(faults_missing),
    PSTAT(faults_minor),
    PSTAT(faults_swapin),
    PSTAT(faults_deferred),
    PSTAT(remove_events),
    PSTAT(chunks),
    PSTAT(chunk_pages),
    PSTAT(swapin_pages),
    PSTAT(swapout_pages),
    PSTAT(swapin_bytes),
    PSTAT(swapout_bytes),
    PSTAT(readahead_pages),
    PSTAT(readahead_hits),
    PSTAT(readahead_stream_pages),
    PSTAT(readahead_eager_pages),
    PSTAT(clean_drops),
    PSTAT(zero_drops),
    PSTAT(reclaim_runs),
    PSTAT(reclaim_scanned),
    PSTAT(zapped_pages),
    PSTAT(max_resident_pages),
    PSTAT(write_errors),
    PSTAT(read_errors),
    PSTAT(bad_pages),
    PSTAT(swapout_all_runs),
    PSTAT(swapout_all_pages),
    PSTAT(swapout_all_resident_bytes),
    PSTAT(swapout_all_ns),
    PSTAT(swapin_all_pages),
    PSTAT(swapin_all_ns),
    PSTAT(host_copies),
    PSTAT(scans),
    PSTAT(scan_zapped),
    PSTAT(scan_cpu_ns),
    PSTAT(reclaim_cpu_ns),
    PSTAT(scan_dirty_pages),
    PSTAT(refault_ns),
    PSTAT(sample_ns),
    PSTAT(proactive_pages),
    PSTAT(proactive_holds),
    PSTAT(coldest_pages),
    PSTAT(discarded_pages),
    PSTAT(stray_pages),
    PSTAT(stall_ns),
    PSTAT(reclaim_stalled),
};

static json_t *pager_json(struct mm_pager *p)
{
	struct mm_pager_stats st;
	json_t *o = json_object(), *lat = json_array();

	mm_pager_get_stats(p, &st);
	for (size_t i = 0; i < sizeof(pager_fields) / sizeof(pager_fields[0]); i++) {
		uint64_t v;

		memcpy(&v, (const char *)&st + pager_fields[i].off, sizeof(v));
		json_object_set_new(o, pager_fields[i].name, json_integer((json_int_t)v));
	}
	for (unsigned i = 0; i < MM_LAT_BUCKETS; i++)
		json_array_append_new(lat, json_integer((json_int_t)st.fault_lat_us[i]));
	json_object_set_new(o, "fault_lat_us", lat);
	lat = json_array();
	for (unsigned i = 0; i < MM_LAT_BUCKETS; i++)
		json_array_append_new(lat, json_integer((json_int_t)st.swapin_lat_us[i]));
	json_object_set_new(o, "swapin_lat_us", lat);
	return o;
}

/* The swap store: its backend and, for memcached, each server's traffic and errors. */
static json_t *swap_json(struct mm_pager *p)
{
	struct swap_server_stats sv[16];
	const char *backend;
	unsigned n = mm_pager_swap_servers(p, sv, 16, &backend);
	json_t *o = json_object(), *a = json_array();

	for (unsigned i = 0; i < n && i < 16; i++)
		json_array_append_new(
		    a, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "name", sv[i].name,
				 "pages_written", (json_int_t)sv[i].pages_written, "pages_read",
				 (json_int_t)sv[i].pages_read, "write_errors",
				 (json_int_t)sv[i].write_errors, "read_errors",
				 (json_int_t)sv[i].read_errors, "bad_values",
				 (json_int_t)sv[i].bad_values, "fallbacks",
				 (json_int_t)sv[i].fallbacks, "down", (int)sv[i].down));
	json_object_set_new(o, "backend", backend ? json_string(backend) : json_null());
	json_object_set_new(o, "servers", a);
	return o;
}

static json_t *req_stats(struct ctl_ctx *c, json_t *req)
{
	struct mm_pager *p = CTL_PAGER(c);
	json_t *r = ok_json();

	(void)req;
	json_object_set_new(r, "vm", vm_json(c));
	json_object_set_new(r, "pager", p ? pager_json(p) : json_null());
	json_object_set_new(r, "swap", p ? swap_json(p) : json_null());
	return r;
}

static json_t *req_limit(struct ctl_ctx *c, json_t *req)
{
	json_t *j = json_object_get(req, "bytes"), *e = NULL;
	struct mm_pager *p;
	uint64_t bytes;
	int err;

	if (json_is_string(j)) {
		if (cli_parse_size(json_string_value(j), &bytes) < 0)
			return err_json("bad argument: 'bytes': '%s' is not a size like 256M",
					json_string_value(j));
	} else if (!json_is_integer(j) || json_integer_value(j) < 0) {
		return err_json("bad argument: %s",
				"'bytes' (0 = no limit) must be given as a "
				"non-negative integer or a size string like \"256M\"");
	} else {
		bytes = (uint64_t)json_integer_value(j);
	}
	if (bytes > c->vm->mem->size)
		return err_json("bad argument: %s", "'bytes' is larger than guest RAM");
	p = need_pager(c, &e);
	if (!p)
		return e;
	err = mm_pager_set_limit(p, bytes);
	if (err < 0)
		return err_json("bad argument: %s", "'bytes' must be 0 (no limit) or at least 4M");
	/* the limit counts whole pages: answer the one in effect */
	return json_pack("{s:b, s:I}", "ok", 1, "limit_bytes", (json_int_t)(bytes / 4096 * 4096));
}

static json_t *req_reclaim(struct ctl_ctx *c, json_t *req)
{
	uint64_t pages = 0, done = 0, t0;
	struct mm_pager *p;
	json_t *e = NULL;
	int err;

	if (!json_object_get(req, "pages"))
		return err_json("bad argument: %s", "'pages' is required");
	if (!arg_u64(req, "pages", 1, c->vm->mem->size / 4096, &pages, &e) ||
	    !(p = need_pager(c, &e)))
		return e;
	t0 = vmm_now_ns();
	err = mm_pager_reclaim(p, pages, &done);
	if (err < 0)
		return err_json("reclaim failed: %s", strerror(-err));
	return json_pack("{s:b, s:I, s:I}", "ok", 1, "reclaimed", (json_int_t)done, "ms",
			 (json_int_t)((vmm_now_ns() - t0) / 1000000));
}

static json_t *req_pause(struct ctl_ctx *c, json_t *req)
{
	(void)req;
	if (!atomic_load(&c->paused)) {
		if (vm_pause(c->vm) < 0) {
			vm_resume(c->vm); /* every vm_pause is matched, even a failed one */
			return err_json("%s", "the VM is stopping");
		}
		atomic_store(&c->paused, true);
	}
	return ok_json();
}

static json_t *req_resume(struct ctl_ctx *c, json_t *req)
{
	(void)req;
	if (atomic_load(&c->paused)) {
		vm_resume(c->vm);
		atomic_store(&c->paused, false);
	}
	return ok_json();
}

/* Run a whole-VM swap operation and report what it did from the stats' deltas. */
static json_t *req_swap(struct ctl_ctx *c, json_t *req, bool out)
{
	struct mm_pager_stats a, b;
	json_t *e = NULL, *pf = json_object_get(req, "prefetch");
	struct mm_pager *p = need_pager(c, &e);
	bool frozen;
	uint64_t t0;
	int err;

	if (pf && !json_is_boolean(pf))
		return err_json("bad argument: %s", "'prefetch' must be true or false");
	if (!p)
		return e;
	mm_pager_get_stats(p, &a);
	t0 = vmm_now_ns();
	err = out ? mm_pager_swapout_all(p, json_is_true(pf) ? MM_SWAPIN_PREFETCH
							     : MM_SWAPIN_ON_DEMAND)
		  : mm_pager_swapin_all(p);
	/* pauses nest: the pager lifts only its own, a client's `pause` stays in force */
	if (err == -ECANCELED || err == -ESHUTDOWN)
		return err_json(out ? "swap-out stopped: %s" : "swap-in stopped: %s",
				"the VM is stopping");
	if (err < 0)
		return err_json(out ? "swap-out failed: %s" : "swap-in failed: %s", strerror(-err));
	/* paused by a client and swapped out: frozen, the pager's own tables go out too */
	frozen = out && c->paused && !json_is_true(pf) && mm_pager_freeze(p) == 0;
	mm_pager_get_stats(p, &b);
	return json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:b}", "ok", 1, "ms",
			 (json_int_t)((vmm_now_ns() - t0) / 1000000), "pages_out",
			 (json_int_t)(b.swapout_pages - a.swapout_pages), "pages_in",
			 (json_int_t)(b.swapin_pages - a.swapin_pages), "resident_pages",
			 (json_int_t)b.resident_pages, "swapped_pages", (json_int_t)b.swapped_pages,
			 "frozen", frozen);
}

static json_t *req_swapout(struct ctl_ctx *c, json_t *req)
{
	return req_swap(c, req, true);
}

static json_t *req_swapin(struct ctl_ctx *c, json_t *req)
{
	return req_swap(c, req, false);
}

static json_t *req_wss(struct ctl_ctx *c, json_t *req)
{
	json_t *e = NULL, *win, *hist, *r;
	struct mm_pager *p;
	struct mm_wss w;

	(void)req;
	if (!(p = need_pager(c, &e)))
		return e;
	if (mm_pager_wss(p, &w) < 0)
		return err_json("not available: %s", "access sampling is off (run ufvm with "
						     "--scan-interval MS or --mem-limit auto)");
	win = json_array();
	hist = json_array();
	for (unsigned i = 0; i < MM_WSS_WINDOWS; i++)
		json_array_append_new(win, json_pack("{s:I, s:I, s:I}", "seconds",
						     (json_int_t)w.window_s[i], "pages",
						     (json_int_t)w.window_pages[i], "covered_ms",
						     (json_int_t)w.window_covered_ms[i]));
	for (unsigned i = 0; i < MM_IDLE_BUCKETS; i++)
		json_array_append_new(hist, json_integer((json_int_t)w.idle_hist[i]));
	r = json_pack("{s:b, s:I, s:I, s:I, s:o, s:o, s:o, s:f, s:f}", "ok", 1, "interval_ms",
		      (json_int_t)w.interval_ms, "scans", (json_int_t)w.scans, "sample_pages",
		      (json_int_t)w.sample_pages, "windows", win, "idle_hist", hist,
		      "write_pages_per_s",
		      w.dirty_tracked ? json_integer((json_int_t)w.write_pages_per_s) : json_null(),
		      "scan_cpu_pct", (double)w.scan_cpu_permille / 10, "refault_pct",
		      (double)w.refault_permille / 10);
	if (w.auto_min_age)
		json_object_set_new(r, "auto_min_age", json_integer((json_int_t)w.auto_min_age));
	return r;
}

static json_t *req_stop(struct ctl_ctx *c, json_t *req)
{
	uint64_t status = 0;
	json_t *e = NULL;

	if (!arg_u64(req, "status", 0, 255, &status, &e))
		return e;
	vm_stop(c->vm, (int)status);
	return ok_json();
}

static const struct {
	const char *name;
	ctl_fn fn;
	const char *args; /* accepted keys besides "cmd" and "id", space-separated */
	bool slow;	  /* may wait long: run on the server's worker (ctl_request_slow) */
} cmds[] = {
    {"stats", req_stats, "", false},
    {"limit", req_limit, "bytes", false},
    {"reclaim", req_reclaim, "pages", true},
    {"pause", req_pause, "", true},
    {"resume", req_resume, "", true},
    {"swapout", req_swapout, "prefetch", true},
    {"swapin", req_swapin, "", true},
    {"wss", req_wss, "", false},
    {"pagemap", ctl_pagemap, "first count", true},
    {"dirty", ctl_dirty, "", false},
    {"balloon", ctl_balloon, "pages", false},
    {"stop", req_stop, "status", false},
};

bool ctl_request_slow(const char *line, size_t len)
{
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *cmd = json_object_get(req, "cmd");
	bool slow = false;

	for (size_t i = 0; json_is_string(cmd) && i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmds[i].name, json_string_value(cmd)))
			slow = cmds[i].slow;
	json_decref(req);
	return slow;
}

/* Is key one of the space-separated words of args? (exactly: "first count" is no key) */
static bool key_listed(const char *key, const char *args)
{
	size_t n = strlen(key);

	for (const char *p = args + strspn(args, " "); *p; p += strspn(p, " ")) {
		size_t len = strcspn(p, " ");

		if (len == n && !memcmp(p, key, n))
			return true;
		p += len;
	}
	return false;
}

/* Unknown keys are errors: a typo must not pass for a default. False with *e
 * (the answer, NULL when it could not be built) when a key is unknown. */
static bool keys_known(json_t *req, const char *args, json_t **e)
{
	const char *key;
	json_t *v;

	json_object_foreach(req, key, v)
	{
		if (!strcmp(key, "cmd") || !strcmp(key, "id") || key_listed(key, args))
			continue;
		*e = err_json("bad argument: unknown key '%s'", key);
		return false;
	}
	return true;
}

static json_t *internal_err(void)
{
	return err_json("internal: %s", "the answer could not be built (out of memory?)");
}

static json_t *dispatch(struct ctl_ctx *c, json_t *req)
{
	json_t *cmd = json_object_get(req, "cmd"), *e = NULL;

	if (!json_is_object(req))
		return err_json("malformed request: %s", "not a JSON object");
	if (!json_is_string(cmd))
		return err_json("malformed request: %s", "no \"cmd\" string");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmds[i].name, json_string_value(cmd)))
			continue;
		if (!keys_known(req, cmds[i].args, &e))
			return e ? e : internal_err(); /* never run a request whose check failed */
		e = cmds[i].fn(c, req);
		return e ? e : internal_err();
	}
	return err_json("unknown command '%s' (expected stats, limit, reclaim, pause, resume, "
			"swapout, swapin, wss, pagemap, dirty, balloon or stop)",
			json_string_value(cmd));
}

char *ctl_answer(struct ctl_ctx *c, const char *line, size_t len, size_t *outlen)
{
	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr), *resp, *id;

	if (!req) {
		char why[200];

		snprintf(why, sizeof(why), "%s (column %d)", jerr.text, jerr.column);
		resp = err_json("malformed request: %s", why);
	} else {
		resp = dispatch(c, req);
	}
	if (!resp)
		resp = internal_err();
	id = json_is_object(req) ? json_object_get(req, "id") : NULL;
	if (resp && id)
		json_object_set(resp, "id", id);
	json_decref(req);
	return jsonl_encode(resp, 4, outlen); /* NULL: the server answers with a constant */
}
