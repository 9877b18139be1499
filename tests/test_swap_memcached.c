/* test_swap_memcached.c: the memcached backend against real servers: items, reuse, deletes,
 * replicas, the skip of a failing server */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

#include "tests/swap_test.h"

/*
 * Each test starts its servers (Debian's memcached, -M, on free loopback
 * ports) and kills them at its end. The pager's tags are played by want[]:
 * the sum of what was written to each slot, and for which page; verify()
 * checks what comes back against it, as the pager's tags do.
 */

#define MAXP 4096
static uint64_t want_sum[MAXP], want_pfn[MAXP];
static pthread_mutex_t owner = PTHREAD_MUTEX_INITIALIZER; /* the pager's swap_lock */

struct server {
	pid_t pid;
	int port;
};

/* Every server started, killed at exit even when a check fails. */
static pid_t started[16];
static unsigned nstarted;

static void kill_all(void)
{
	for (unsigned i = 0; i < nstarted; i++)
		if (started[i] > 0) {
			kill(started[i], SIGKILL);
			waitpid(started[i], NULL, 0);
		}
}

static bool verify(void *ctx, uint64_t slot, uint64_t pfn, const void *page)
{
	(void)ctx;
	return slot < MAXP && want_pfn[slot] == pfn && want_sum[slot] == page_sum(page);
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	CHECK(fd >= 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool reachable(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

	close(fd);
	return ok;
}

static struct server start_server(void)
{
	struct server v = {.port = free_port()};
	char port[16];

	snprintf(port, sizeof(port), "%d", v.port);
	v.pid = fork();
	CHECK(v.pid >= 0);
	if (v.pid == 0) {
		if (geteuid() == 0)
			execlp("memcached", "memcached", "-l", "127.0.0.1", "-p", port, "-U", "0",
			       "-t", "1", "-M", "-m", "64", "-u", "nobody", (char *)NULL);
		else
			execlp("memcached", "memcached", "-l", "127.0.0.1", "-p", port, "-U", "0",
			       "-t", "1", "-M", "-m", "64", (char *)NULL);
		_exit(127);
	}
	started[nstarted++] = v.pid;
	for (int i = 0; i < 500 && !reachable(v.port); i++)
		usleep(10000);
	CHECK(reachable(v.port));
	return v;
}

static void stop_server(struct server *v)
{
	kill(v->pid, SIGKILL);
	waitpid(v->pid, NULL, 0);
	for (unsigned i = 0; i < nstarted; i++)
		if (started[i] == v->pid)
			started[i] = 0;
}

static struct swap_store *open_store(struct server *v, unsigned n, const char *query)
{
	char url[256];
	size_t off = (size_t)snprintf(url, sizeof(url), "memcached://");
	struct swap_opts o = {.vm_id = 0x7e57, .verify = verify};
	struct swap_store *s;

	for (unsigned i = 0; i < n; i++)
		off += (size_t)snprintf(url + off, sizeof(url) - off, "%s127.0.0.1:%d",
					i ? "," : "", v[i].port);
	snprintf(url + off, sizeof(url) - off, "%s", query);
	o.path = url;
	CHECK_EQ(swap_open(&s, &o, MAXP), 0);
	CHECK(!strcmp(swap_backend_name(s), "memcached"));
	CHECK(swap_reads_concurrent(s));
	return s;
}

/* Items on a server now (its "curr_items"). */
static long items_on(const struct server *v)
{
	memcached_st *mc = memcached_create(NULL);
	memcached_return_t rc;
	memcached_stat_st *st;
	char *val;
	long n;

	memcached_server_add(mc, "127.0.0.1", (in_port_t)v->port);
	st = memcached_stat(mc, NULL, &rc);
	CHECK(st && rc == MEMCACHED_SUCCESS);
	val = memcached_stat_get_value(mc, st, "curr_items", &rc);
	CHECK(val);
	n = atol(val);
	free(val);
	memcached_stat_free(mc, st);
	memcached_free(mc);
	return n;
}

static void flush_server(const struct server *v)
{
	memcached_st *mc = memcached_create(NULL);

	memcached_server_add(mc, "127.0.0.1", (in_port_t)v->port);
	CHECK_EQ(memcached_flush(mc, 0), MEMCACHED_SUCCESS);
	memcached_free(mc);
}

/* Write pages pfn.. (tags tag0..) into n consecutive slots from slot, as one io. */
static void write_run(struct swap_store *s, uint64_t slot, uint64_t pfn, uint32_t n, uint64_t tag0)
{
	char *buf = page_alloc(n);
	struct swap_io io = {.slot = slot, .npages = n, .buf = buf, .pfn = pfn};

	for (uint32_t i = 0; i < n; i++) {
		fill_page(buf + (size_t)i * PAGE, tag0 + i);
		want_sum[slot + i] = page_sum(buf + (size_t)i * PAGE);
		want_pfn[slot + i] = pfn + i;
	}
	pthread_mutex_lock(&owner);
	CHECK_EQ(swap_write(s, &io, 1), 0);
	pthread_mutex_unlock(&owner);
	CHECK_EQ(io.res, 0);
	free(buf);
}

/* Read n pages from slot (pages pfn..) as one io and check each against want[]. */
static int read_run(struct swap_store *s, uint64_t slot, uint64_t pfn, uint32_t n)
{
	char *buf = page_alloc(n);
	struct swap_io io = {.slot = slot, .npages = n, .buf = buf, .pfn = pfn};
	int err = swap_read(s, &io, 1);

	for (uint32_t i = 0; !err && i < n; i++)
		CHECK(verify(NULL, slot + i, pfn + i, buf + (size_t)i * PAGE));
	free(buf);
	return err;
}

static void discard(struct swap_store *s, uint64_t slot, uint64_t pfn)
{
	pthread_mutex_lock(&owner);
	swap_discard(s, slot, pfn);
	pthread_mutex_unlock(&owner);
}

/* A run is cut into values at guest pages that are multiples of 8; any piece reads back,
 * alone or with others, in one io or several. */
static void test_items(void)
{
	struct server v[3] = {start_server(), start_server(), start_server()};
	struct swap_store *s = open_store(v, 3, "");
	int64_t slot = swap_slot_alloc_run(s, 20);
	char *buf = page_alloc(4);
	struct swap_io ios[3] = {
	    {.slot = (uint64_t)slot + 1, .npages = 2, .buf = buf, .pfn = 6},
	    {.slot = (uint64_t)slot + 9, .npages = 1, .buf = buf + 2 * PAGE, .pfn = 14},
	    {.slot = (uint64_t)slot + 19, .npages = 1, .buf = buf + 3 * PAGE, .pfn = 24}};

	CHECK(slot >= 0);
	write_run(s, (uint64_t)slot, 5, 20, 100); /* pages 5..24: values 5-7, 8-15, 16-23, 24 */
	CHECK_EQ(items_on(&v[0]) + items_on(&v[1]) + items_on(&v[2]), 4);
	CHECK_EQ(read_run(s, (uint64_t)slot, 5, 20), 0);
	for (uint32_t i = 0; i < 20; i++)
		CHECK_EQ(read_run(s, (uint64_t)slot + i, 5 + i, 1), 0);
	CHECK_EQ(swap_read(s, ios, 3), 0);
	for (unsigned k = 0; k < 3; k++)
		for (uint32_t i = 0; i < ios[k].npages; i++)
			CHECK(verify(NULL, ios[k].slot + i, ios[k].pfn + i,
				     (char *)ios[k].buf + (size_t)i * PAGE));
	/* a slot never written: no copy, said so */
	CHECK_EQ(read_run(s, 100, 100, 1), -EIO);
	CHECK(strstr(swap_why(s), "no copy of guest page 0x64000 was stored"));
	free(buf);
	swap_close(s);
	for (int i = 0; i < 3; i++)
		stop_server(&v[i]);
}

/*
 * A page of a value freed and its slot reused for the page's new content while
 * the value still holds its neighbours: both read back right; a value is
 * deleted once none of its pages is left, and not before.
 */
static void test_reuse_and_delete(void)
{
	struct server v[1] = {start_server()};
	struct swap_store *s = open_store(v, 1, "");
	int64_t slot = swap_slot_alloc_run(s, 8), again;

	CHECK(slot >= 0);
	write_run(s, (uint64_t)slot, 16, 8, 1000); /* one value: pages 16..23 */
	CHECK_EQ(items_on(&v[0]), 1);
	discard(s, (uint64_t)slot, 16); /* its first page: the value stays */
	again = swap_slot_alloc(s);
	CHECK_EQ(again, slot);			   /* the freed slot comes back first */
	write_run(s, (uint64_t)slot, 16, 1, 5000); /* a new value in the old one's first slot */
	CHECK_EQ(items_on(&v[0]), 2);
	CHECK_EQ(read_run(s, (uint64_t)slot, 16, 8), 0);
	for (uint32_t i = 1; i < 8; i++) /* all but one page of the old value */
		discard(s, (uint64_t)slot + i, 16 + i);
	CHECK_EQ(read_run(s, (uint64_t)slot, 16, 1), 0);
	again = swap_slot_alloc(s);
	CHECK(again >= 0);
	write_run(s, (uint64_t)again, 300, 1, 9000); /* deletes go out before the next write */
	CHECK_EQ(items_on(&v[0]), 2); /* the old value gone; the new one and page 300's */
	discard(s, (uint64_t)slot, 16);
	discard(s, (uint64_t)again, 300);
	swap_close(s); /* sends what is left to delete */
	CHECK_EQ(items_on(&v[0]), 0);
	stop_server(&v[0]);
}

/*
 * replicas=1: a server emptied under the store; every page still reads, from the other.
 * 64 values: which server a value is read from first is the hash ring's choice, and the
 * ports (so the ring) change from run to run; with 8 values, all of them were read from
 * the server left full once in a few hundred runs, and no read fell back.
 */
static void test_replicas(void)
{
	struct server v[2] = {start_server(), start_server()};
	struct swap_store *s = open_store(v, 2, "?replicas=1");
	struct swap_server_stats st[2];
	int64_t slot = swap_slot_alloc_run(s, 512);

	CHECK(slot >= 0);
	write_run(s, (uint64_t)slot, 0, 512, 77);
	CHECK_EQ(items_on(&v[0]), 64);
	CHECK_EQ(items_on(&v[1]), 64);
	flush_server(&v[0]);
	CHECK_EQ(read_run(s, (uint64_t)slot, 0, 512), 0);
	CHECK_EQ(swap_servers(s, st, 2), 2);
	CHECK(st[0].fallbacks + st[1].fallbacks > 0);
	flush_server(&v[1]);
	CHECK_EQ(read_run(s, (uint64_t)slot, 0, 8), -EIO);
	CHECK(strstr(swap_why(s), "no good copy of guest page 0x0 on 127.0.0.1:"));
	CHECK(strstr(swap_why(s), "(no such key)"));
	swap_close(s);
	for (int i = 0; i < 2; i++)
		stop_server(&v[i]);
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A read that fails (at t0, returning at t1), then how long the server stays skipped:
 * *since_ask from t0 is at least the skip (it failed after t0), the result from t1 at most
 * the skip and the polling's delay (it failed before t1). */
static double skipped_for(struct swap_store *s, uint64_t slot, double *since_ask)
{
	struct swap_server_stats st;
	double t0 = now_s(), t1;

	CHECK_EQ(read_run(s, slot, 0, 8), -EIO);
	t1 = now_s();
	CHECK(strstr(swap_why(s), "127.0.0.1:"));
	for (;;) {
		CHECK_EQ(swap_servers(s, &st, 1), 1);
		if (!st.down) {
			*since_ask = now_s() - t0;
			return now_s() - t1;
		}
		CHECK(now_s() - t0 < 30);
		usleep(10000);
	}
}

/* SIGSTOP takes effect when each of the server's threads next returns to user mode: one
 * busy then answers a request sent after kill(). Stopped when waitpid says so. */
static void hang_server(const struct server *v)
{
	int status;

	CHECK_EQ(kill(v->pid, SIGSTOP), 0);
	CHECK_EQ(waitpid(v->pid, &status, WUNTRACED), v->pid);
	CHECK(WIFSTOPPED(status));
}

/* A hung server is skipped a second after a timeout, two after the next in a row, and a
 * second again once it has answered. (The timeout is long enough that the server, just
 * continued, answers within it on a loaded host.) */
static void test_backoff(void)
{
	struct server v = start_server();
	struct swap_store *s = open_store(&v, 1, "?timeout_ms=500");
	int64_t slot = swap_slot_alloc_run(s, 8);
	double a1, a2, a3, t3;

	CHECK(slot >= 0);
	write_run(s, (uint64_t)slot, 0, 8, 5);
	hang_server(&v);
	skipped_for(s, (uint64_t)slot, &a1);
	skipped_for(s, (uint64_t)slot, &a2);
	kill(v.pid, SIGCONT);
	CHECK_EQ(read_run(s, (uint64_t)slot, 0, 8), 0);
	hang_server(&v);
	t3 = skipped_for(s, (uint64_t)slot, &a3);
	kill(v.pid, SIGCONT);
	printf("test_swap_memcached: skipped %.2f s, then %.2f s; %.2f s after an answer (from "
	       "the reads' start)\n",
	       a1, a2, a3);
	CHECK(a1 >= 1.0 && a2 >= 2.0 && a3 >= 1.0);
	CHECK(t3 < 1.9); /* not 4 s: the answer ended the row */
	CHECK_EQ(read_run(s, (uint64_t)slot, 0, 8), 0);
	swap_close(s);
	stop_server(&v);
}

struct reader {
	struct swap_store *s;
	uint64_t slot;
	uint32_t n;
	int errors;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint64_t x = r->slot + 1;

	for (int k = 0; k < 300; k++) {
		uint32_t i = (uint32_t)(xorshift(&x) % r->n),
			 len = 1 + (uint32_t)(xorshift(&x) % 16);

		if (i + len > r->n)
			len = r->n - i;
		r->errors += read_run(r->s, r->slot + i, 1000 + i, len) != 0;
	}
	return NULL;
}

/* Reads in two threads at once, beside a writer and discards (swap_reads_concurrent). */
static void test_concurrent_reads(void)
{
	struct server v[3] = {start_server(), start_server(), start_server()};
	struct swap_store *s = open_store(v, 3, "");
	struct reader r[2];
	pthread_t t[2];
	int64_t slot = swap_slot_alloc_run(s, 512);

	CHECK(slot >= 0);
	write_run(s, (uint64_t)slot, 1000, 512, 1);
	for (int i = 0; i < 2; i++) {
		r[i] = (struct reader){.s = s, .slot = (uint64_t)slot, .n = 512};
		CHECK_EQ(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
	}
	for (int k = 0; k < 40; k++) { /* other slots written and freed meanwhile */
		int64_t w = swap_slot_alloc_run(s, 32);

		CHECK(w >= 0);
		write_run(s, (uint64_t)w, 5000 + 32 * (uint64_t)k, 32, 50000 + 32 * (uint64_t)k);
		for (uint32_t i = 0; i < 32; i++)
			discard(s, (uint64_t)w + i, 5000 + 32 * (uint64_t)k + i);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(r[i].errors, 0);
	}
	swap_close(s);
	for (int i = 0; i < 3; i++)
		stop_server(&v[i]);
}

int main(void)
{
	if (system("command -v memcached >/dev/null 2>&1") != 0) {
		printf("test_swap_memcached: skipped: no memcached (apt-get install memcached)\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	atexit(kill_all);
	test_items();
	test_reuse_and_delete();
	test_replicas();
	test_concurrent_reads();
	test_backoff();
	printf("test_swap_memcached: ok\n");
	return 0;
}
