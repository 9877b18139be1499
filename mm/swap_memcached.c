/* swap_memcached.c: the memcached swap backend: runs of pages as values on a cluster, with replicas
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

#include "mm/mm.h"

/*
 * A value ("item") holds up to MC_ITEM_PAGES pages: a piece of one written run
 * (consecutive slots holding consecutive guest pages), cut where the guest page
 * number is a multiple of MC_ITEM_PAGES. One request then moves up to 32 KiB:
 * a server's cost and a round trip per request, not per page (a 32 KiB get
 * takes as long as a 4 KiB one here: bench/README.md). Its key
 * "ufvm:VMID:PFN:SLOT:SEQ" (hex; the first page's, SEQ the item's number in
 * this store) is never reused, so a delete or a late answer can only ever
 * concern the item it was for, and VMs share a cluster without meeting. Which
 * server holds an item is libmemcached's consistent hashing (ketama) of its
 * key; with replicas=N the copies go to the N servers after it, all different.
 * Servers must run with -M: a full server then refuses an item instead of
 * silently evicting one.
 *
 * Each slot holding a stored page knows its item (meta[], 8 bytes per slot in
 * use: item number, offset, length, first server): a read asks for the items
 * of the pages it wants and checks every page it takes (the pager's tag: this
 * VM's page, this content). A slot's copy is gone when the pager discards it;
 * when no slot of an item is left, the item is deleted. A freed slot may be
 * reused meanwhile: its new item has a new number, the old one is untouched.
 *
 * Connections ("lanes"): one for writes and deletes, and up to MC_READ_LANES
 * for reads, each a memcached_st per server, so that a fault's read never
 * waits behind a write batch (the pager calls reads without its swap lock:
 * swap_backend.concurrent_reads) and errors, timeouts and traffic are told
 * apart per server:
 *
 * - write: sets with answers (binary SET), buffered and pipelined, sent to all
 *   servers in turn, the answers read in order after at most MC_INFLIGHT
 *   requests to a server. An item is stored when every copy was answered
 *   "stored"; otherwise its io fails, the pager keeps the pages resident, and
 *   the copies it may have left are deleted. A full server answers ENOMEM, on
 *   which libmemcached closes the connection: the requests after it count as
 *   not stored, and the connection is opened again for the next batch.
 * - read: one multi-get per server for the items it holds first; an item
 *   missing, unreadable or with a page failing the tag check is asked of its
 *   next replica, and so on. A page no copy of which comes back fails the io,
 *   and why() names the page and every server asked.
 * - timeouts bound every connect, send and receive (timeout_ms, default 1000);
 *   a server that timed out or refused a connection is skipped for a second
 *   before it is tried again, so a dead or stopped server costs one timeout,
 *   not one per page; each failure in a row doubles the skip, up to 16 s, so
 *   a server that stays hung costs a timeout every 16 s, not every second (a
 *   read that tries it waits that timeout first), and an op it answers ends
 *   the row. Reading a server's answers takes at most 4 timeouts in all (the
 *   watchdog, below): a server that never stops sending is a failed one too.
 * - deletes are queued and sent before the next write batch.
 *
 * Answers to pipelined sets: libmemcached has no call that reads one answer
 * per request, but memcached_fetch_result reads answers in order and
 * memcached_server_response_count says how many are still owed, so the
 * difference across a call says how many it took: the last one's outcome is
 * what the call returned, the ones before it were "not found" (which it skips
 * over). The purge that would read and drop answers when many are owed is
 * disabled (watermarks), since the answers are read here.
 */

#define MC_MAX_SERVERS 16
#define MC_ITEM_SHIFT  3 /* 8 pages, 32 KiB: as fast per request as 4 KiB, 64 KiB is not */
#define MC_ITEM_PAGES  (1u << MC_ITEM_SHIFT)
#define MC_KEY_MAX     64
#define MC_DOWN_NS     1000000000ULL
#define MC_DOWN_SHIFT  4 /* the skip doubles with failures in a row up to 16 s */
#define MC_TIMEOUT_MS  1000
#define MC_MAX_DELETES 4096
#define MC_MGET_KEYS   32  /* keys per multi-get request: 1 MiB of answers at most */
#define MC_INFLIGHT    128 /* requests sent to a server before its answers are read */
#define MC_READ_LANES  4
#define MC_PAGE	       4096u

/* meta[slot]: the item of a stored page */
#define META_VALID    (1ULL << 63)
#define META_SEQ(m)   ((m) & ((1ULL << 48) - 1))
#define META_OFF(m)   ((unsigned)((m) >> 48) & 15)
#define META_FIRST(m) ((unsigned)((m) >> 52) & 15)
#define META_LEN(m)   (((unsigned)((m) >> 56) & 15) + 1)
#define META(seq, off, first, len)                                                                 \
	(META_VALID | (seq) | (uint64_t)(off) << 48 | (uint64_t)(first) << 52 |                    \
	 (uint64_t)((len)-1) << 56)

struct mc_server {
	char name[64];
	_Atomic uint64_t down_until; /* mm_now_ns() before which the server is skipped */
	_Atomic unsigned fails;	     /* failures in a row: the skip doubles with each */
	struct swap_server_stats st; /* under mc_store.lock */
};

/* One server's connection in a lane, and what an op queued for it. */
struct mc_conn {
	memcached_st *mc; /* this server alone */
	const memcached_instance_st *ins;
	int fd;			  /* its socket as found by conn_fd, or -1 */
	int dfd;		  /* a dup of it held while the connection lasts (watchdog) */
	in_port_t port;		  /* the local port conn_fd looked for last (0: none yet) */
	memcached_result_st *res; /* MC_RES_ROOM bytes mapped (conn_open) */
	bool res_ok;
	uint32_t *q; /* read: items to get; write: requests (item << 4 | copy rank) */
	unsigned n, sent, answered;
	size_t cap;
	struct swap_server_stats d; /* this op's counts, added to the server's at its end */
};

/* One page a read wants. */
struct mc_page {
	uint64_t pfn, slot;
	uint8_t *buf;
	uint32_t io, next; /* next page of the same item, or UINT32_MAX */
};

/* One item of an op. */
struct mc_item {
	uint64_t pfn0, slot0, seq;
	uint8_t len, first;
	bool del;	 /* a delete, not a set */
	bool done, bad;	 /* read: taken; a copy was not these pages' data */
	uint16_t stored; /* write: a bit per copy (rank) answered stored */
	uint16_t sent;	 /* write: a bit per copy sent */
	uint32_t io;	 /* write: its io */
	uint32_t head;	 /* read: its first page */
	const uint8_t *buf;
	char key[MC_KEY_MAX];
	uint8_t klen;
};

struct mc_lane {
	pthread_mutex_t lock;
	int wfd;      /* watched: a dup of the socket being read, or -1 (under wd_lock) */
	uint64_t wdl; /* ... and when it is shut down (watchdog) */
	struct mc_conn c[MC_MAX_SERVERS];
	struct mc_page *pg;
	size_t cappg;
	struct mc_item *it;
	size_t nit, capit;
	uint32_t *ht; /* read: items by number, open addressing; 0 empty, else index + 1 */
	size_t capht;
	struct swap_stats d;
};

struct mc_del {
	uint64_t pfn0, slot0, seq;
	uint8_t len, first;
};

struct mc_store {
	struct mc_server srv[MC_MAX_SERVERS];
	unsigned nsrv, replicas, timeout_ms;
	uint64_t spin_ns;   /* how long a read spins for its answer (swap_opts.spin_us) */
	memcached_st *ring; /* every server, ketama: picks an item's first server */
	uint64_t vm_id, max_pages;
	bool (*verify)(void *ctx, uint64_t slot, uint64_t pfn, const void *page);
	void *vctx;
	pthread_mutex_t lock; /* st, srv[].st, nlanes */
	struct swap_stats st;
	uint64_t *meta; /* per slot, MAP_NORESERVE */
	size_t meta_bytes;
	uint64_t seq; /* the last item number given (write lane) */
	struct mc_lane wl;
	struct mc_lane *rl[MC_READ_LANES];
	unsigned nlanes;
	struct mc_del *dels; /* items to delete (under the write lane) */
	size_t ndel, capdel;
	pthread_mutex_t wd_lock; /* the lanes' watches */
	pthread_cond_t wd_cond;
	pthread_t wd;
	bool wd_started, wd_stop, wd_idle;
};

/* The last failure's words, for swap_why() right after the failed call, in the same thread. */
static _Thread_local char mc_why_buf[512];

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
		snprintf(s->srv[s->nsrv].name, sizeof(s->srv[s->nsrv].name), "%s:%lu", tok, port);
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

/*
 * libmemcached (1.1) copies the key of a get's answer into its result's
 * 251-byte key field with the length the server sent, up to 64 KiB, unchecked:
 * a broken or hostile server could write past the result into whatever follows
 * it. So each result has 64 KiB of its own behind it, what lands there is never
 * read, and a key that long is not one of ours, so its answer is refused like
 * any that matches nothing asked (mget_take). The result's own options come
 * right after the key field and are overrun first: a result that then looks
 * allocated by libmemcached would be freed by it (memcached_fetch_result frees
 * such a result when the answers end). So libmemcached's allocator never frees
 * a connection's result (mc_free), and the options are set back after every
 * fetch (res_repair).
 */
#define MC_RES_ROOM (sizeof(memcached_result_st) + UINT16_MAX + 1)

struct mc_store;
static void conn_drop(struct mc_store *s, struct mc_lane *l, struct mc_conn *c);
static void *watchdog(void *arg);

static void *mc_malloc(const memcached_st *m, const size_t n, void *ctx)
{
	(void)m, (void)ctx;
	return malloc(n);
}

static void mc_free(const memcached_st *m, void *mem, void *ctx)
{
	(void)m;
	if (mem != ((const struct mc_conn *)ctx)->res)
		free(mem);
}

static void *mc_realloc(const memcached_st *m, void *mem, const size_t n, void *ctx)
{
	(void)m, (void)ctx;
	return realloc(mem, n);
}

static void *mc_calloc(const memcached_st *m, size_t k, const size_t n, void *ctx)
{
	(void)m, (void)ctx;
	return calloc(k, n);
}

static void res_repair(struct mc_conn *c)
{
	c->res->options.is_allocated = false;
	c->res->options.is_initialized = true;
}

/* A connection to one server (connected at first use). */
static int conn_open(struct mc_store *s, struct mc_conn *c, const char *name)
{
	c->fd = c->dfd = -1;
	c->mc = memcached_create(NULL);
	if (!c->mc || add_server(c->mc, name) < 0 ||
	    memcached_set_memory_allocators(c->mc, mc_malloc, mc_free, mc_realloc, mc_calloc, c) !=
		MEMCACHED_SUCCESS)
		return -ENOMEM;
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, s->timeout_ms);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, s->timeout_ms);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT,
			       (uint64_t)s->timeout_ms * 1000);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT,
			       (uint64_t)s->timeout_ms * 1000);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1);
	c->ins = memcached_server_instance_by_position(c->mc, 0);
	/* mapped, not allocated: only the page the result is on counts as resident */
	c->res =
	    mmap(NULL, MC_RES_ROOM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->res == MAP_FAILED)
		c->res = NULL;
	c->res_ok = c->res && memcached_result_create(c->mc, c->res) != NULL;
	return c->ins && c->res_ok ? 0 : -ENOMEM;
}

/* The write lane's: requests go out as libmemcached's buffer fills and at
 * memcached_flush_buffers, with answers read here, never purged behind our back.
 * Setting it drops the connection: it is opened again at the next request. */
static void conn_buffer(struct mc_conn *c)
{
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_IO_MSG_WATERMARK, UINT32_MAX);
	memcached_behavior_set(c->mc, MEMCACHED_BEHAVIOR_IO_BYTES_WATERMARK, UINT32_MAX);
}

static void lane_free(struct mc_store *s, struct mc_lane *l)
{
	for (unsigned i = 0; i < s->nsrv; i++) {
		if (l->c[i].res_ok) {
			res_repair(&l->c[i]);
			memcached_result_free(l->c[i].res);
		}
		if (l->c[i].mc) { /* memcached_free would quit, reading to the end */
			conn_drop(s, l, &l->c[i]);
			if (l->c[i].dfd >= 0)
				close(l->c[i].dfd);
		}
		if (l->c[i].res)
			munmap(l->c[i].res, MC_RES_ROOM);
		memcached_free(l->c[i].mc);
		free(l->c[i].q);
	}
	free(l->pg);
	free(l->it);
	free(l->ht);
	pthread_mutex_destroy(&l->lock);
}

static int lane_init(struct mc_store *s, struct mc_lane *l)
{
	pthread_mutex_init(&l->lock, NULL);
	l->wfd = -1;
	for (unsigned i = 0; i < s->nsrv; i++)
		if (conn_open(s, &l->c[i], s->srv[i].name) < 0)
			return -ENOMEM;
	return 0;
}

/*
 * Whether a server evicts, from its "stats settings", asked in the text
 * protocol on a connection of its own, the whole exchange within timeout_ms.
 * Not libmemcached's memcached_stat_execute: in the binary protocol (ours) it
 * copies each STAT key into a fixed buffer with the length the server sent,
 * so a broken or hostile server could write past it at open. Here every line
 * is read into a bounded buffer. 1: it evicts, 0: it does not (-M), <0: it
 * could not be asked, with why in msg.
 */
static int server_evicts(const char *host, in_port_t port, unsigned timeout_ms, char *msg,
			 size_t msglen)
{
	static const char ask[] = "stats settings\r\n";
	struct addrinfo hint = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	uint64_t deadline = mm_now_ns() + (uint64_t)timeout_ms * 1000000;
	char buf[16384], svc[8];
	size_t have = 0, sent = 0;
	int fd = -1, evicts = -1, err, gai;

	snprintf(svc, sizeof(svc), "%u", (unsigned)port);
	gai = getaddrinfo(host, svc, &hint, &ai);
	if (gai) {
		snprintf(msg, msglen, "%s", gai_strerror(gai));
		return -EHOSTUNREACH;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	err = fd < 0 ? -errno : 0;
	if (!err && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
		err = -errno;
	freeaddrinfo(ai);
	while (!err && evicts < 0) {
		uint64_t now = mm_now_ns();
		struct pollfd pf = {.fd = fd, .events = sent < sizeof(ask) - 1 ? POLLOUT : POLLIN};
		int so = 0, pr;
		socklen_t sl = sizeof(so);
		ssize_t n;
		char *nl;

		if (now >= deadline) {
			err = -ETIMEDOUT;
			break;
		}
		pr = poll(&pf, 1, (int)((deadline - now + 999999) / 1000000));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			err = pr < 0 ? -errno : -ETIMEDOUT;
			break;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so) {
			err = -so; /* refused, unreachable */
			break;
		}
		if (sent < sizeof(ask) - 1) {
			n = send(fd, ask + sent, sizeof(ask) - 1 - sent, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				err = -errno;
			sent += n > 0 ? (size_t)n : 0;
			continue;
		}
		n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			err = n ? -errno : -ECONNRESET;
			break;
		}
		have += n > 0 ? (size_t)n : 0;
		buf[have] = 0;
		/* whole lines: "STAT evictions on|off", the others skipped, up to END */
		while (evicts < 0 && (nl = strstr(buf, "\r\n"))) {
			size_t len = (size_t)(nl - buf) + 2;

			*nl = 0;
			if (!strcmp(buf, "STAT evictions on"))
				evicts = 1;
			else if (!strcmp(buf, "STAT evictions off"))
				evicts = 0;
			else if (!strcmp(buf, "END") || strncmp(buf, "STAT ", 5))
				err = -EPROTO; /* the end, or an error, without the setting */
			memmove(buf, buf + len, have - len + 1);
			have -= len;
			if (err)
				break;
		}
		if (!err && evicts < 0 && have == sizeof(buf) - 1)
			err = -EPROTO; /* a line longer than any of memcached's */
	}
	if (fd >= 0)
		close(fd);
	if (err == -EPROTO)
		snprintf(msg, msglen, "its answer to \"stats settings\" has no evictions setting");
	else if (err)
		snprintf(msg, msglen, "%s", strerror(-err));
	return err ? err : evicts;
}

static int check_server(const struct mc_server *v, const struct mc_store *s,
			const struct mc_conn *c)
{
	char why[128];
	int evicts = server_evicts(memcached_server_name(c->ins), memcached_server_port(c->ins),
				   s->timeout_ms, why, sizeof(why));

	if (evicts < 0) {
		snprintf(swap_open_why(), SWAP_WHY_LEN, "server %s: cannot reach it: %s", v->name,
			 why);
		return -EHOSTUNREACH;
	}
	if (evicts) {
		snprintf(swap_open_why(), SWAP_WHY_LEN,
			 "server %s evicts items when full: start it with -M, so that a full "
			 "server refuses a page instead of dropping one",
			 v->name);
		return -EINVAL;
	}
	return 0;
}

static void mc_close(void *impl);

static int mc_open(void **out, const struct swap_opts *o, uint64_t max_pages)
{
	struct mc_store *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->wd_lock, NULL);
	pthread_cond_init(&s->wd_cond, NULL);
	s->max_pages = max_pages;
	s->verify = o->verify;
	s->vctx = o->verify_ctx;
	s->vm_id = o->vm_id;
	s->spin_ns = (uint64_t)o->spin_us * 1000;
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
	s->meta_bytes = max_pages * sizeof(*s->meta);
	s->meta = mmap(NULL, s->meta_bytes ? s->meta_bytes : 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->meta == MAP_FAILED)
		s->meta = NULL;
	if (!s->ring || !s->meta)
		goto err_free;
	memcached_behavior_set(s->ring, MEMCACHED_BEHAVIOR_DISTRIBUTION,
			       MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
	for (unsigned i = 0; i < s->nsrv; i++)
		if (add_server(s->ring, s->srv[i].name) < 0)
			goto err_free;
	err = lane_init(s, &s->wl);
	if (err)
		goto err_free;
	for (unsigned i = 0; i < s->nsrv; i++) {
		err = check_server(&s->srv[i], s, &s->wl.c[i]);
		if (err)
			goto err_free;
		conn_buffer(&s->wl.c[i]);
	}
	err = -pthread_create(&s->wd, NULL, watchdog, s);
	if (err)
		goto err_free;
	s->wd_started = true;
	*out = s;
	return 0;

err_free:
	mc_close(s);
	return err;
}

static void flush_deletes(struct mc_store *s);

static void mc_close(void *impl)
{
	struct mc_store *s = impl;

	if (!s)
		return;
	if (s->wl.c[0].mc) {
		pthread_mutex_lock(&s->wl.lock);
		flush_deletes(s); /* watched like any write */
		pthread_mutex_unlock(&s->wl.lock);
	}
	if (s->wd_started) {
		pthread_mutex_lock(&s->wd_lock);
		s->wd_stop = true;
		pthread_cond_signal(&s->wd_cond);
		pthread_mutex_unlock(&s->wd_lock);
		pthread_join(s->wd, NULL);
	}
	lane_free(s, &s->wl);
	for (unsigned i = 0; i < s->nlanes; i++) {
		lane_free(s, s->rl[i]);
		free(s->rl[i]);
	}
	if (s->meta)
		munmap(s->meta, s->meta_bytes ? s->meta_bytes : 1);
	memcached_free(s->ring);
	free(s->dels);
	pthread_cond_destroy(&s->wd_cond);
	pthread_mutex_destroy(&s->wd_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static bool server_up(const struct mc_server *v)
{
	return mm_now_ns() >= v->down_until;
}

static int conn_fd(struct mc_store *s, struct mc_lane *l, struct mc_conn *c);

/*
 * Drop a connection; it is opened again at its next request. Its socket is shut
 * down first: on the write lane (buffered) memcached_quit reads until the server
 * closes, which a server that keeps sending never does.
 */
static void conn_drop(struct mc_store *s, struct mc_lane *l, struct mc_conn *c)
{
	int fd = conn_fd(s, l, c);

	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
	memcached_quit(c->mc);
}

/*
 * The watchdog. timeout_ms bounds each of libmemcached's waits, not an op: a
 * server that keeps sending well-formed frames it does not count as answers
 * (errors to quiet requests never made, say) keeps it reading for ever inside
 * one call. So a lane reading answers is watched: past MC_OP_TIMEOUTS x
 * timeout_ms its socket is shut down, libmemcached sees the connection end, and
 * the op fails as if the server had died. What it shuts down is the
 * connection's dup of its socket (conn_fd), closed only once it is no longer
 * watched: never a descriptor since reused by someone else.
 */
#define MC_OP_TIMEOUTS 4
#define MC_WATCH_MS    100 /* how often the watchdog looks, while there are ops */
#define MC_WATCH_IDLE  10  /* looks without a watch before it sleeps until one starts */

static void watch_begin(struct mc_store *s, struct mc_lane *l, struct mc_conn *c)
{
	conn_fd(s, l, c);
	pthread_mutex_lock(&s->wd_lock);
	l->wfd = c->dfd;
	l->wdl = mm_now_ns() + (uint64_t)MC_OP_TIMEOUTS * s->timeout_ms * 1000000;
	if (s->wd_idle) /* only then: ops in a row cost no wake-up */
		pthread_cond_signal(&s->wd_cond);
	pthread_mutex_unlock(&s->wd_lock);
}

static void watch_end(struct mc_store *s, struct mc_lane *l)
{
	pthread_mutex_lock(&s->wd_lock);
	l->wfd = -1;
	pthread_mutex_unlock(&s->wd_lock);
}

static void *watchdog(void *arg)
{
	struct mc_store *s = arg;
	struct mc_lane *ls[1 + MC_READ_LANES];
	unsigned quiet = 0;

	for (;;) {
		struct timespec ts;
		unsigned n = 0;
		bool any = false;
		uint64_t now;

		pthread_mutex_lock(&s->lock); /* nlanes */
		ls[n++] = &s->wl;
		for (unsigned i = 0; i < s->nlanes; i++)
			ls[n++] = s->rl[i];
		pthread_mutex_unlock(&s->lock);
		pthread_mutex_lock(&s->wd_lock);
		now = mm_now_ns();
		for (unsigned i = 0; i < n; i++) {
			any |= ls[i]->wfd >= 0;
			if (ls[i]->wfd >= 0 && now >= ls[i]->wdl) {
				shutdown(ls[i]->wfd, SHUT_RDWR);
				ls[i]->wdl = UINT64_MAX; /* once */
			}
		}
		quiet = any ? 0 : quiet + 1;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += MC_WATCH_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		s->wd_idle = quiet >= MC_WATCH_IDLE; /* an idle VM: no wake-ups 10 times a second */
		if (!s->wd_stop && s->wd_idle)
			pthread_cond_wait(&s->wd_cond, &s->wd_lock);
		else if (!s->wd_stop)
			pthread_cond_timedwait(&s->wd_cond, &s->wd_lock, &ts);
		s->wd_idle = false;
		if (s->wd_stop) {
			pthread_mutex_unlock(&s->wd_lock);
			return NULL;
		}
		pthread_mutex_unlock(&s->wd_lock);
	}
}

/* A connection-level failure (timeout, refused, reset): skip the server a while. What the
 * op says of the failure (why) comes from its outcome: which server is down, which page. */
static void server_failed(struct mc_store *s, struct mc_lane *l, unsigned i)
{
	struct mc_conn *c = &l->c[i];
	uint64_t now = mm_now_ns();
	unsigned n;

	conn_drop(s, l, c);
	if (now < s->srv[i].down_until)
		return; /* an op that started before the skip: the same failure, not one more */
	n = atomic_fetch_add(&s->srv[i].fails, 1);
	s->srv[i].down_until = now + (MC_DOWN_NS << (n < MC_DOWN_SHIFT ? n : MC_DOWN_SHIFT));
}

/* This op's counts into the store's (under its lock, since lanes run at once). */
static void lane_account(struct mc_store *s, struct mc_lane *l)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->nsrv; i++) {
		struct swap_server_stats *v = &s->srv[i].st, *d = &l->c[i].d;

		if (d->pages_written || d->pages_read)
			s->srv[i].fails = 0; /* it answered: the next failure skips it a second */
		v->pages_written += d->pages_written;
		v->pages_read += d->pages_read;
		v->write_errors += d->write_errors;
		v->read_errors += d->read_errors;
		v->bad_values += d->bad_values;
		v->fallbacks += d->fallbacks;
		*d = (struct swap_server_stats){0};
	}
	s->st.pages_written += l->d.pages_written;
	s->st.pages_read += l->d.pages_read;
	s->st.write_errors += l->d.write_errors;
	s->st.read_errors += l->d.read_errors;
	l->d = (struct swap_stats){0};
	pthread_mutex_unlock(&s->lock);
}

static int make_key(const struct mc_store *s, struct mc_item *it)
{
	int n = snprintf(it->key, MC_KEY_MAX, "ufvm:%" PRIx64 ":%" PRIx64 ":%" PRIx64 ":%" PRIx64,
			 s->vm_id, it->pfn0, it->slot0, it->seq);

	it->klen = (uint8_t)n;
	return n;
}

static int grow(void **p, size_t *cap, size_t want, size_t size)
{
	void *q;

	if (want <= *cap)
		return 0;
	want = want < 64 ? 64 : want * 2;
	q = realloc(*p, want * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = want;
	return 0;
}

static int queue_grow(struct mc_store *s, struct mc_lane *l, size_t n)
{
	for (unsigned i = 0; i < s->nsrv; i++) {
		struct mc_conn *c = &l->c[i];

		c->n = c->sent = c->answered = 0;
		if (grow((void **)&c->q, &c->cap, n, sizeof(*c->q)) < 0)
			return -ENOMEM;
	}
	return 0;
}

static uint64_t meta_get(const struct mc_store *s, uint64_t slot)
{
	return slot < s->max_pages ? __atomic_load_n(&s->meta[slot], __ATOMIC_RELAXED) : 0;
}

static void meta_set(struct mc_store *s, uint64_t slot, uint64_t m)
{
	if (slot < s->max_pages)
		__atomic_store_n(&s->meta[slot], m, __ATOMIC_RELAXED);
}

/* ---- writes: pipelined sets (and deletes) with their answers ---- */

/* Request k of server i got its answer: stored (ok) or not. */
static void answered(struct mc_lane *l, unsigned i, uint32_t req, bool ok)
{
	struct mc_item *it = &l->it[req >> 4];

	if (it->del)
		return; /* gone or not there: either way not ours any more */
	if (ok) {
		it->stored |= (uint16_t)(1u << (req & 15));
		l->c[i].d.pages_written += it->len;
	} else {
		l->c[i].d.write_errors += it->len;
	}
}

/* Every request of server i not answered yet counts as not stored. */
static void fail_rest(struct mc_lane *l, unsigned i)
{
	struct mc_conn *c = &l->c[i];

	for (; c->answered < c->n; c->answered++)
		answered(l, i, c->q[c->answered], false);
	c->sent = c->n;
}

/* Take server i's answers up to request upto (read_answers, watched). */
static void take_answers(struct mc_store *s, struct mc_lane *l, unsigned i, unsigned upto)
{
	struct mc_conn *c = &l->c[i];

	while (c->answered < upto) {
		uint32_t before = memcached_server_response_count(c->ins), after, took;
		memcached_return_t rc = MEMCACHED_SUCCESS;
		memcached_result_st *r;

		if (!before) { /* the connection was closed under the answers owed */
			fail_rest(l, i);
			return;
		}
		r = memcached_fetch_result(c->mc, c->res, &rc);
		res_repair(c);
		after = memcached_server_response_count(c->ins);
		took = before >= after ? before - after : 0;
		if (!took || took > c->sent - c->answered) {
			/* answers that are not ours to count: start afresh */
			conn_drop(s, l, c);
			fail_rest(l, i);
			return;
		}
		for (uint32_t k = 0; k < took; k++)
			answered(l, i, c->q[c->answered + k], r && k == took - 1);
		c->answered += took;
		if (!r && (rc == MEMCACHED_TIMEOUT || rc == MEMCACHED_CONNECTION_FAILURE)) {
			server_failed(s, l, i);
			fail_rest(l, i);
			return;
		}
	}
}

/* Read server i's answers to the requests sent up to request upto (see the top). */
static void read_answers(struct mc_store *s, struct mc_lane *l, unsigned i, unsigned upto)
{
	struct mc_conn *c = &l->c[i];

	if (c->answered < upto && memcached_flush_buffers(c->mc) != MEMCACHED_SUCCESS) {
		server_failed(s, l, i);
		fail_rest(l, i);
		return;
	}
	watch_begin(s, l, c);
	take_answers(s, l, i, upto);
	watch_end(s, l);
}

static void send_request(struct mc_store *s, struct mc_lane *l, unsigned i)
{
	struct mc_conn *c = &l->c[i];
	uint32_t req = c->q[c->sent];
	struct mc_item *it = &l->it[req >> 4];
	memcached_return_t rc;

	if (it->del) {
		rc = memcached_delete(c->mc, it->key, it->klen, 0);
	} else {
		it->sent |= (uint16_t)(1u << (req & 15));
		rc = memcached_set(c->mc, it->key, it->klen, (const char *)it->buf,
				   (size_t)it->len * MC_PAGE, 0, 0);
	}
	if (rc != MEMCACHED_BUFFERED && rc != MEMCACHED_SUCCESS) {
		/* not even sent: what was sent before it is lost with the connection */
		server_failed(s, l, i);
		fail_rest(l, i);
		return;
	}
	c->sent++;
	if (c->sent - c->answered >= MC_INFLIGHT)
		read_answers(s, l, i, c->sent - MC_INFLIGHT / 2);
}

/*
 * Send every server's queue, a request to each in turn, then read every answer.
 * In turn, so that while one server's socket is full the others are being fed
 * too. (A thread per server, each blocked on its own socket, did worse on these
 * two-CPU hosts: 201 against 313 MiB/s for whole-VM swap-out, medians of 6.)
 */
static void run_requests(struct mc_store *s, struct mc_lane *l)
{
	for (bool more = true; more;) {
		more = false;
		for (unsigned i = 0; i < s->nsrv; i++) {
			if (l->c[i].sent < l->c[i].n)
				send_request(s, l, i);
			more |= l->c[i].sent < l->c[i].n;
		}
	}
	for (unsigned i = 0; i < s->nsrv; i++)
		read_answers(s, l, i, l->c[i].sent);
}

static int add_item(struct mc_lane *l, struct mc_item **out)
{
	if (grow((void **)&l->it, &l->capit, l->nit + 1, sizeof(*l->it)) < 0)
		return -ENOMEM;
	*out = &l->it[l->nit++];
	**out = (struct mc_item){.head = UINT32_MAX};
	return 0;
}

/* Queue the copies of item k on their servers that are up. */
static void queue_copies(struct mc_store *s, struct mc_lane *l, uint32_t k)
{
	struct mc_item *it = &l->it[k];

	for (unsigned r = 0; r <= s->replicas; r++) {
		unsigned i = (it->first + r) % s->nsrv;
		struct mc_conn *c = &l->c[i];

		if (!server_up(&s->srv[i])) {
			if (!it->del)
				c->d.write_errors += it->len;
			continue;
		}
		c->q[c->n++] = k << 4 | r;
	}
}

/* The queued deletes as items of this op (they are sent first). */
static int take_deletes(struct mc_store *s, struct mc_lane *l)
{
	for (size_t k = 0; k < s->ndel; k++) {
		struct mc_item *it;

		if (add_item(l, &it) < 0)
			return -ENOMEM;
		*it = (struct mc_item){.pfn0 = s->dels[k].pfn0,
				       .slot0 = s->dels[k].slot0,
				       .seq = s->dels[k].seq,
				       .len = s->dels[k].len,
				       .first = s->dels[k].first,
				       .del = true};
		make_key(s, it);
	}
	s->ndel = 0;
	return 0;
}

static void queue_delete(struct mc_store *s, const struct mc_item *it)
{
	if (grow((void **)&s->dels, &s->capdel, s->ndel + 1, sizeof(*s->dels)) < 0)
		return; /* left on the servers: only memory, never a wrong page */
	s->dels[s->ndel++] = (struct mc_del){.pfn0 = it->pfn0,
					     .slot0 = it->slot0,
					     .seq = it->seq,
					     .len = it->len,
					     .first = it->first};
}

/* Send the queued deletes now (write lane held). */
static void flush_deletes(struct mc_store *s)
{
	struct mc_lane *l = &s->wl;

	if (!s->ndel)
		return;
	l->nit = 0;
	if (take_deletes(s, l) < 0 || queue_grow(s, l, l->nit * (s->replicas + 1)) < 0)
		return;
	for (uint32_t k = 0; k < l->nit; k++)
		queue_copies(s, l, k);
	run_requests(s, l);
}

/* The ios' pages as items: each run cut where the guest page is a multiple of
 * MC_ITEM_PAGES. -EINVAL in an io's res for a malformed io. */
static int gather_writes(struct mc_store *s, struct mc_lane *l, struct swap_io *ios, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		ios[i].res = 0;
		if (!ios[i].npages || !ios[i].buf || ios[i].slot + ios[i].npages > s->max_pages) {
			ios[i].res = -EINVAL;
			continue;
		}
		for (uint32_t j = 0; j < ios[i].npages;) {
			uint64_t pfn = ios[i].pfn + j;
			uint32_t len = MC_ITEM_PAGES - (uint32_t)(pfn & (MC_ITEM_PAGES - 1));
			struct mc_item *it;

			if (len > ios[i].npages - j)
				len = ios[i].npages - j;
			if (add_item(l, &it) < 0)
				return -ENOMEM;
			it->pfn0 = pfn;
			it->slot0 = ios[i].slot + j;
			it->seq = ++s->seq & ((1ULL << 48) - 1);
			it->len = (uint8_t)len;
			it->io = i;
			it->buf = (const uint8_t *)ios[i].buf + (size_t)j * MC_PAGE;
			make_key(s, it);
			it->first =
			    s->nsrv == 1
				? 0
				: (uint8_t)(memcached_generate_hash(s->ring, it->key, it->klen) %
					    s->nsrv);
			j += len;
		}
	}
	return 0;
}

/* Why the write failed, for the pager's message (once). */
static void explain_write(struct mc_store *s, struct mc_lane *l)
{
	uint16_t all = (uint16_t)((1u << (s->replicas + 1)) - 1);

	for (size_t k = 0; k < l->nit; k++) {
		const struct mc_item *it = &l->it[k];

		if (it->del || it->stored == all)
			continue;
		for (unsigned r = 0; r <= s->replicas; r++) {
			const struct mc_server *v = &s->srv[(it->first + r) % s->nsrv];

			if (!server_up(v)) {
				snprintf(mc_why_buf, sizeof(mc_why_buf), "server %s is down",
					 v->name);
				return;
			}
		}
		snprintf(mc_why_buf, sizeof(mc_why_buf),
			 "a server of guest page 0x%" PRIx64
			 " (%s) did not keep it: full (memcached -M) or failing",
			 it->pfn0 * MC_PAGE, s->srv[it->first].name);
		return;
	}
}

static int mc_write(void *impl, struct swap_io *ios, unsigned n)
{
	struct mc_store *s = impl;
	struct mc_lane *l = &s->wl;
	uint16_t all = (uint16_t)((1u << (s->replicas + 1)) - 1);
	int first = 0;

	pthread_mutex_lock(&l->lock);
	l->nit = 0;
	if (take_deletes(s, l) < 0 || gather_writes(s, l, ios, n) < 0 ||
	    queue_grow(s, l, l->nit * (s->replicas + 1)) < 0) {
		for (unsigned i = 0; i < n; i++)
			ios[i].res = -ENOMEM; /* nothing was sent: every page stays resident */
		pthread_mutex_unlock(&l->lock);
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < l->nit; k++)
		queue_copies(s, l, k);
	run_requests(s, l);
	for (size_t k = 0; k < l->nit; k++)
		if (!l->it[k].del && l->it[k].stored != all && !ios[l->it[k].io].res)
			ios[l->it[k].io].res = -EIO;
	for (size_t k = 0; k < l->nit; k++) {
		const struct mc_item *it = &l->it[k];

		if (it->del)
			continue;
		if (!ios[it->io].res) {
			for (unsigned j = 0; j < it->len; j++)
				meta_set(s, it->slot0 + j, META(it->seq, j, it->first, it->len));
		} else if (it->sent) {
			queue_delete(s,
				     it); /* copies that may have stayed; the pages stay resident */
		}
	}
	for (unsigned i = 0; i < n; i++) {
		if (ios[i].res && !first)
			first = ios[i].res;
		if (ios[i].res)
			l->d.write_errors++;
		else
			l->d.pages_written += ios[i].npages;
	}
	if (first)
		explain_write(s, l);
	lane_account(s, l);
	pthread_mutex_unlock(&l->lock);
	return first;
}

static void mc_discard(void *impl, uint64_t slot, uint64_t pfn)
{
	struct mc_store *s = impl;
	uint64_t m = meta_get(s, slot), seq = META_SEQ(m);
	unsigned off = META_OFF(m), len = META_LEN(m);
	struct mc_item it;

	if (!(m & META_VALID) || off >= len || slot < off || pfn < off)
		return; /* never stored whole (a failed write): nothing known to delete */
	meta_set(s, slot, 0);
	for (unsigned j = 0; j < len; j++) {
		uint64_t o = meta_get(s, slot - off + j);

		if ((o & META_VALID) && META_SEQ(o) == seq)
			return; /* another page of the item still lives there */
	}
	it = (struct mc_item){.pfn0 = pfn - off,
			      .slot0 = slot - off,
			      .seq = seq,
			      .len = (uint8_t)len,
			      .first = (uint8_t)(META_FIRST(m) % s->nsrv)};
	pthread_mutex_lock(&s->wl.lock);
	queue_delete(s, &it);
	if (s->ndel >= MC_MAX_DELETES)
		flush_deletes(s);
	pthread_mutex_unlock(&s->wl.lock);
}

/* ---- reads: multi-gets of the pages' items, replica after replica ---- */

static struct mc_lane *take_read_lane(struct mc_store *s)
{
	struct mc_lane *l = NULL;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->nlanes && !l; i++)
		if (pthread_mutex_trylock(&s->rl[i]->lock) == 0)
			l = s->rl[i];
	if (!l && s->nlanes < MC_READ_LANES) {
		l = calloc(1, sizeof(*l));
		if (l && lane_init(s, l) < 0) {
			lane_free(s, l);
			free(l);
			l = NULL;
		}
		if (l) {
			s->rl[s->nlanes++] = l;
			pthread_mutex_lock(&l->lock);
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (!l && s->nlanes) { /* every lane busy (or none could be made): wait for one */
		l = s->rl[0];
		pthread_mutex_lock(&l->lock);
	}
	return l;
}

static uint32_t *ht_slot(struct mc_lane *l, uint64_t seq)
{
	size_t mask = l->capht - 1, h = (size_t)((seq * 0x9E3779B97F4A7C15ULL) >> 20) & mask;

	while (l->ht[h] && l->it[l->ht[h] - 1].seq != seq)
		h = (h + 1) & mask;
	return &l->ht[h];
}

/* The pages of the ios, each linked to its item (one per item number). A page with no
 * stored copy fails its io with -EIO here. */
static int gather_reads(struct mc_store *s, struct mc_lane *l, struct swap_io *ios, unsigned n,
			size_t *npg)
{
	size_t total = 0, k = 0, want;

	for (unsigned i = 0; i < n; i++) {
		ios[i].res = 0;
		if (!ios[i].npages || !ios[i].buf || ios[i].slot + ios[i].npages > s->max_pages)
			ios[i].res = -EINVAL;
		else
			total += ios[i].npages;
	}
	for (want = 64; want < 2 * total; want *= 2)
		;
	if (grow((void **)&l->pg, &l->cappg, total, sizeof(*l->pg)) < 0 ||
	    grow((void **)&l->it, &l->capit, total, sizeof(*l->it)) < 0)
		return -ENOMEM;
	if (want > l->capht) {
		free(l->ht);
		l->ht = malloc(want * sizeof(*l->ht));
		l->capht = l->ht ? want : 0;
		if (!l->ht)
			return -ENOMEM;
	}
	memset(l->ht, 0, l->capht * sizeof(*l->ht));
	l->nit = 0;
	for (unsigned i = 0; i < n; i++)
		for (uint32_t j = 0; !ios[i].res && j < ios[i].npages; j++) {
			struct mc_page *p = &l->pg[k];
			uint64_t m;
			unsigned off;
			uint32_t *h;
			struct mc_item *it;

			*p = (struct mc_page){.pfn = ios[i].pfn + j,
					      .slot = ios[i].slot + j,
					      .buf = (uint8_t *)ios[i].buf + (size_t)j * MC_PAGE,
					      .io = i};
			m = meta_get(s, p->slot);
			off = META_OFF(m);
			if (!(m & META_VALID) || off >= META_LEN(m) || p->pfn < off) {
				ios[i].res = -EIO; /* no copy was ever confirmed there */
				snprintf(mc_why_buf, sizeof(mc_why_buf),
					 "no copy of guest page 0x%" PRIx64 " was stored",
					 p->pfn * MC_PAGE);
				break;
			}
			h = ht_slot(l, META_SEQ(m));
			if (!*h) {
				it = &l->it[l->nit++];
				*it = (struct mc_item){.pfn0 = p->pfn - off,
						       .slot0 = p->slot - off,
						       .seq = META_SEQ(m),
						       .len = (uint8_t)META_LEN(m),
						       .first = (uint8_t)(META_FIRST(m) % s->nsrv),
						       .head = UINT32_MAX};
				make_key(s, it);
				*h = (uint32_t)l->nit;
			}
			it = &l->it[*h - 1];
			if (it->pfn0 + off != p->pfn || it->slot0 + off != p->slot) {
				ios[i].res = -EIO; /* cannot be: the table is damaged */
				break;
			}
			p->next = it->head;
			it->head = (uint32_t)k++;
		}
	*npg = k;
	return 0;
}

/* A value came back for item it: take it if every page it is asked for checks out. */
static bool take_value(struct mc_store *s, struct mc_lane *l, struct mc_item *it, const char *val,
		       size_t len)
{
	if (it->done)
		return true; /* asked once, answered twice: the first answer stands */
	if (len != (size_t)it->len * MC_PAGE) {
		it->bad = true;
		return false;
	}
	for (uint32_t k = it->head; k != UINT32_MAX; k = l->pg[k].next) {
		const struct mc_page *p = &l->pg[k];

		if (s->verify &&
		    !s->verify(s->vctx, p->slot, p->pfn, val + (p->pfn - it->pfn0) * MC_PAGE)) {
			it->bad = true;
			return false;
		}
	}
	for (uint32_t k = it->head; k != UINT32_MAX; k = l->pg[k].next)
		memcpy(l->pg[k].buf, val + (l->pg[k].pfn - it->pfn0) * MC_PAGE, MC_PAGE);
	it->done = true;
	return true;
}

/*
 * One read round: every server with items gets a multi-get for the next
 * MC_MGET_KEYS of them, then every answer is read, until all are asked.
 * Chunks, because a server answers a multi-get as it reads it: asked for
 * thousands of values at once it fills the socket with answers while the rest
 * of the request is still being sent, and libmemcached then crawls through
 * poll timeouts. Answers come in the order asked (misses left out): each is
 * matched with the next asked key equal to it.
 */
/* Ask server i for its next MC_MGET_KEYS items; how many were asked (0: none left, or
 * the server failed and the rest count as not read). */
static unsigned mget_send(struct mc_store *s, struct mc_lane *l, unsigned i)
{
	struct mc_conn *c = &l->c[i];
	const char *keys[MC_MGET_KEYS];
	size_t klen[MC_MGET_KEYS];
	unsigned len = c->n - c->sent < MC_MGET_KEYS ? c->n - c->sent : MC_MGET_KEYS;

	if (!len)
		return 0;
	for (unsigned k = 0; k < len; k++) {
		keys[k] = l->it[c->q[c->sent + k]].key;
		klen[k] = l->it[c->q[c->sent + k]].klen;
	}
	if (memcached_mget(c->mc, keys, klen, len) != MEMCACHED_SUCCESS) {
		server_failed(s, l, i);
		c->sent = c->n;
		return 0;
	}
	return len;
}

/*
 * Waiting for an answer by spinning: a reader asleep in poll() is woken by the
 * server's reply, and on these hosts that wake-up is most of a round trip (a
 * 32 KiB get from memcached on loopback: 80 us asleep, 35 us spinning;
 * bench/README.md). A read therefore peeks at its socket for up to spin_ns
 * (the fault threads' own spin: 200 us with a core to spare, else none)
 * before it lets libmemcached sleep. libmemcached does not give out its
 * socket, but memcached_server_srcport() names its local port, and the socket
 * with that local port and the server's port is found among ours once per
 * connection (a new connection has a new local port). A wrong guess costs
 * only the spin: a peek takes nothing.
 */
static in_port_t sock_port(int fd, bool peer)
{
	struct sockaddr_storage a;
	socklen_t n = sizeof(a);

	if ((peer ? getpeername(fd, (struct sockaddr *)&a, &n)
		  : getsockname(fd, (struct sockaddr *)&a, &n)) < 0)
		return 0;
	if (a.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&a)->sin_port);
	if (a.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
	return 0;
}

static int conn_fd(struct mc_store *s, struct mc_lane *l, struct mc_conn *c)
{
	in_port_t port = memcached_server_srcport(c->ins), srv = memcached_server_port(c->ins);
	DIR *d;
	struct dirent *e;

	if (port == (in_port_t)-1)
		port = 0; /* not connected (yet) */
	if (c->port == port)
		return c->fd; /* the socket found for this connection, or none to be found */
	if (c->dfd >= 0) {    /* the last connection's: not watched any more, then closed */
		pthread_mutex_lock(&s->wd_lock);
		if (l->wfd == c->dfd)
			l->wfd = -1;
		pthread_mutex_unlock(&s->wd_lock);
		close(c->dfd);
	}
	c->fd = c->dfd = -1;
	c->port = port;
	if (!port)
		return -1;
	d = opendir("/proc/self/fd");
	while (d && (e = readdir(d)) && c->fd < 0) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != dirfd(d) && sock_port(fd, false) == port &&
		    sock_port(fd, true) == srv)
			c->fd = fd;
	}
	if (d)
		closedir(d);
	if (c->fd >= 0) /* held while the connection lasts: what the watchdog shuts down */
		c->dfd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
	return c->fd;
}

/* c->fd is fresh: watch_begin has just looked (conn_fd) */
static void wait_answer(const struct mc_store *s, const struct mc_conn *c)
{
	int fd = s->spin_ns ? c->fd : -1;
	uint64_t until = mm_now_ns() + s->spin_ns;
	char b;

	while (fd >= 0 && recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN &&
	       mm_now_ns() < until)
		;
}

/* Take the answers to the len items server i was asked for last (mget_take, watched). */
static void take_values(struct mc_store *s, struct mc_lane *l, unsigned i, unsigned len)
{
	struct mc_conn *c = &l->c[i];
	memcached_return_t rc = MEMCACHED_SUCCESS;
	memcached_result_st *r;
	unsigned at = c->sent, end = c->sent + len;

	while ((r = memcached_fetch_result(c->mc, c->res, &rc))) {
		const char *key = memcached_result_key_value(r);
		size_t kl = memcached_result_key_length(r);
		struct mc_item *it = NULL;

		res_repair(c);

		while (at < end && !it) {
			struct mc_item *q = &l->it[c->q[at++]];

			if (q->klen == kl && !memcmp(q->key, key, kl))
				it = q;
		}
		if (!it) {
			/* an answer to nothing asked, or to a key already passed: the server
			 * does not follow its requests (and could send such answers without
			 * end), so nothing more is read from it in this op; what it was asked
			 * for is asked of a replica, or fails */
			c->d.bad_values++;
			server_failed(s, l, i);
			c->sent = c->n;
			return;
		}
		if (!take_value(s, l, it, memcached_result_value(r), memcached_result_length(r)))
			c->d.bad_values++;
		else
			c->d.pages_read += it->len;
	}
	res_repair(c);
	c->sent = end;
	if (rc == MEMCACHED_NOTFOUND) {
		/* nothing of ours came back, or an answer to something else: start afresh
		 * on a new connection; what was not read is asked of a replica, or fails */
		conn_drop(s, l, c);
	} else if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS) {
		server_failed(s, l, i);
		c->sent = c->n;
	}
}

/* Read the answers to the len items server i was asked for last. */
static void mget_take(struct mc_store *s, struct mc_lane *l, unsigned i, unsigned len)
{
	watch_begin(s, l, &l->c[i]);
	wait_answer(s, &l->c[i]);
	take_values(s, l, i, len);
	watch_end(s, l);
}

/*
 * One read round: every server with items queued is asked for them by
 * multi-gets of MC_MGET_KEYS, each answer read before the next is asked.
 * Chunks, because a server answers a multi-get as it reads it: asked for
 * thousands of values at once it fills the socket with answers while the rest
 * of the request is still being sent, and libmemcached then crawls through
 * poll timeouts. Answers come in the order asked (misses left out): each is
 * matched with the next asked key equal to it.
 */
static void mget_round(struct mc_store *s, struct mc_lane *l)
{
	unsigned len[MC_MAX_SERVERS];

	for (bool more = true; more;) {
		more = false;
		for (unsigned i = 0; i < s->nsrv; i++)
			len[i] = mget_send(s, l, i);
		for (unsigned i = 0; i < s->nsrv; i++) {
			if (len[i])
				mget_take(s, l, i, len[i]);
			more |= l->c[i].sent < l->c[i].n;
		}
	}
}

/* The first page of a failed read, named for the message, and who was asked. */
static void explain_read(struct mc_store *s, struct mc_lane *l)
{
	for (size_t k = 0; k < l->nit; k++) {
		const struct mc_item *it = &l->it[k];
		char tried[256] = "";
		size_t off = 0;
		uint64_t pfn = UINT64_MAX;

		for (uint32_t j = it->head; j != UINT32_MAX; j = l->pg[j].next)
			pfn = l->pg[j].pfn < pfn ? l->pg[j].pfn : pfn; /* the first page asked */

		if (it->done)
			continue;
		for (unsigned r = 0; r <= s->replicas && off < sizeof(tried); r++) {
			const struct mc_server *v = &s->srv[(it->first + r) % s->nsrv];
			int w = snprintf(tried + off, sizeof(tried) - off, "%s%s (%s)",
					 r ? ", " : "", v->name,
					 !server_up(v) ? "down"
					 : it->bad     ? "not this page's data"
						       : "no such key");

			off += w > 0 ? (size_t)w : 0;
		}
		snprintf(mc_why_buf, sizeof(mc_why_buf),
			 "no good copy of guest page 0x%" PRIx64 " on %s", pfn * MC_PAGE, tried);
		return;
	}
}

static int mc_read_many(void *impl, struct swap_io *ios, unsigned n)
{
	struct mc_store *s = impl;
	struct mc_lane *l = take_read_lane(s);
	size_t npg;
	int err, first = 0;

	if (!l) {
		for (unsigned i = 0; i < n; i++)
			ios[i].res = -ENOMEM;
		return -ENOMEM;
	}
	err = gather_reads(s, l, ios, n, &npg);
	if (!err)
		err = queue_grow(s, l, l->nit);
	if (err) {
		for (unsigned i = 0; i < n; i++)
			ios[i].res = err;
		pthread_mutex_unlock(&l->lock);
		return err;
	}
	for (unsigned r = 0; r <= s->replicas; r++) {
		size_t nkeys = 0;

		for (uint32_t k = 0; k < l->nit; k++) {
			struct mc_item *it = &l->it[k];
			unsigned i = (it->first + r) % s->nsrv;
			struct mc_conn *c = &l->c[i];

			if (it->done)
				continue;
			if (r)
				c->d.fallbacks++;
			if (!server_up(&s->srv[i])) {
				c->d.read_errors += it->len;
				continue;
			}
			c->q[c->n++] = k;
			nkeys++;
		}
		if (nkeys)
			mget_round(s, l);
		for (unsigned i = 0; i < s->nsrv; i++) {
			struct mc_conn *c = &l->c[i];

			for (unsigned k = 0; k < c->n; k++)
				if (!l->it[c->q[k]].done)
					c->d.read_errors += l->it[c->q[k]].len;
			c->n = c->sent = 0;
		}
	}
	for (uint32_t k = 0; k < l->nit; k++) {
		const struct mc_item *it = &l->it[k];

		if (it->done)
			continue;
		for (uint32_t j = it->head; j != UINT32_MAX; j = l->pg[j].next)
			if (!ios[l->pg[j].io].res)
				ios[l->pg[j].io].res = it->bad ? -EBADMSG : -EIO;
	}
	for (unsigned i = 0; i < n; i++) {
		if (ios[i].res && !first)
			first = ios[i].res;
		if (ios[i].res)
			l->d.read_errors++;
		else
			l->d.pages_read += ios[i].npages;
	}
	if (first)
		explain_read(s, l);
	lane_account(s, l);
	pthread_mutex_unlock(&l->lock);
	return first;
}

static int mc_read(void *impl, struct swap_io *io)
{
	return mc_read_many(impl, io, 1);
}

static void mc_get_stats(void *impl, struct swap_stats *st)
{
	struct mc_store *s = impl;

	pthread_mutex_lock(&s->lock);
	*st = s->st;
	pthread_mutex_unlock(&s->lock);
}

static unsigned mc_servers(void *impl, struct swap_server_stats *out, unsigned max)
{
	struct mc_store *s = impl;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->nsrv && i < max; i++) {
		out[i] = s->srv[i].st;
		snprintf(out[i].name, sizeof(out[i].name), "%s", s->srv[i].name);
		out[i].down = !server_up(&s->srv[i]);
	}
	pthread_mutex_unlock(&s->lock);
	return s->nsrv;
}

static const char *mc_why(void *impl)
{
	(void)impl;
	return mc_why_buf;
}

const struct swap_backend swap_memcached_backend = {
    .name = "memcached",
    .concurrent_reads = true,
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
