/* test_discard.c: mm_pager_discard without KVM: pages the guest gave away become NEW, and only
 * those */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mm/mm.h"
#include "tests/check.h"

#define MIB    (1ULL << 20)
#define PG     4096ULL
#define NPAGES (8 * MIB / PG)

static atomic_int fatals;

static void on_fatal(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "test_discard: fatal from pager: %s\n", msg);
	fatals++;
}

static const struct mm_host_ops ops = {.fatal = on_fatal};

struct job {
	struct mm_mem *m;
	uint32_t *ver; /* expected version per page; 0 = zeros */
	uint64_t first, n;
	bool write, ok;
};

static uint32_t word(uint64_t pfn, uint32_t ver, unsigned i)
{
	return (uint32_t)(pfn * 2654435761u) ^ (ver * 40503u) ^ i;
}

/* Write (job->write) or check every word of pages [first, first+n) through the registered
 * mapping: the test itself takes the userfaults, so it runs on a helper thread. */
static void *pages_job(void *arg)
{
	struct job *j = arg;

	j->ok = true;
	for (uint64_t p = j->first; p < j->first + j->n; p++) {
		uint32_t *w = (uint32_t *)(j->m->hva + p * PG);

		for (unsigned i = 0; i < PG / 4; i++) {
			uint32_t want = j->ver[p] ? word(p, j->ver[p], i) : 0;

			if (j->write) {
				w[i] = want;
			} else if (w[i] != want) {
				fprintf(stderr,
					"test_discard: page %llu word %u: 0x%x, want 0x%x\n",
					(unsigned long long)p, i, w[i], want);
				j->ok = false;
				return NULL;
			}
		}
	}
	return NULL;
}

static bool run_job(struct mm_mem *m, uint32_t *ver, uint64_t first, uint64_t n, bool write)
{
	struct job j = {.m = m, .ver = ver, .first = first, .n = n, .write = write};
	struct timespec ts;
	pthread_t t;

	pthread_create(&t, NULL, pages_job, &j);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	if (pthread_timedjoin_np(t, NULL, &ts) != 0) {
		fprintf(stderr, "test_discard: helper thread timed out\n");
		return false;
	}
	return j.ok;
}

static enum pst_state state(struct mm_pager *p, uint64_t pfn)
{
	uint8_t s = 0xff;

	CHECK(mm_pager_pagemap(p, pfn, 1, &s, NULL) == 0);
	return (enum pst_state)(s & 0x0f);
}

/* Discard [first, first+n) after setting their expected content to zeros: all held content. */
static void discard(struct mm_pager *p, uint32_t *ver, uint64_t first, uint64_t n)
{
	CHECK(mm_pager_discard(p, first, n) == (int64_t)n);
	for (uint64_t i = first; i < first + n; i++) {
		ver[i] = 0;
		CHECK(state(p, i) == PST_NEW);
	}
}

int main(void)
{
	uint32_t *ver = calloc(NPAGES, sizeof(*ver));
	struct mm_pager_opts o = {0};
	struct mm_pager_stats a, b;
	struct mm_pager *p = NULL;
	struct mm_mem m;
	uint32_t v;
	int err;

	setvbuf(stdout, NULL, _IONBF, 0);
	CHECK(mm_mem_create(&m, 8 * MIB) == 0);
	err = mm_pager_start(&p, &m, &o, &ops, NULL);
	if (err == -EPERM || err == -ENOSYS || err == -ENOTSUP) {
		printf("test_discard: skipped: %s\n", mm_pager_strerror(err));
		return 77;
	}
	CHECK(err == 0);
	/* regions 0-2 written, region 3 never touched */
	for (uint64_t i = 0; i < 3 * 512; i++)
		ver[i] = 1;
	CHECK(run_job(&m, ver, 0, 3 * 512, true));
	mm_pager_get_stats(p, &a);
	CHECK(a.resident_pages == 3 * 512 && a.memfd_bytes == 3 * 2 * MIB);

	/* RESIDENT pages inside a region and across a region boundary */
	discard(p, ver, 100, 4);
	discard(p, ver, 509, 6);
	mm_pager_get_stats(p, &b);
	CHECK(b.discarded_pages == 10 && b.resident_pages == a.resident_pages - 10);
	CHECK(b.memfd_bytes == b.resident_pages * PG);
	CHECK(state(p, 99) == PST_RESIDENT && state(p, 104) == PST_RESIDENT);
	CHECK(state(p, 508) == PST_RESIDENT && state(p, 515) == PST_RESIDENT);
	/* discarding NEW pages (given away already, never touched) frees nothing and says so;
	 * a range with both counts only the pages that held content; out of range is refused */
	CHECK(mm_pager_discard(p, 100, 4) == 0);
	CHECK(mm_pager_discard(p, 3 * 512, 512) == 0);
	CHECK(mm_pager_discard(p, NPAGES, 0) == 0);
	CHECK(mm_pager_discard(p, 98, 8) == 4); /* 98, 99, 104, 105 */
	ver[98] = ver[99] = ver[104] = ver[105] = 0;
	CHECK(mm_pager_discard(p, NPAGES - 1, 2) == -EINVAL);
	CHECK(mm_pager_discard(p, UINT64_MAX, 2) == -EINVAL);
	mm_pager_get_stats(p, &a);
	CHECK(a.discarded_pages == 14);

	/* SWAPPED pages give their slots back; an UNMAPPED one (read into the memfd by a
	 * host copy, not mapped) goes too */
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	CHECK(state(p, 600) == PST_SWAPPED);
	CHECK(mm_copy_from_guest(&m, &v, 700 * PG, 4) == 0 && v == word(700, 1, 0));
	CHECK(state(p, 700) == PST_UNMAPPED);
	mm_pager_get_stats(p, &a);
	discard(p, ver, 600, 10);
	discard(p, ver, 700, 1);
	mm_pager_get_stats(p, &b);
	CHECK(b.swap_slots_used <= a.swap_slots_used - 10);
	CHECK(b.swapped_pages == a.swapped_pages - 10);
	CHECK(b.resident_pages == a.resident_pages - 1);
	CHECK(b.discarded_pages == a.discarded_pages + 11);

	/* a whole region discarded: the next touch fills it in one 2 MiB chunk */
	for (uint64_t i = 1024; i < 1536; i++)
		ver[i] = 0;
	CHECK(mm_pager_discard(p, 1024, 512) == 512);
	mm_pager_get_stats(p, &a);
	CHECK(a.swapped_pages == b.swapped_pages - 512);
	CHECK(run_job(&m, ver, 1024, 1, false));
	mm_pager_get_stats(p, &b);
	CHECK(b.chunk_pages == a.chunk_pages + 512 && b.resident_pages == a.resident_pages + 512);

	/* Every page reads back: the given-away ones as zeros through small chunks that
	 * never cover a live neighbour, the others with their content from swap. */
	CHECK(run_job(&m, ver, 0, NPAGES, false));
	mm_pager_get_stats(p, &a);
	CHECK(a.swapped_pages == 0 && a.memfd_bytes == a.resident_pages * PG);
	/* a discarded page written again keeps what was written */
	ver[101] = 7;
	CHECK(run_job(&m, ver, 101, 1, true));
	CHECK(run_job(&m, ver, 96, 16, false));
	CHECK(fatals == 0);
	mm_pager_stop(p);
	mm_mem_destroy(&m);
	free(ver);
	if (!check_failures)
		printf("test_discard: ok\n");
	CHECK_DONE();
}
