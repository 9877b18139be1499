/* swap_memcached.c: the memcached swap backend: a page per key on a cluster, with replicas */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include <libmemcached/memcached.h>

#include "mm/mm.h"

/*
 * Each page is one value of exactly 4096 bytes under the key
 * "ufvm:VMID:PFN:SLOT" (hex), so VMs share a cluster without meeting. Which server
 * holds a page is libmemcached's consistent hashing (ketama) of the page's
 * group of 8 neighbours, so a readahead cluster costs one round trip to one
 * server; with replicas=N the copies go to the N servers after it on the
 * server list, all different. Servers must run with -M: a full server then
 * answers an error instead of silently evicting a page.
 *
 * Each server has its own connection (a memcached_st holding only it), so
 * that errors, timeouts and traffic are told apart per server, and a batch
 * goes to every server before any answer is awaited:
 *
 * - write: the pages are sent as quiet sets (binary SETQ, pipelined, no
 *   answer unless an error, and libmemcached drops those), then read back
 *   with one multi-get per server and compared with what was sent. A page is
 *   stored only when every copy came back equal; otherwise the io fails and
 *   the pager keeps the page resident. The read-back costs a second transfer
 *   and is what makes a failed set (a full server) visible at all.
 * - read: one multi-get per server for the pages it holds first; a page
 *   missing, unreadable or failing the pager's tag check is asked of its next
 *   replica, and so on. A page no copy of which comes back fails the io, and
 *   why() names the page and every server asked.
 * - timeouts bound every connect, send and receive (timeout_ms, default 1000);
 *   a server that failed is skipped for a second before it is tried again, so
 *   a dead or stopped server costs one timeout, not one per page.
 * - discard queues a delete, sent (quietly) before the next batch, so a
 *   page's later write can never be overtaken by its own delete.
 */

#define MC_MAX_SERVERS 16
#define MC_GROUP_SHIFT 3 /* 8 pages per server choice: one round trip per readahead cluster */
#define MC_KEY_MAX     48
#define MC_DOWN_NS     1000000000ULL
#define MC_TIMEOUT_MS  1000
#define MC_MAX_DELETES 4096
#define MC_MGET_CHUNK  64 /* keys per multi-get request: 256 KiB of answers */
#define MC_PAGE	       4096u

struct mc_server {
	memcached_st *mc; /* this server alone */
	memcached_result_st res;
	bool res_ok;
	uint64_t down_until; /* mm_now_ns() before which the server is skipped */
	struct swap_server_stats st;
	/* the keys of one round of a batch */
	const char **keys;
	size_t *klen;
	unsigned nkeys;
	size_t capkeys;
};

/* One page of a batch. */
struct mc_page {
	uint64_t pfn, slot;
	uint8_t *buf;
	uint32_t io;	    /* index of its swap_io */
	uint8_t first;	    /* the first server of its copies */
	bool done, bad;	    /* done: read; bad: a copy was not this page's data */
	uint16_t confirmed; /* write: one bit per copy (rank) read back equal */
	char key[MC_KEY_MAX];
	uint8_t klen;
};

struct mc_store {
	struct mc_server srv[MC_MAX_SERVERS];
	unsigned nsrv, replicas, timeout_ms;
	unsigned round;	    /* the copy rank a multi-get round asks for */
	memcached_st *ring; /* every server, ketama: picks a group's first server */
	uint64_t vm_id, max_pages;
	bool (*verify)(void *ctx, uint64_t slot, uint64_t pfn, const void *page);
	void *vctx;
	struct swap_stats st;
	struct mc_page *pg;
	size_t cappg;
	uint64_t *stored; /* one bit per slot: every copy confirmed, not discarded since */
	size_t stored_bytes;
	uint64_t *dels; /* pfn << 32 | slot of copies to delete */
	unsigned ndel;
	char why[512];
};

/* memcached://HOST:PORT[,HOST:PORT...][?replicas=N&timeout_ms=T] */
static int parse_url(struct mc_store *s, const char *url)
{
	char *copy = strdup(url + strlen("memcached://")), *q, *tok, *save = NULL;
	int err = -EINVAL;

	if (!copy)
		return -ENOMEM;
	s->timeout_ms = MC_TIMEOUT_MS;
	q = strchr(copy, '?');
	if (q)
		*q++ = 0;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strrchr(tok, ':'), *end;
		unsigned long port;

		if (!colon || colon == tok || s->nsrv == MC_MAX_SERVERS) {
			snprintf(swap_open_why(), SWAP_WHY_LEN,
				 "'%s': want HOST:PORT (at most %d servers)", tok, MC_MAX_SERVERS);
			goto out;
		}
		*colon = 0;
		port = strtoul(colon + 1, &end, 10);
		if (*end || !port || port > 65535) {
			snprintf(swap_open_why(), SWAP_WHY_LEN, "'%s': bad port", colon + 1);
			goto out;
		}
		snprintf(s->srv[s->nsrv].st.name, sizeof(s->srv[s->nsrv].st.name), "%s:%lu", tok,
			 port);
		s->srv[s->nsrv].st.name[sizeof(s->srv[0].st.name) - 1] = 0;
		s->nsrv++;
	}
	for (tok = q ? strtok_r(q, "&", &save) : NULL; tok; tok = strtok_r(NULL, "&", &save)) {
		unsigned long v;
		char *end;

		if (!strncmp(tok, "replicas=", 9))
			v = strtoul(tok + 9, &end, 10), s->replicas = (unsigned)v;
		else if (!strncmp(tok, "timeout_ms=", 11))
			v = strtoul(tok + 11, &end, 10), s->timeout_ms = (unsigned)v;
		else
			end = tok, v = 0;
		if (end == tok || *end || v > 60000 || (tok[0] == 't' && v == 0)) {
			snprintf(swap_open_why(), SWAP_WHY_LEN,
				 "'%s': want replicas=N or timeout_ms=1..60000", tok);
			goto out;
		}
	}
	if (!s->nsrv) {
		snprintf(swap_open_why(), SWAP_WHY_LEN,
			 "no server (want HOST:PORT[,HOST:PORT...])");
		goto out;
	}
	if (s->replicas >= s->nsrv) {
		snprintf(swap_open_why(), SWAP_WHY_LEN,
			 "replicas=%u needs at least %u servers (copies go to different ones)",
			 s->replicas, s->replicas + 1);
		goto out;
	}
	err = 0;
out:
	free(copy);
	return err;
}

static int add_server(memcached_st *mc, const char *name)
{
	char host[64];
	const char *colon = strrchr(name, ':');
	size_t n = (size_t)(colon - name);

	if (n >= sizeof(host))
		return -EINVAL;
	memcpy(host, name, n);
	host[n] = 0;
	return memcached_server_add(mc, host, (in_port_t)atoi(colon + 1)) == MEMCACHED_SUCCESS
		   ? 0
		   : -EINVAL;
}

static memcached_st *connect_one(struct mc_store *s, const char *name)
{
	memcached_st *mc = memcached_create(NULL);

	if (!mc || add_server(mc, name) < 0) {
		memcached_free(mc);
		return NULL;
	}
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, s->timeout_ms);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, s->timeout_ms);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, (uint64_t)s->timeout_ms * 1000);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, (uint64_t)s->timeout_ms * 1000);
	memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1);
	return mc;
}

/* The server's "stats settings" say whether it evicts. */
static memcached_return_t settings_cb(const memcached_instance_st *server, const char *key,
				      size_t key_length, const char *value, size_t value_length,
				      void *ctx)
{
	(void)server;
	if (key_length == 9 && !memcmp(key, "evictions", 9))
		*(int *)ctx = value_length == 2 && !memcmp(value, "on", 2) ? 1 : 0;
	return MEMCACHED_SUCCESS;
}

static int check_server(struct mc_store *s, struct mc_server *v)
{
	int evicts = -1;
	memcached_return_t rc = memcached_stat_execute(v->mc, "settings", settings_cb, &evicts);

	if (rc != MEMCACHED_SUCCESS || evicts < 0) {
		snprintf(swap_open_why(), SWAP_WHY_LEN, "server %s: cannot reach it: %s",
			 v->st.name,
			 rc != MEMCACHED_SUCCESS ? memcached_last_error_message(v->mc)
						 : "no settings in its answer");
		return -EHOSTUNREACH;
	}
	if (evicts) {
		snprintf(swap_open_why(), SWAP_WHY_LEN,
			 "server %s evicts items when full: start it with -M, so that a full "
			 "server refuses a page instead of dropping one",
			 v->st.name);
		return -EINVAL;
	}
	(void)s;
	return 0;
}

static void mc_close(void *impl);

static int mc_open(void **out, const struct swap_opts *o, uint64_t max_pages)
{
	struct mc_store *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->max_pages = max_pages;
	s->verify = o->verify;
	s->vctx = o->verify_ctx;
	s->vm_id = o->vm_id;
	while (!s->vm_id)
		if (getrandom(&s->vm_id, sizeof(s->vm_id), 0) != sizeof(s->vm_id))
			s->vm_id = mm_now_ns();
	err = o->direct ? -EINVAL : parse_url(s, o->path);
	if (o->direct)
		snprintf(swap_open_why(), SWAP_WHY_LEN, "--swap-direct is for swap files only");
	if (err)
		goto err_free;
	err = -ENOMEM;
	s->ring = memcached_create(NULL);
	s->dels = calloc(MC_MAX_DELETES, sizeof(*s->dels));
	s->stored_bytes = (max_pages + 63) / 64 * 8;
	s->stored = mmap(NULL, s->stored_bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->stored == MAP_FAILED)
		s->stored = NULL;
	if (!s->ring || !s->dels || !s->stored)
		goto err_free;
	memcached_behavior_set(s->ring, MEMCACHED_BEHAVIOR_DISTRIBUTION,
			       MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
	for (unsigned i = 0; i < s->nsrv; i++) {
		struct mc_server *v = &s->srv[i];

		err = -ENOMEM;
		v->mc = connect_one(s, v->st.name);
		if (!v->mc)
			goto err_free;
		v->res_ok = memcached_result_create(v->mc, &v->res) != NULL;
		if (!v->res_ok || add_server(s->ring, v->st.name) < 0)
			goto err_free;
		err = check_server(s, v);
		if (err)
			goto err_free;
	}
	*out = s;
	return 0;

err_free:
	mc_close(s);
	return err;
}

/* Delete every page still listed as deleted-to-be, then the copies of everything else. */
static void flush_deletes(struct mc_store *s);

static void mc_close(void *impl)
{
	struct mc_store *s = impl;

	if (!s)
		return;
	flush_deletes(s);
	if (s->stored)
		munmap(s->stored, s->stored_bytes);
	for (unsigned i = 0; i < s->nsrv; i++) {
		if (s->srv[i].res_ok)
			memcached_result_free(&s->srv[i].res);
		memcached_free(s->srv[i].mc);
		free(s->srv[i].keys);
		free(s->srv[i].klen);
	}
	memcached_free(s->ring);
	free(s->dels);
	free(s->pg);
	free(s);
}

/*
 * The slot is in the key too: a discard (a delete) then only ever removes the copy
 * it was for. Without it, the delete of a page's old copy, sent after the page was
 * written again (the whole-VM swap-in frees slots late), would remove the new one.
 */
static int make_key(const struct mc_store *s, uint64_t pfn, uint64_t slot, char *key)
{
	return snprintf(key, MC_KEY_MAX, "ufvm:%" PRIx64 ":%" PRIx64 ":%" PRIx64, s->vm_id, pfn,
			slot);
}

/* The first server of page pfn's copies: ketama over its group's key. */
static unsigned first_server(const struct mc_store *s, uint64_t pfn)
{
	char g[MC_KEY_MAX];
	int n =
	    snprintf(g, sizeof(g), "ufvm:%" PRIx64 ":g%" PRIx64, s->vm_id, pfn >> MC_GROUP_SHIFT);

	return s->nsrv == 1 ? 0 : memcached_generate_hash(s->ring, g, (size_t)n) % s->nsrv;
}

static bool server_up(const struct mc_server *v)
{
	return mm_now_ns() >= v->down_until;
}

/* A connection-level failure: forget the connection's state and skip it a while. */
static void server_failed(struct mc_store *s, struct mc_server *v, memcached_return_t rc)
{
	snprintf(s->why, sizeof(s->why), "server %s: %s", v->st.name,
		 rc == MEMCACHED_TIMEOUT ? "timed out" : memcached_last_error_message(v->mc));
	memcached_quit(v->mc);
	v->down_until = mm_now_ns() + MC_DOWN_NS;
	v->st.down = true;
}

/*
 * Send the queued deletes, quietly (DELETEQ: no answer when it worked). Only slots
 * whose copies were all confirmed are ever queued (stored[]), because a quiet
 * delete of a key that is not there answers "not found" all the same, which
 * libmemcached would read as the answer to the next request.
 */
static void flush_deletes(struct mc_store *s)
{
	char key[MC_KEY_MAX];

	if (!s->ndel)
		return;
	for (unsigned i = 0; i < s->nsrv; i++)
		memcached_behavior_set(s->srv[i].mc, MEMCACHED_BEHAVIOR_NOREPLY, 1);
	for (unsigned k = 0; k < s->ndel; k++) {
		unsigned first = first_server(s, s->dels[k] >> 32);
		int n = make_key(s, s->dels[k] >> 32, s->dels[k] & UINT32_MAX, key);

		for (unsigned r = 0; r <= s->replicas; r++) {
			struct mc_server *v = &s->srv[(first + r) % s->nsrv];

			if (server_up(v))
				memcached_delete(v->mc, key, (size_t)n, 0);
		}
	}
	for (unsigned i = 0; i < s->nsrv; i++)
		memcached_behavior_set(s->srv[i].mc, MEMCACHED_BEHAVIOR_NOREPLY, 0);
	s->ndel = 0;
}

static bool stored_test(const struct mc_store *s, uint64_t slot)
{
	return slot < s->max_pages && (s->stored[slot / 64] >> (slot % 64) & 1);
}

static void stored_set(struct mc_store *s, uint64_t slot, bool on)
{
	if (slot >= s->max_pages)
		return;
	if (on)
		s->stored[slot / 64] |= 1ULL << (slot % 64);
	else
		s->stored[slot / 64] &= ~(1ULL << (slot % 64));
}

static void mc_discard(void *impl, uint64_t slot, uint64_t pfn)
{
	struct mc_store *s = impl;

	if (!stored_test(s, slot))
		return; /* never stored whole (a failed write): nothing known to delete */
	stored_set(s, slot, false);
	if (s->ndel == MC_MAX_DELETES)
		flush_deletes(s);
	s->dels[s->ndel++] = pfn << 32 | (slot & UINT32_MAX); /* both < 2^32 (mm.h) */
}

/* Flatten ios into pages; -EINVAL for a malformed io (its res set). */
static int gather(struct mc_store *s, struct swap_io *ios, unsigned n, size_t *npg)
{
	size_t total = 0, k = 0;

	for (unsigned i = 0; i < n; i++) {
		ios[i].res = 0;
		if (!ios[i].npages || !ios[i].buf || ios[i].slot + ios[i].npages > s->max_pages)
			ios[i].res = -EINVAL;
		else
			total += ios[i].npages;
	}
	if (total > s->cappg) {
		struct mc_page *pg = realloc(s->pg, total * sizeof(*pg));

		if (!pg)
			return -ENOMEM;
		s->pg = pg;
		s->cappg = total;
	}
	for (unsigned i = 0; i < s->nsrv; i++) {
		struct mc_server *v = &s->srv[i];
		const char **keys;
		size_t *klen;

		if (v->capkeys >= total)
			continue;
		keys = realloc(v->keys, total * sizeof(*keys));
		if (keys)
			v->keys = keys;
		klen = realloc(v->klen, total * sizeof(*klen));
		if (klen)
			v->klen = klen;
		if (!keys || !klen)
			return -ENOMEM;
		v->capkeys = total;
	}
	for (unsigned i = 0; i < n; i++)
		for (uint32_t j = 0; !ios[i].res && j < ios[i].npages; j++, k++) {
			struct mc_page *p = &s->pg[k];

			*p = (struct mc_page){.pfn = ios[i].pfn + j,
					      .slot = ios[i].slot + j,
					      .buf = (uint8_t *)ios[i].buf + (size_t)j * MC_PAGE,
					      .io = i};
			p->klen = (uint8_t)make_key(s, p->pfn, p->slot, p->key);
			p->first = (uint8_t)first_server(s, p->pfn);
		}
	*npg = k;
	return 0;
}

static struct mc_page *find_page(struct mc_store *s, size_t npg, const char *key, size_t klen)
{
	char buf[MC_KEY_MAX];
	uint64_t pfn, slot;
	char *end;
	size_t lo = 0, hi = npg;
	int pre = snprintf(buf, sizeof(buf), "ufvm:%" PRIx64 ":", s->vm_id);

	if (klen >= sizeof(buf) || klen <= (size_t)pre || memcmp(key, buf, (size_t)pre))
		return NULL;
	memcpy(buf, key, klen);
	buf[klen] = 0;
	pfn = strtoull(buf + pre, &end, 16);
	if (*end != ':')
		return NULL;
	slot = strtoull(end + 1, &end, 16);
	if (*end)
		return NULL;
	/* pages are gathered in ascending order in every caller, but do not rely on it */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (s->pg[mid].pfn == pfn)
			return s->pg[mid].slot == slot ? &s->pg[mid] : NULL;
		if (s->pg[mid].pfn < pfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = 0; i < npg; i++)
		if (s->pg[i].pfn == pfn && s->pg[i].slot == slot)
			return &s->pg[i];
	return NULL;
}

/*
 * One multi-get round: every server with keys gets a request for the next
 * MC_MGET_CHUNK of them, then every answer is read, until all are asked.
 * Chunks, because a server answers a multi-get as it reads it: asked for
 * thousands of pages at once it fills the socket with answers while the rest
 * of the request is still being sent, and libmemcached then crawls through
 * poll timeouts. check(s, page, value) accepts or refuses a value.
 */
static void mget_round(struct mc_store *s, size_t npg, bool write,
		       bool (*check)(struct mc_store *, struct mc_page *, const char *, size_t))
{
	unsigned off[MC_MAX_SERVERS] = {0}, len[MC_MAX_SERVERS], got[MC_MAX_SERVERS] = {0};

	for (bool more = true; more;) {
		more = false;
		for (unsigned i = 0; i < s->nsrv; i++) {
			struct mc_server *v = &s->srv[i];
			memcached_return_t rc;

			len[i] =
			    v->nkeys - off[i] < MC_MGET_CHUNK ? v->nkeys - off[i] : MC_MGET_CHUNK;
			if (!len[i])
				continue;
			rc = memcached_mget(v->mc, v->keys + off[i], v->klen + off[i], len[i]);
			if (rc != MEMCACHED_SUCCESS) {
				server_failed(s, v, rc);
				off[i] = v->nkeys; /* the rest count as errors below */
				len[i] = 0;
			}
		}
		for (unsigned i = 0; i < s->nsrv; i++) {
			struct mc_server *v = &s->srv[i];
			memcached_return_t rc = MEMCACHED_SUCCESS;
			memcached_result_st *r;

			if (!len[i])
				continue;
			while ((r = memcached_fetch_result(v->mc, &v->res, &rc))) {
				struct mc_page *p = find_page(s, npg, memcached_result_key_value(r),
							      memcached_result_key_length(r));

				if (!p || !check(s, p, memcached_result_value(r),
						 memcached_result_length(r)))
					v->st.bad_values++;
				else
					got[i]++;
			}
			off[i] += len[i];
			if (rc == MEMCACHED_NOTFOUND) {
				/* an answer to something else (a stray "not found"): start
				 * afresh on a new connection; what was not read is asked again
				 * of a replica, or fails */
				memcached_quit(v->mc);
			} else if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS) {
				server_failed(s, v, rc);
				off[i] = v->nkeys;
			}
			more |= off[i] < v->nkeys;
		}
	}
	for (unsigned i = 0; i < s->nsrv; i++) {
		struct mc_server *v = &s->srv[i];
		unsigned miss = v->nkeys > got[i] ? v->nkeys - got[i] : 0;

		if (write) {
			v->st.pages_written += got[i];
			v->st.write_errors += miss;
		} else {
			v->st.pages_read += got[i];
			v->st.read_errors += miss;
		}
		v->nkeys = 0;
	}
}

static void queue_key(struct mc_server *v, struct mc_page *p)
{
	v->keys[v->nkeys] = p->key;
	v->klen[v->nkeys++] = p->klen;
}

static bool check_read(struct mc_store *s, struct mc_page *p, const char *val, size_t len)
{
	if (p->done)
		return true; /* asked once, answered twice: the first answer stands */
	if (len != MC_PAGE || (s->verify && !s->verify(s->vctx, p->slot, p->pfn, val))) {
		p->bad = true;
		return false;
	}
	memcpy(p->buf, val, MC_PAGE);
	p->done = true;
	return true;
}

static int finish(struct mc_store *s, struct swap_io *ios, unsigned n, size_t npg, bool write)
{
	int first = 0;

	for (size_t k = 0; k < npg; k++) {
		struct mc_page *p = &s->pg[k];
		bool ok = write ? p->confirmed == (1u << (s->replicas + 1)) - 1 : p->done;

		if (!ok && !ios[p->io].res)
			ios[p->io].res = p->bad ? -EBADMSG : -EIO;
	}
	for (unsigned i = 0; i < n; i++) {
		if (ios[i].res && !first)
			first = ios[i].res;
		if (ios[i].res && write)
			s->st.write_errors++;
		else if (ios[i].res)
			s->st.read_errors++;
		else if (write)
			s->st.pages_written += ios[i].npages;
		else
			s->st.pages_read += ios[i].npages;
	}
	return first;
}

/* The pages of a failed read, named for the message: the first, and who was asked. */
static void explain_read(struct mc_store *s, size_t npg)
{
	for (size_t k = 0; k < npg; k++) {
		struct mc_page *p = &s->pg[k];
		unsigned first = first_server(s, p->pfn);
		char tried[256] = "";
		size_t off = 0;

		if (p->done)
			continue;
		for (unsigned r = 0; r <= s->replicas && off < sizeof(tried); r++) {
			const struct mc_server *v = &s->srv[(first + r) % s->nsrv];
			int w = snprintf(tried + off, sizeof(tried) - off, "%s%s (%s)",
					 r ? ", " : "", v->st.name,
					 !server_up(v) ? "down"
					 : p->bad      ? "not this page's data"
						       : "no such key");

			off += w > 0 ? (size_t)w : 0;
		}
		snprintf(s->why, sizeof(s->why), "no good copy of guest page 0x%" PRIx64 " on %s",
			 p->pfn * MC_PAGE, tried);
		return;
	}
}

static int mc_read_many(void *impl, struct swap_io *ios, unsigned n)
{
	struct mc_store *s = impl;
	size_t npg;
	int err;

	/* No deletes sent here: the next multi-get would wait for their answers first,
	 * a round trip more for a fault. They go before the next write (mc_write). */
	err = gather(s, ios, n, &npg);
	if (err)
		return err;
	for (unsigned r = 0; r <= s->replicas; r++) {
		bool any = false;

		for (size_t k = 0; k < npg; k++) {
			struct mc_page *p = &s->pg[k];
			struct mc_server *v;

			if (p->done)
				continue;
			v = &s->srv[(p->first + r) % s->nsrv];
			if (r)
				v->st.fallbacks++;
			if (!server_up(v)) {
				v->st.read_errors++;
				continue;
			}
			queue_key(v, p);
			any = true;
		}
		s->round = r;
		if (any)
			mget_round(s, npg, false, check_read);
	}
	err = finish(s, ios, n, npg, false);
	if (err)
		explain_read(s, npg);
	return err;
}

static int mc_read(void *impl, struct swap_io *io)
{
	return mc_read_many(impl, io, 1);
}

static bool check_write(struct mc_store *s, struct mc_page *p, const char *val, size_t len)
{
	if (len != MC_PAGE || memcmp(val, p->buf, MC_PAGE))
		return false;
	p->confirmed |= (uint16_t)(1u << s->round); /* a key answered twice counts once */
	return true;
}

static int mc_write(void *impl, struct swap_io *ios, unsigned n)
{
	struct mc_store *s = impl;
	size_t npg;
	int err;

	flush_deletes(s);
	err = gather(s, ios, n, &npg);
	if (err)
		return err;
	for (unsigned i = 0; i < s->nsrv; i++)
		memcached_behavior_set(s->srv[i].mc, MEMCACHED_BEHAVIOR_NOREPLY, 1);
	/* every copy of every page, quietly; then each copy read back, per replica rank */
	for (unsigned r = 0; r <= s->replicas; r++)
		for (size_t k = 0; k < npg; k++) {
			struct mc_page *p = &s->pg[k];
			struct mc_server *v = &s->srv[(p->first + r) % s->nsrv];
			memcached_return_t rc;

			if (!server_up(v))
				continue;
			rc = memcached_set(v->mc, p->key, p->klen, (const char *)p->buf, MC_PAGE, 0,
					   0);
			if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_BUFFERED)
				server_failed(s, v, rc);
		}
	for (unsigned i = 0; i < s->nsrv; i++)
		memcached_behavior_set(s->srv[i].mc, MEMCACHED_BEHAVIOR_NOREPLY, 0);
	for (unsigned r = 0; r <= s->replicas; r++) {
		bool any = false;

		for (size_t k = 0; k < npg; k++) {
			struct mc_page *p = &s->pg[k];
			struct mc_server *v = &s->srv[(p->first + r) % s->nsrv];

			if (!server_up(v)) {
				v->st.write_errors++;
				continue;
			}
			queue_key(v, p);
			any = true;
		}
		s->round = r;
		if (any)
			mget_round(s, npg, true, check_write);
	}
	err = finish(s, ios, n, npg, true);
	for (size_t k = 0; k < npg; k++)
		stored_set(s, s->pg[k].slot, !ios[s->pg[k].io].res);
	if (err) {
		for (size_t k = 0; k < npg; k++)
			if (s->pg[k].confirmed != (1u << (s->replicas + 1)) - 1) {
				unsigned f = first_server(s, s->pg[k].pfn);

				for (unsigned r = 0; r <= s->replicas; r++) {
					const struct mc_server *v = &s->srv[(f + r) % s->nsrv];

					if (!server_up(v)) {
						snprintf(s->why, sizeof(s->why),
							 "server %s is down", v->st.name);
						return err;
					}
				}
				snprintf(s->why, sizeof(s->why),
					 "a server of guest page 0x%" PRIx64
					 " (%s) did not keep it: full (memcached -M) or failing",
					 s->pg[k].pfn * MC_PAGE, s->srv[f].st.name);
				break;
			}
	}
	return err;
}

static void mc_get_stats(void *impl, struct swap_stats *st)
{
	*st = ((struct mc_store *)impl)->st;
}

static unsigned mc_servers(void *impl, struct swap_server_stats *out, unsigned max)
{
	struct mc_store *s = impl;

	for (unsigned i = 0; i < s->nsrv && i < max; i++) {
		out[i] = s->srv[i].st;
		out[i].down = !server_up(&s->srv[i]);
	}
	return s->nsrv;
}

static const char *mc_why(void *impl)
{
	return ((struct mc_store *)impl)->why;
}

const struct swap_backend swap_memcached_backend = {
    .name = "memcached",
    .open = mc_open,
    .write = mc_write,
    .read = mc_read,
    .read_many = mc_read_many,
    .discard = mc_discard,
    .close = mc_close,
    .get_stats = mc_get_stats,
    .servers = mc_servers,
    .inject = NULL,
    .why = mc_why,
};
