/* test_pager.c: the pager over userfaultfd without KVM: chunks, minor faults, reclaim races,
 * swap-out */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "mm/mm.h"

#define MIB (1ULL << 20)
#define PG  4096ULL

static int failures;
static atomic_int fatals, warns;
static char last_fatal[512];

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static void on_fatal(void *ctx, const char *msg)
{
	(void)ctx;
	snprintf(last_fatal, sizeof(last_fatal), "%s", msg);
	fatals++;
}

static void on_warn(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "test_pager: warning from pager: %s\n", msg);
	warns++;
}

static const struct mm_host_ops ops = {.fatal = on_fatal, .warn = on_warn};

/* Run fn(arg) on a helper thread: a pager bug must fail the test, not hang it. */
static bool run_timed(void *(*fn)(void *), void *arg, int seconds)
{
	struct timespec ts;
	pthread_t t;

	pthread_create(&t, NULL, fn, arg);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	if (pthread_timedjoin_np(t, NULL, &ts) != 0) {
		fprintf(stderr, "test_pager: helper thread timed out after %d s\n", seconds);
		return false;
	}
	return true;
}

struct job {
	struct mm_mem *m;
	uint64_t first, npages; /* page range */
	unsigned seed, rounds;
	uint32_t *ver; /* expected version per page */
	bool ok;
};

static uint32_t word(uint64_t pfn, uint32_t ver)
{
	return (uint32_t)(pfn * 2654435761u) ^ (ver * 40503u);
}

/* Fill a page with its (pfn, version) pattern through the registered mapping. */
static void fill(struct mm_mem *m, uint64_t pfn, uint32_t ver)
{
	uint32_t *w = (uint32_t *)(m->hva + pfn * PG);

	for (unsigned i = 0; i < PG / 4; i += 64)
		w[i] = word(pfn, ver) + i;
	w[PG / 4 - 1] = ver;
}

static bool check_page(struct mm_mem *m, uint64_t pfn, uint32_t ver)
{
	const uint32_t *w = (const uint32_t *)(m->hva + pfn * PG);

	if (ver == 0) {
		for (unsigned i = 0; i < PG / 4; i++)
			if (w[i])
				return false;
		return true;
	}
	for (unsigned i = 0; i < PG / 4; i += 64)
		if (w[i] != word(pfn, ver) + i)
			return false;
	return w[PG / 4 - 1] == ver;
}

static void *touch_one(void *arg)
{
	struct job *j = arg;

	j->ok = j->m->hva[j->first * PG + 7] == 0;
	j->m->hva[j->first * PG + 7] = 1;
	return NULL;
}

static void *read_all(void *arg)
{
	struct job *j = arg;

	j->ok = true;
	for (uint64_t p = j->first; p < j->first + j->npages; p++)
		if (!check_page(j->m, p, j->ver[p])) {
			fprintf(stderr, "test_pager: page %llu: wrong content (want version %u)\n",
				(unsigned long long)p, j->ver[p]);
			j->ok = false;
			break;
		}
	return NULL;
}

/* Random rewrites of its own pages while reclaim evicts them underneath. */
static void *writer(void *arg)
{
	struct job *j = arg;

	for (unsigned r = 0; r < j->rounds; r++) {
		uint64_t p = j->first + (uint64_t)rand_r(&j->seed) % j->npages;

		fill(j->m, p, ++j->ver[p]);
	}
	j->ok = true;
	return NULL;
}

static struct mm_pager *start(struct mm_mem *m, uint64_t limit, uint64_t chunk)
{
	struct mm_pager_opts o = {.mem_limit = limit, .chunk = chunk};
	struct mm_pager *p = NULL;
	int err = mm_pager_start(&p, m, &o, &ops, NULL);

	if (err == -EPERM || err == -ENOSYS || err == -ENOTSUP) {
		printf("test_pager: skipped: %s\n", mm_pager_strerror(err));
		exit(77);
	}
	if (err < 0) {
		fprintf(stderr, "test_pager: mm_pager_start: %s\n", strerror(-err));
		exit(1);
	}
	return p;
}

/* Chunks, pre-written pages, minor faults after an outside zap, host copies. */
static void test_faults(void)
{
	struct mm_pager_stats st;
	struct mm_mem m;
	struct job j = {.m = &m};
	struct mm_pager *p;
	uint32_t *ver = calloc(8192, sizeof(*ver));
	char buf[16];

	CHECK(mm_mem_create(&m, 32 * MIB) == 0);
	memset(m.hva, 0xab, 3 * PG); /* the VMM's own pages, written before the pager */
	p = start(&m, 0, 0);
	mm_pager_get_stats(p, &st);
	CHECK(st.resident_pages == 3);
	j.first = 5 * MIB / PG;
	CHECK(run_timed(touch_one, &j, 10) && j.ok);
	mm_pager_get_stats(p, &st);
	CHECK(st.chunks == 1 && st.chunk_pages == 512 && st.resident_pages == 3 + 512);
	/* neighbours not all new: the first region gets a smaller chunk */
	j.first = 8;
	CHECK(run_timed(touch_one, &j, 10) && j.ok);
	mm_pager_get_stats(p, &st);
	CHECK(st.chunks == 2 && st.chunk_pages == 512 + 8);
	CHECK((uint8_t)m.hva[0] == 0xab);
	/* an outside MADV_DONTNEED keeps shmem content: minor faults bring it back */
	for (uint64_t pg = 1024; pg < 1536; pg++) {
		ver[pg] = 1;
		fill(&m, pg, 1);
	}
	CHECK(madvise(m.hva + 1024 * PG, 2 * MIB, MADV_DONTNEED) == 0);
	j = (struct job){.m = &m, .first = 1024, .npages = 512, .ver = ver};
	CHECK(run_timed(read_all, &j, 10) && j.ok);
	mm_pager_get_stats(p, &st);
	CHECK(st.faults_minor == 512);
	CHECK(st.remove_events >= 1);
	/* host copies into never-touched memory take no fault */
	CHECK(mm_copy_to_guest(&m, 20 * MIB + 5, "hello", 6) == 0);
	CHECK(mm_copy_from_guest(&m, buf, 20 * MIB + 5, 6) == 0 && !strcmp(buf, "hello"));
	mm_pager_get_stats(p, &st);
	CHECK(st.faults_missing == 2 && st.host_copies == 2);
	CHECK(fatals == 0);
	mm_pager_stop(p);
	mm_mem_destroy(&m);
	free(ver);
}

/* Eight threads fault on eight adjacent zapped pages while their region is busy: the
 * deferred minor faults are resolved together, in one UFFDIO_CONTINUE (one fault
 * thread, so that all eight wait in the same list). */
static void test_minor_batch(void)
{
	const uint64_t first = 64, r = first / MM_REGION_PAGES;
	struct mm_pager_opts o = {.fault_threads = 1};
	uint32_t ver[128] = {0};
	struct job j[8];
	pthread_t t[8];
	struct mm_pager_stats st;
	struct mm_pager *p = NULL;
	struct timespec ts;
	struct mm_mem m;

	CHECK(mm_mem_create(&m, 16 * MIB) == 0);
	for (uint64_t pg = first; pg < first + 8; pg++)
		fill(&m, pg, ver[pg] = 3); /* before the pager: RESIDENT */
	CHECK(mm_pager_start(&p, &m, &o, &ops, NULL) == 0);
	CHECK(madvise(m.hva + first * PG, 8 * PG, MADV_DONTNEED) == 0);
	pthread_mutex_lock(&p->reg[r].lock);
	for (int i = 0; i < 8; i++) {
		j[i] = (struct job){.m = &m, .first = first + (uint64_t)i, .npages = 1, .ver = ver};
		pthread_create(&t[i], NULL, read_all, &j[i]);
	}
	mm_pager_get_stats(p, &st);
	for (int i = 0; i < 5000 && st.faults_deferred < 8; i++) {
		usleep(1000);
		mm_pager_get_stats(p, &st);
	}
	CHECK(st.faults_deferred == 8);
	mm_region_unlock(p, r);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	for (int i = 0; i < 8; i++) {
		CHECK(pthread_timedjoin_np(t[i], NULL, &ts) == 0);
		CHECK(j[i].ok);
	}
	mm_pager_get_stats(p, &st);
	printf("test_pager: %llu of 8 waiting minor faults resolved as one range\n",
	       (unsigned long long)st.minor_batched);
	CHECK(st.minor_batched == 8 && st.faults_minor == 8);
	mm_pager_stop(p);
	mm_mem_destroy(&m);
}

/* A page that appears in the memfd at a swapped entry (a stray): zeros are overwritten
 * with the swap copy; other data stops the VM instead of being replaced silently. */
static void test_strays(void)
{
	struct mm_pager_opts o = {.fault_threads = 1};
	uint32_t ver[64] = {0};
	struct mm_pager_stats st;
	struct mm_pager *p = NULL;
	struct mm_mem m;
	struct job j = {.m = &m, .npages = 1, .ver = ver};
	volatile uint8_t sink;

	CHECK(mm_mem_create(&m, 16 * MIB) == 0);
	for (uint64_t pg = 16; pg < 48; pg++)
		fill(&m, pg, ver[pg] = 5);
	CHECK(mm_pager_start(&p, &m, &o, &ops, NULL) == 0);
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	sink = p->alias[20 * PG]; /* a read through our view allocates a zero page */
	(void)sink;
	j.first = 20;
	CHECK(run_timed(read_all, &j, 10) && j.ok);
	mm_pager_get_stats(p, &st);
	CHECK(st.stray_pages == 1 && fatals == 0);
	memset(p->alias + 40 * PG, 0x77, PG); /* data nobody accounted for */
	j.first = 40;
	CHECK(!run_timed(read_all, &j, 2)); /* stays blocked: the VM must be stopped */
	CHECK(fatals == 1 && strstr(last_fatal, "neither the page's swap copy nor zeros"));
	printf("test_pager: stray page: %s\n", last_fatal);
	/* the blocked helper and this pager die with the process */
}

/* Fill pages [first, first+n) to version ver, from a helper thread. */
struct fill_job {
	struct mm_mem *m;
	uint64_t first, n;
	uint32_t *ver, v;
};

static void *fill_some(void *arg)
{
	struct fill_job *f = arg;

	for (uint64_t pg = f->first; pg < f->first + f->n; pg++)
		fill(f->m, pg, f->ver[pg] = f->v);
	return NULL;
}

/*
 * Clean tracking by write-protect (wp.c): pages read back from swap keep their
 * slot; the ones written since are written out again, the others dropped. A page
 * written and then zapped (no PTE left to say so) must not pass for clean when it
 * is mapped again.
 */
static void test_clean_tracking(void)
{
	const uint64_t npages = 64;
	uint32_t ver[64] = {0};
	struct mm_pager_opts o = {.fault_threads = 1, .wp = true};
	struct mm_pager_stats st;
	struct mm_pager *p = NULL;
	struct mm_mem m;
	struct job all = {.m = &m, .first = 0, .npages = npages, .ver = ver};
	struct fill_job f = {.m = &m, .ver = ver};
	uint64_t out0, drops0;

	CHECK(mm_mem_create(&m, 16 * MIB) == 0);
	for (uint64_t pg = 0; pg < npages; pg++)
		fill(&m, pg, ver[pg] = 1);
	CHECK(mm_pager_start(&p, &m, &o, &ops, NULL) == 0);
	if (!p->wp) {
		printf("test_pager: clean tracking: skipped (no UFFD_FEATURE_WP_ASYNC or "
		       "PAGEMAP_SCAN here)\n");
		mm_pager_stop(p);
		mm_mem_destroy(&m);
		return;
	}
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	CHECK(run_timed(read_all, &all, 20) && all.ok); /* swapped in, clean */
	f.first = 0, f.n = 10, f.v = 2;
	CHECK(run_timed(fill_some, &f, 20)); /* 10 written through the protected mapping */
	f.first = 20, f.n = 1, f.v = 3;
	CHECK(run_timed(fill_some, &f, 20));
	CHECK(madvise(m.hva + 20 * PG, PG, MADV_DONTNEED) == 0); /* written, then zapped */
	f.first = 21, f.n = 1, f.v = 1;				 /* ... and its neighbour */
	CHECK(madvise(m.hva + 21 * PG, PG, MADV_DONTNEED) == 0); /* only read, then zapped */
	all.first = 20, all.npages = 2;
	CHECK(run_timed(read_all, &all, 20) && all.ok); /* mapped again: minor faults */
	mm_pager_get_stats(p, &st);
	out0 = st.swapout_pages;
	drops0 = st.clean_drops;
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	mm_pager_get_stats(p, &st);
	printf("test_pager: clean tracking: %llu pages written again, %llu dropped clean\n",
	       (unsigned long long)(st.swapout_pages - out0),
	       (unsigned long long)(st.clean_drops - drops0));
	CHECK(st.swapout_pages - out0 == 11); /* 0..9 and 20 */
	CHECK(st.clean_drops - drops0 == npages - 11);
	all.first = 0, all.npages = npages;
	CHECK(run_timed(read_all, &all, 20) && all.ok); /* every page its last version */
	CHECK(fatals == 0);
	mm_pager_stop(p);
	mm_mem_destroy(&m);
}

/* A stand-in for KVM's dirty log of pages 0..63: what the test says the guest wrote. */
static _Atomic uint64_t fake_log;
static _Atomic uint64_t fake_sticky; /* reported by every harvest: pages written all along */

static int64_t fake_harvest(void *ctx, uint64_t *bitmap)
{
	uint64_t bits = atomic_exchange(&fake_log, 0) | atomic_load(&fake_sticky);

	(void)ctx;
	bitmap[0] |= bits;
	return __builtin_popcountll(bits);
}

/* The pager's re-protect requests (lazy log): the last range and how many. */
static uint64_t reprot_first = UINT64_MAX, reprot_n, reprot_calls;

static void fake_reprotect(void *ctx, uint64_t first, uint64_t npages)
{
	(void)ctx;
	reprot_first = first, reprot_n = npages, reprot_calls++;
}

/* One clock pass over region 0, as reclaim makes it; pages freed. */
static uint64_t clock_pass(struct mm_pager *p)
{
	uint64_t freed;
	int err = 0;

	pthread_mutex_lock(&p->evict_lock);
	pthread_mutex_lock(&p->reg[0].lock);
	freed = mm_evict_regions(p, 0, 1, false, &err);
	mm_region_unlock(p, 0);
	pthread_mutex_unlock(&p->evict_lock);
	CHECK(err == 0);
	return freed;
}

/*
 * A dirty log that misses writes (a Linux guest's devices write guest RAM through
 * pointers): it must never make a page pass for clean, only keep the pages it reports
 * from the clock, as the kernel keeps a page whose accessed bit KVM reports.
 */
static void test_partial_log(void)
{
	const uint64_t npages = 64;
	uint32_t ver[64] = {0};
	struct mm_host_ops o = ops;
	struct mm_pager_opts po = {.fault_threads = 1};
	struct mm_pager_stats st;
	struct mm_pager *p = NULL;
	struct mm_mem m;
	struct job all = {.m = &m, .first = 0, .npages = npages, .ver = ver};
	struct fill_job f = {.m = &m, .ver = ver, .first = 0, .n = 10, .v = 2};
	uint64_t out0, drops0, logged = 0, kept = 0, resident = 0;

	o.harvest_dirty = fake_harvest;
	o.dirty_partial = true;
	o.reprotect_dirty = fake_reprotect;
	CHECK(mm_mem_create(&m, 16 * MIB) == 0);
	for (uint64_t pg = 0; pg < npages; pg++)
		fill(&m, pg, ver[pg] = 1);
	CHECK(mm_pager_start(&p, &m, &po, &o, NULL) == 0);
	CHECK(!mm_clean_tracked(p));
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	CHECK(run_timed(read_all, &all, 20) && all.ok);
	CHECK(run_timed(fill_some, &f, 20)); /* written as a device would: not in the log */
	mm_pager_get_stats(p, &st);
	out0 = st.swapout_pages, drops0 = st.clean_drops;
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	mm_pager_get_stats(p, &st);
	CHECK(st.swapout_pages - out0 == npages && st.clean_drops == drops0);
	CHECK(run_timed(read_all, &all, 20) && all.ok); /* the device's writes survived */

	/* The clock: a first pass clears every young bit (and takes pages without one);
	 * of the pages left, those the log reports are young and stay, the rest go. */
	reprot_calls = 0;
	clock_pass(p);
	/* the hand used up region 0's young bits: the log is to watch its pages again */
	CHECK(reprot_calls == 1 && reprot_first == 0 && reprot_n == MM_REGION_PAGES);
	for (uint64_t pg = 0; pg < npages; pg++)
		if (p->pst.e[pg].state == PST_RESIDENT && (resident++ % 2) == 0)
			logged |= 1ULL << pg;
	CHECK(resident >= 8);
	atomic_store(&fake_log, logged);
	mm_access_harvest(p);
	CHECK(clock_pass(p) == resident - (uint64_t)__builtin_popcountll(logged));
	for (uint64_t pg = 0; pg < npages; pg++) {
		bool in = p->pst.e[pg].state == PST_RESIDENT;

		CHECK(in == ((logged >> pg) & 1));
		kept += in;
	}
	printf("test_pager: partial log: %llu pages written again, 0 dropped clean; the clock kept "
	       "the %llu logged of %llu resident\n",
	       (unsigned long long)npages, (unsigned long long)kept, (unsigned long long)resident);
	CHECK(run_timed(read_all, &all, 20) && all.ok);
	CHECK(fatals == 0);
	mm_pager_stop(p);
	mm_mem_destroy(&m);
}

/* A pager over 16 MiB whose first 64 pages hold version 1, with a partial, lazily
 * re-protected log (fake_harvest, fake_reprotect): a Linux guest's. */
static struct mm_pager *start_lazy(struct mm_mem *m, uint32_t *ver, const struct mm_pager_opts *po)
{
	struct mm_host_ops o = ops;
	struct mm_pager *p = NULL;

	o.harvest_dirty = fake_harvest;
	o.dirty_partial = true;
	o.reprotect_dirty = fake_reprotect;
	CHECK(mm_mem_create(m, 16 * MIB) == 0);
	for (uint64_t pg = 0; pg < 64; pg++)
		fill(m, pg, ver[pg] = 1);
	CHECK(mm_pager_start(&p, m, po, &o, NULL) == 0);
	return p;
}

/*
 * A lazily re-protected log with no clock running (no limit): the sampler re-protects
 * the regions it scans once the clock has been idle for a second, so rewrites are
 * still reported; before that second, only the clock would.
 */
static void test_lazy_log_idle_clock(void)
{
	struct mm_pager_opts po = {.fault_threads = 1, .scan_interval_ms = 20};
	struct mm_pager *p;
	struct mm_mem m;
	uint32_t ver[64] = {0};
	struct job all = {.m = &m, .first = 0, .npages = 64, .ver = ver};
	uint64_t early;

	reprot_calls = 0, reprot_first = UINT64_MAX;
	p = start_lazy(&m, ver, &po);
	CHECK(run_timed(read_all, &all, 20) && all.ok); /* region 0 in use */
	usleep(300 * 1000);
	early = reprot_calls;
	usleep(2200 * 1000);
	printf("test_pager: lazy log, no clock: %llu re-protects in the first 0.3 s, %llu by 2.5 s "
	       "(region 0x%llx)\n",
	       (unsigned long long)early, (unsigned long long)reprot_calls,
	       (unsigned long long)reprot_first);
	CHECK(early == 0 && reprot_calls > 0 && reprot_first == 0);
	CHECK(fatals == 0);
	mm_pager_stop(p);
	mm_mem_destroy(&m);
}

/*
 * A lazily re-protected log and the sampler: a page the log reported written since its
 * region was re-protected is in use, so its sample needs no zap (whose refault would cost
 * the guest a round trip); it counts as touched. A page with no such report is zapped.
 * Pages 0-31 are reported by every harvest (written all along): whenever the sampler
 * re-protects (once its first second without a clock is over), the next harvest reports
 * them again, as KVM's log would. The pages are looked at without the pager's locks, so
 * the check is repeated until a look falls between two scans (a look that crosses a scan
 * can see it half done).
 */
static void test_lazy_log_sampler(void)
{
	/* every page in one sample (rate = all of RAM), a scan every 300 ms */
	struct mm_pager_opts po = {
	    .fault_threads = 1, .scan_interval_ms = 300, .scan_rate = 16 * MIB / PG};
	struct mm_pager_stats st;
	struct mm_mem m;
	uint32_t ver[64] = {0};
	struct mm_pager *p;
	struct job all = {.m = &m, .first = 0, .npages = 64, .ver = ver};
	uint64_t s0, kept = 0, zapped = 0, seen = 0;
	bool ok = false;

	atomic_store(&fake_sticky, 0xffffffffULL); /* pages 0-31 written, from the start */
	p = start_lazy(&m, ver, &po);
	CHECK(run_timed(read_all, &all, 20) && all.ok); /* mapped */
	mm_pager_get_stats(p, &st);
	s0 = st.scans;
	for (int i = 0; i < 1000 && !ok; i++) {
		usleep(10 * 1000);
		mm_pager_get_stats(p, &st);
		if (st.scans < s0 + 2) /* a whole scan after the pages were mapped */
			continue;
		kept = zapped = seen = 0;
		for (uint64_t pg = 0; pg < 64; pg++) {
			const struct pst_entry *e = &p->pst.e[pg];

			if (pg < 32) {
				kept += e->state == PST_RESIDENT;
				seen += !!(e->flags & PST_F_SEEN);
			} else {
				zapped += e->state == PST_UNMAPPED;
			}
		}
		ok = kept == 32 && seen == 32 && zapped == 32;
	}
	printf("test_pager: lazy log, sampler: %llu of 32 written pages left mapped (%llu seen), "
	       "%llu of 32 others zapped, after %llu scans\n",
	       (unsigned long long)kept, (unsigned long long)seen, (unsigned long long)zapped,
	       (unsigned long long)(st.scans - s0));
	CHECK(ok);
	atomic_store(&fake_sticky, 0);
	CHECK(run_timed(read_all, &all, 20) && all.ok);
	CHECK(fatals == 0);
	mm_pager_stop(p);
	mm_mem_destroy(&m);
}

/* Writers race eviction under a limit; every page's last version must survive. */
static void test_reclaim(void)
{
	const uint64_t size = 64 * MIB, limit = 8 * MIB, npages = size / PG;
	struct job jobs[3];
	struct mm_pager_stats st;
	struct mm_mem m;
	struct mm_pager *p;
	pthread_t t[3];
	uint32_t *ver = calloc(npages, sizeof(*ver));
	struct timespec ts;
	bool ok = true;

	CHECK(mm_mem_create(&m, size) == 0);
	p = start(&m, limit, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 60;
	for (int i = 0; i < 3; i++) {
		jobs[i] = (struct job){.m = &m,
				       .first = 1 + i * (npages / 3),
				       .npages = npages / 3 - 1,
				       .seed = 7u + i,
				       .rounds = 30000,
				       .ver = ver};
		pthread_create(&t[i], NULL, writer, &jobs[i]);
	}
	for (int i = 0; i < 3; i++)
		if (pthread_timedjoin_np(t[i], NULL, &ts) != 0) {
			fprintf(stderr, "test_pager: writer %d timed out\n", i);
			exit(1);
		}
	struct job all = {.m = &m, .first = 0, .npages = npages, .ver = ver};
	mm_pager_get_stats(p, &st);
	printf("test_pager: reclaim: max resident %llu pages (limit %llu), %llu out, %llu in, "
	       "%llu deferred\n",
	       (unsigned long long)st.max_resident_pages, (unsigned long long)st.limit_pages,
	       (unsigned long long)st.swapout_pages, (unsigned long long)st.swapin_pages,
	       (unsigned long long)st.faults_deferred);
	/* at most one reclaim batch over (the pager reserves room: in practice none) */
	CHECK(st.max_resident_pages <= st.limit_pages + mm_reclaim_batch(st.limit_pages));
	CHECK(st.memfd_bytes <= limit + 2 * MIB);
	CHECK(st.swapout_pages > 0 && st.swapin_pages > 0);
	ok = run_timed(read_all, &all, 60) && all.ok;
	CHECK(ok);

	/* whole swap-out: under 1 MiB left in the memfd, then on-demand swap-in */
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	mm_pager_get_stats(p, &st);
	printf("test_pager: swapout_all left %llu bytes in the memfd\n",
	       (unsigned long long)st.swapout_all_resident_bytes);
	CHECK(st.swapout_all_resident_bytes < MIB);
	CHECK(run_timed(read_all, &all, 60) && all.ok);
	/* host copy of a swapped page, and clean pages dropped without a write */
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	mm_pager_get_stats(p, &st);
	uint64_t out0 = st.swapout_pages;
	uint32_t v;
	CHECK(mm_copy_from_guest(&m, &v, 100 * PG + PG - 4, 4) == 0 && v == ver[100]);
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	mm_pager_get_stats(p, &st);
	CHECK(st.swapout_pages == out0 && st.clean_drops >= 1);
	/* prefetch: everything read back and mapped before the vCPUs would resume */
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_PREFETCH) == 0);
	mm_pager_get_stats(p, &st);
	printf("test_pager: prefetch: %llu pages read back, %llu still swapped\n",
	       (unsigned long long)st.swapin_all_pages, (unsigned long long)st.swapped_pages);
	CHECK(st.swapin_all_pages > 0 && st.resident_pages <= st.limit_pages);
	CHECK(run_timed(read_all, &all, 60) && all.ok);
	CHECK(fatals == 0);
	mm_pager_stop(p);
	mm_mem_destroy(&m);
	free(ver);
}

/* Every 8th page written, the others only read (zero-filled chunks) or written back to
 * zeros: evicted under a limit, every zero page goes back to NEW without a write. */
static void *touch_sparse(void *arg)
{
	struct job *j = arg;
	volatile uint8_t sink = 0;

	for (uint64_t p = j->first; p < j->first + j->npages; p++) {
		if (p % 8 == 0)
			fill(j->m, p, j->ver[p] = 1);
		else if (p % 8 == 1) /* written, then cleared: all zeros again */
			memset(j->m->hva + p * PG, 0, PG), j->m->hva[p * PG + 9] = 0;
		else
			sink += j->m->hva[p * PG + 5];
	}
	j->ok = sink == 0;
	return NULL;
}

static void test_zero_drops(void)
{
	const uint64_t size = 32 * MIB, npages = size / PG;
	uint32_t *ver = calloc(npages, sizeof(*ver));
	struct job j = {.first = 0, .npages = npages, .ver = ver}, all;
	struct mm_pager_stats st;
	struct mm_mem m;
	struct mm_pager *p;

	CHECK(mm_mem_create(&m, size) == 0);
	p = start(&m, 8 * MIB, 0);
	j.m = &m;
	all = j;
	CHECK(run_timed(touch_sparse, &j, 60) && j.ok);
	mm_pager_get_stats(p, &st);
	printf("test_pager: zero drops: %llu pages out, %llu dropped as zeros\n",
	       (unsigned long long)st.swapout_pages, (unsigned long long)st.zero_drops);
	/* 7 of 8 pages are zeros: whatever reclaim evicted, it wrote only data pages, and
	 * all but what the limit holds was evicted */
	CHECK(st.zero_drops > 0 && st.swapout_pages <= npages / 8);
	CHECK(st.swapout_pages + st.zero_drops >= npages - (8 * MIB / PG) - 512);
	CHECK(run_timed(read_all, &all, 60) && all.ok); /* data back from swap, zeros as zeros */
	CHECK(fatals == 0);
	mm_pager_stop(p);
	mm_mem_destroy(&m);
	free(ver);
}

/* Write errors keep pages resident (reported once); a read error stops the VM. */
static void test_errors(void)
{
	const uint64_t size = 16 * MIB, npages = size / PG;
	struct mm_pager_stats st;
	struct mm_mem m;
	struct mm_pager *p;
	uint32_t *ver = calloc(npages, sizeof(*ver));
	struct job all = {.m = &m, .first = 0, .npages = npages, .ver = ver};
	struct job w = {
	    .m = &m, .first = 0, .npages = npages, .seed = 3, .rounds = 5000, .ver = ver};

	CHECK(mm_mem_create(&m, size) == 0);
	p = start(&m, 0, 0);
	CHECK(run_timed(writer, &w, 20) && w.ok);
	mm_pager_test_inject(p, true, -EIO, 100);
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == -EIO);
	mm_pager_get_stats(p, &st);
	printf("test_pager: injected write errors: %llu pages failed, %llu written\n",
	       (unsigned long long)st.write_errors, (unsigned long long)st.swapout_pages);
	CHECK(st.write_errors > 0 && warns == 1);
	CHECK(st.memfd_bytes >= st.write_errors * PG);
	CHECK(run_timed(read_all, &all, 20) && all.ok);
	mm_pager_test_inject(p, true, 0, 0);
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	CHECK(run_timed(read_all, &all, 20) && all.ok);
	/* without a limit, prefetch reads everything back: then no fault at all */
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_PREFETCH) == 0);
	mm_pager_get_stats(p, &st);
	printf("test_pager: prefetch: %llu pages read back, %llu still swapped\n",
	       (unsigned long long)st.swapin_all_pages, (unsigned long long)st.swapped_pages);
	CHECK(st.swapped_pages == 0 && st.swapin_all_pages > 0);
	uint64_t faults0 = st.faults_swapin + st.faults_minor + st.faults_missing;
	CHECK(run_timed(read_all, &all, 20) && all.ok);
	mm_pager_get_stats(p, &st);
	CHECK(st.faults_swapin + st.faults_minor + st.faults_missing == faults0);
	/* read failure: the pager calls fatal and never hands out zeros */
	CHECK(mm_pager_swapout_all(p, MM_SWAPIN_ON_DEMAND) == 0);
	mm_pager_test_inject(p, false, -EIO, 0);
	struct job one = {.m = &m, .first = 9, .npages = 1, .ver = ver};
	CHECK(!run_timed(read_all, &one, 2)); /* stays blocked: the VM must be stopped */
	CHECK(fatals == 1 && strstr(last_fatal, "read"));
	printf("test_pager: fatal on read error: %s\n", last_fatal);
	free(ver);
	/* the blocked helper thread dies with the process */
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	test_faults();
	test_minor_batch();
	test_clean_tracking();
	test_partial_log();
	test_lazy_log_idle_clock();
	test_lazy_log_sampler();
	test_reclaim();
	test_zero_drops();
	test_errors();
	fatals = 0;
	test_strays();
	if (failures) {
		fprintf(stderr, "test_pager: %d failures\n", failures);
		_exit(1);
	}
	printf("test_pager: ok\n");
	_exit(0);
}
