/* access.c: young tracking by access sampling, idle ages, and the guest's dirty log */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "mm/mm.h"

/*
 * Access sampling: the kernel's idle page tracking, done by the VMM. Guest
 * RAM is cut into blocks of ACC_BLOCK pages; block b belongs to sample phase
 * b % stride. Each scan interval k the scanner walks the page-state table,
 * one 2 MiB region at a time under the region lock (as reclaim does), and:
 *
 *   every page of phase k % stride: clear YOUNG and SEEN; RESIDENT ones are
 *     zapped (MADV_DONTNEED: clear_young) and become UNMAPPED
 *   a page touched since (a minor fault, UFFDIO_CONTINUE; or a first touch,
 *     a swap-in) comes back RESIDENT with YOUNG|SEEN and age 0 (resolve.c)
 *   UNMAPPED or SWAPPED pages not YOUNG: age + 1 (idle one more interval)
 *
 * Only 1/stride of the pages is re-tested per interval, so a page the guest
 * keeps using costs one minor fault per stride intervals; an idle page stays
 * zapped and costs nothing while it ages. SEEN survives until its phase comes
 * round again, so sample j tells exactly which of its pages were touched in
 * [t_j, now]: the working set over a window W is the SEEN count of the sample
 * zapped W ago, scaled by stride. Zaps use the same region locks and states
 * as reclaim: a sampled page is an UNMAPPED page, and reclaim may take it.
 *
 * The dirty log (mm_host_ops.harvest_dirty) is fetched at every scan and
 * before every eviction; bits wait in `dirty` until their region is locked.
 */
#define ACC_BLOCK 16  /* pages zapped together: one madvise, one REMOVE round trip */
#define RF_HIST	  128 /* scans of refault history: 1 s at the shortest interval (10 ms) */
#define RF_WINDOW 1000000000ULL

struct mm_access {
	pthread_t tid;
	bool started, stop;
	pthread_mutex_t lock;	  /* stop, wss */
	pthread_mutex_t scanning; /* held for a whole scan (mm_access_quiesce waits on it) */
	pthread_cond_t cond;
	uint64_t stride, interval_ns, eff_ns, budget_pct;
	uint64_t k;		/* scans done; sample k is phase k % stride */
	uint64_t *tick_ns;	/* [stride]: when the phase was last zapped */
	uint64_t *seen;		/* [stride]: its pages touched since (this scan's count) */
	uint64_t *phase_pages;	/* [stride] */
	struct mm_wss wss;	/* the latest report, under lock */
	pthread_mutex_t dlock;	/* one harvest at a time */
	uint64_t *dirty, *hbuf; /* pending bits (atomic words), harvest buffer */
	uint64_t words;
	_Atomic uint64_t dirty_total;
	uint64_t last_dirty;
	uint64_t clock_runs, clock_ns; /* reclaim_runs when the sampler last saw it change */
	uint64_t reprotect_ns;	       /* the sampler's last re-protect sweep */
	uint64_t rf_t[RF_HIST], rf_v[RF_HIST]; /* [k % RF_HIST]: scan time, refault_ns then */
	unsigned auto_age;		       /* --mem-limit auto's idle threshold */
};

/* Fetch the dirty log into a->dirty (any thread); false if it failed. */
static bool harvest(struct mm_pager *p, struct mm_access *a)
{
	int64_t n;

	pthread_mutex_lock(&a->dlock);
	memset(a->hbuf, 0, a->words * 8);
	n = p->ops.harvest_dirty(p->ctx, a->hbuf);
	for (uint64_t i = 0; n > 0 && i < a->words; i++)
		if (a->hbuf[i])
			__atomic_fetch_or(&a->dirty[i], a->hbuf[i], __ATOMIC_RELAXED);
	pthread_mutex_unlock(&a->dlock);
	if (n > 0) {
		a->dirty_total += (uint64_t)n;
		MM_STAT_ADD(p, scan_dirty_pages, n);
	}
	return n >= 0;
}

/* Apply pending dirty bits of [base, base+npg) (region locks held); all: harvest failed. */
static void apply_dirty(struct mm_pager *p, uint64_t base, uint64_t npg, bool all)
{
	struct mm_access *a = p->acc;

	for (uint64_t w = base / 64; w < (base + npg) / 64; w++) {
		uint64_t bits = __atomic_exchange_n(&a->dirty[w], 0, __ATOMIC_RELAXED);

		if (all)
			bits = ~0ULL;
		for (; bits; bits &= bits - 1) {
			struct pst_entry *e = &p->pst.e[w * 64 + (uint64_t)__builtin_ctzll(bits)];

			/* Written is used: the clock passes a logged page once more, as the
			 * kernel's reclaim keeps a page whose accessed bit KVM reports. */
			if (e->state == PST_RESIDENT && !all)
				e->flags |=
				    PST_F_YOUNG | (p->ops.reprotect_dirty ? PST_F_WRITTEN : 0);
			if (p->ops.dirty_partial)
				continue; /* never evidence of clean */
			/* Only pages in memory: a swapped page cannot have been written since
			 * its eviction synced the log, and its slot is its only copy. */
			if (e->state == PST_RESIDENT || e->state == PST_UNMAPPED) {
				mm_slot_free(p, e);
				e->flags |= PST_F_DIRTY;
			}
		}
	}
}

void mm_access_sync_dirty(struct mm_pager *p, uint64_t base, uint64_t npg)
{
	if (!p->acc || !p->ops.harvest_dirty || p->ops.dirty_partial)
		return; /* a partial log decides nothing at eviction */
	apply_dirty(p, base, npg, !harvest(p, p->acc));
}

void mm_access_harvest(struct mm_pager *p)
{
	if (p->acc && p->ops.harvest_dirty)
		(void)harvest(p, p->acc); /* failed: the bits wait for the next one */
}

void mm_access_apply_dirty(struct mm_pager *p, uint64_t base, uint64_t npg)
{
	if (p->acc && p->ops.harvest_dirty)
		apply_dirty(p, base, npg, false);
}

void mm_access_reprotect(struct mm_pager *p, uint64_t base, uint64_t npg)
{
	if (!p->ops.reprotect_dirty)
		return;
	for (uint64_t pfn = base; pfn < base + npg; pfn++)
		p->pst.e[pfn].flags &= (uint8_t)~PST_F_WRITTEN;
	p->ops.reprotect_dirty(p->ctx, base, npg);
}

bool mm_access_page_dirty(struct mm_pager *p, uint64_t pfn)
{
	struct mm_access *a = p->acc;

	return a && ((__atomic_load_n(&a->dirty[pfn / 64], __ATOMIC_RELAXED) >> (pfn % 64)) & 1);
}

void mm_access_touch(struct mm_pager *p, uint64_t pfn)
{
	if (p->sampling)
		p->pst.e[pfn].flags |= PST_F_SEEN;
}

static void zap(struct mm_pager *p, uint64_t pfn, uint64_t n)
{
	if (!n)
		return;
	madvise(p->mem->hva + pfn * MM_PAGE, n * MM_PAGE, MADV_DONTNEED);
	MM_STAT_ADD(p, scan_zapped, n);
}

/*
 * One region of scan k (lock held): age, count SEEN per phase, zap phase ph. A page of
 * phase ph the lazy dirty log saw written since its region was last re-protected (at
 * most a revolution of the clock, or a second, ago) is not zapped: it is in use, and its
 * zap would only cost the guest a fault round trip to say so (in the SVM lane a
 * refault costs the guest about 0.6 ms, and sampling's refaults were most of what the
 * pager cost a Linux guest under a limit: bench/README.md). It counts as touched
 * (SEEN) in the new sample.
 */
static void scan_region(struct mm_pager *p, struct mm_access *a, uint64_t r, uint64_t ph,
			uint64_t *hist)
{
	uint64_t base = r * MM_REGION_PAGES, run = 0;

	for (uint64_t pfn = base; pfn <= base + MM_REGION_PAGES; pfn++) {
		struct pst_entry *e = pfn < base + MM_REGION_PAGES ? &p->pst.e[pfn] : NULL;
		uint64_t phase = pfn / ACC_BLOCK % a->stride;
		bool zapit = false;

		if (e) {
			if ((e->state == PST_UNMAPPED || e->state == PST_SWAPPED) &&
			    !(e->flags & PST_F_YOUNG) && e->age < UINT8_MAX)
				e->age++;
			if (e->flags & PST_F_SEEN)
				a->seen[phase]++;
			if (phase == ph && e->state == PST_RESIDENT && (e->flags & PST_F_WRITTEN)) {
				e->flags |= PST_F_SEEN;
			} else if (phase == ph) {
				e->flags &= (uint8_t) ~(PST_F_SEEN | PST_F_YOUNG);
				zapit =
				    e->state == PST_RESIDENT && mm_page_set(p, pfn, PST_UNMAPPED);
			}
			for (unsigned b = 0; b < MM_IDLE_BUCKETS; b++)
				if ((e->state == PST_RESIDENT || e->state == PST_UNMAPPED) &&
				    e->age >= (1u << b))
					hist[b]++;
		}
		if (zapit) {
			run++;
			continue;
		}
		zap(p, pfn - run, run);
		run = 0;
	}
}

/* The working set over each window, from the samples' SEEN counts (a->lock held). */
static void windows(struct mm_pager *p, struct mm_access *a, uint64_t now)
{
	static const uint64_t secs[MM_WSS_WINDOWS] = {1, 10, 60};

	for (unsigned w = 0; w < MM_WSS_WINDOWS; w++) {
		uint64_t want = secs[w] * 1000000000ULL, j = 0, s;

		want = want > a->eff_ns / 2 ? want - a->eff_ns / 2 : 1;
		/* the latest sample zapped at least the window ago, else the oldest still
		 * valid (sample j lasts until scan j + stride zaps its phase again) */
		for (uint64_t i = 1; i < a->stride && i < a->k; i++) {
			j = a->k - i; /* scans are numbered from 1 */
			if (now - a->tick_ns[j % a->stride] >= want)
				break;
		}
		a->wss.window_s[w] = secs[w];
		if (!j) {
			a->wss.window_pages[w] = 0;
			a->wss.window_covered_ms[w] = 0;
			continue;
		}
		s = j % a->stride;
		a->wss.window_pages[w] =
		    a->phase_pages[s] ? a->seen[s] * p->npages / a->phase_pages[s] : 0;
		a->wss.window_covered_ms[w] = (now - a->tick_ns[s]) / 1000000;
	}
}

/*
 * The share of time spent serving refaults over the last second (PSI's averages
 * in spirit), or over the last interval when intervals are longer: one burst
 * of swap-ins inside a short interval is not yet pressure. Records scan k.
 */
static uint64_t refault_permille(struct mm_access *a, uint64_t k, uint64_t now, uint64_t refault)
{
	uint64_t j = k, lim = k > RF_HIST - 1 ? k - (RF_HIST - 1) : 1;

	a->rf_t[k % RF_HIST] = now;
	a->rf_v[k % RF_HIST] = refault;
	while (j > lim && now - a->rf_t[j % RF_HIST] < RF_WINDOW)
		j--;
	if (j == k || now == a->rf_t[j % RF_HIST])
		return 0;
	return (refault - a->rf_v[j % RF_HIST]) * 1000 / (now - a->rf_t[j % RF_HIST]);
}

static void scan(struct mm_pager *p, struct mm_access *a)
{
	uint64_t k = a->k + 1, ph = k % a->stride, now = mm_now_ns(), hist[MM_IDLE_BUCKETS] = {0};
	uint64_t dt = a->k ? now - a->tick_ns[a->k % a->stride] : 0, dirty, refault;
	bool dirty_ok = p->ops.harvest_dirty && harvest(p, a), reprotect;
	uint64_t runs = __atomic_load_n(&p->st.reclaim_runs, __ATOMIC_RELAXED);

	/* A lazily re-protected log (mm_host_ops.reprotect_dirty) waits for the clock to
	 * pass a region; while the clock has not run for a second (no limit, or one not
	 * reached), the sampler re-protects instead, once a second (each re-protect costs
	 * the guest a write fault per page it writes again), so rewrites are still reported
	 * and the write rate below stays a rate. */
	if (runs != a->clock_runs || !a->clock_ns)
		a->clock_runs = runs, a->clock_ns = now;
	reprotect = p->ops.reprotect_dirty && now - a->clock_ns >= 1000000000ULL &&
		    now - a->reprotect_ns >= 1000000000ULL;
	if (reprotect)
		a->reprotect_ns = now;
	memset(a->seen, 0, a->stride * sizeof(*a->seen));
	a->tick_ns[ph] = now; /* before the zaps: a touch after them is inside the window */
	for (uint64_t r = 0; r < p->nregions && !atomic_load(&p->stop); r++) {
		if (p->reg[r].nnew == MM_REGION_PAGES)
			continue; /* never touched: nothing to age, count or zap */
		pthread_mutex_lock(&p->reg[r].lock);
		if (p->ops.harvest_dirty)
			apply_dirty(p, r * MM_REGION_PAGES, MM_REGION_PAGES, !dirty_ok);
		scan_region(p, a, r, ph, hist);
		if (reprotect)
			mm_access_reprotect(p, r * MM_REGION_PAGES, MM_REGION_PAGES);
		mm_region_unlock(p, r);
	}
	dirty = a->dirty_total;
	refault = __atomic_load_n(&p->st.refault_ns, __ATOMIC_RELAXED);
	pthread_mutex_lock(&a->lock);
	a->k = k;
	windows(p, a, now);
	memcpy(a->wss.idle_hist, hist, sizeof(hist));
	a->wss.scans = k;
	a->wss.interval_ms = a->eff_ns / 1000000;
	a->wss.sample_pages = a->phase_pages[ph];
	a->wss.dirty_tracked = p->ops.harvest_dirty != NULL;
	if (dt) {
		a->wss.write_pages_per_s = (dirty - a->last_dirty) * 1000000000ULL / dt;
	}
	a->wss.refault_permille = refault_permille(a, k, now, refault);
	pthread_mutex_unlock(&a->lock);
	a->last_dirty = dirty;
	MM_STAT_ADD(p, scans, 1);
}

/* Sleep until `until` (monotonic ns) or stop; false when stopping. */
static bool sleep_until(struct mm_access *a, uint64_t until)
{
	struct timespec ts = {.tv_sec = (time_t)(until / 1000000000ULL),
			      .tv_nsec = (long)(until % 1000000000ULL)};
	bool stop;

	pthread_mutex_lock(&a->lock);
	while (!a->stop && mm_now_ns() < until)
		if (pthread_cond_timedwait(&a->cond, &a->lock, &ts) == ETIMEDOUT)
			break;
	stop = a->stop;
	pthread_mutex_unlock(&a->lock);
	return !stop;
}

/*
 * Scan each interval; stretch the interval when sampling costs more than its budget.
 * The cost is the scan's CPU plus the time the guest waited on faults of the pages it
 * zapped: where those are slow (a busy host, nested KVM: 10-100x), an interval fixed in
 * wall time would zap hot pages again before the guest got round to touching them, and
 * they would age as if idle. Stretching keeps ages honest and the overhead bounded.
 */
static void *scanner_main(void *arg)
{
	struct mm_pager *p = arg;
	struct mm_access *a = p->acc;
	uint64_t next = mm_now_ns() + a->interval_ns;
	uint64_t waited = __atomic_load_n(&p->st.sample_ns, __ATOMIC_RELAXED);

	while (sleep_until(a, next)) {
		uint64_t c0 = mm_thread_cpu_ns(), cpu, need, w;

		pthread_mutex_lock(&a->scanning);
		if (!atomic_load(&p->frozen)) /* a frozen guest touches nothing: no ageing */
			scan(p, a);
		pthread_mutex_unlock(&a->scanning);
		cpu = mm_thread_cpu_ns() - c0;
		MM_STAT_ADD(p, scan_cpu_ns, cpu);
		w = __atomic_load_n(&p->st.sample_ns, __ATOMIC_RELAXED);
		need = (cpu + w - waited) * 100 / a->budget_pct;
		waited = w;
		a->eff_ns = need > a->interval_ns ? need : a->interval_ns;
		if (p->o.mem_auto && a->k > 1) /* its swap writes are not the scanner's budget */
			a->auto_age = mm_proactive_step(p, a->wss.refault_permille, a->auto_age);
		pthread_mutex_lock(&a->lock);
		a->wss.scan_cpu_permille = cpu * 1000 / a->eff_ns;
		a->wss.auto_min_age = p->o.mem_auto ? a->auto_age : 0;
		pthread_mutex_unlock(&a->lock);
		next += a->eff_ns;
		if (next < mm_now_ns())
			next = mm_now_ns() +
			       a->eff_ns / 2; /* fell behind: do not catch up in a burst */
	}
	return NULL;
}

static uint64_t pow2_at_least(uint64_t v)
{
	uint64_t s = 1;

	while (s < v)
		s <<= 1;
	return s;
}

static int setup(struct mm_pager *p, struct mm_access *a)
{
	uint64_t nblocks = p->npages / ACC_BLOCK, rate = p->o.scan_rate;

	if (!rate)
		rate = p->npages / 64;
	a->stride = pow2_at_least(rate ? (p->npages + rate - 1) / rate : 1);
	while (a->stride > nblocks && a->stride > 1)
		a->stride >>= 1; /* every phase keeps at least one block */
	a->interval_ns = (uint64_t)(p->o.scan_interval_ms ? p->o.scan_interval_ms : 1000) * 1000000;
	a->eff_ns = a->interval_ns;
	a->budget_pct = p->o.scan_cpu_pct ? p->o.scan_cpu_pct : 2;
	a->tick_ns = calloc(a->stride, sizeof(uint64_t));
	a->seen = calloc(a->stride, sizeof(uint64_t));
	a->phase_pages = calloc(a->stride, sizeof(uint64_t));
	if (!a->tick_ns || !a->seen || !a->phase_pages)
		return -ENOMEM;
	for (uint64_t b = 0; b < nblocks; b++)
		a->phase_pages[b % a->stride] += ACC_BLOCK;
	return 0;
}

int mm_access_start(struct mm_pager *p)
{
	bool sampling = p->o.scan_interval_ms || p->o.mem_auto;
	pthread_condattr_t ca;
	struct mm_access *a;
	int err = -ENOMEM;

	if (!sampling && !p->ops.harvest_dirty)
		return 0;
	if (p->o.scan_cpu_pct > 100 || p->o.auto_target_pct > 100)
		return -EINVAL;
	a = p->acc = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->words = (p->npages + 63) / 64;
	a->dirty = calloc(a->words, 8);
	a->hbuf = calloc(a->words, 8);
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->scanning, NULL);
	pthread_mutex_init(&a->dlock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (!a->dirty || !a->hbuf)
		return err;
	if (!sampling)
		return 0;
	err = setup(p, a);
	if (err < 0)
		return err;
	p->sampling = true;
	if (pthread_create(&a->tid, NULL, scanner_main, p) != 0)
		return -EAGAIN;
	pthread_setname_np(a->tid, "ufvm-sampler");
	a->started = true;
	return 0;
}

void mm_access_quiesce(struct mm_pager *p)
{
	if (!p->acc)
		return;
	pthread_mutex_lock(&p->acc->scanning); /* a scan under way ends; the next sees frozen */
	pthread_mutex_unlock(&p->acc->scanning);
}

/* Stop the scanner (before the fault threads: a scan's zaps need them). */
void mm_access_stop(struct mm_pager *p)
{
	struct mm_access *a = p->acc;

	if (!a || !a->started)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->tid, NULL);
	a->started = false;
}

/* After every pager thread is gone. */
void mm_access_free(struct mm_pager *p)
{
	struct mm_access *a = p->acc;

	if (!a)
		return;
	free(a->tick_ns);
	free(a->seen);
	free(a->phase_pages);
	free(a->dirty);
	free(a->hbuf);
	free(a);
	p->acc = NULL;
	p->sampling = false;
}

int mm_pager_wss(struct mm_pager *p, struct mm_wss *w)
{
	struct mm_access *a = p->acc;

	if (!p->sampling)
		return -ENOTSUP;
	pthread_mutex_lock(&a->lock);
	*w = a->wss;
	pthread_mutex_unlock(&a->lock);
	if (atomic_load(&p->frozen)) { /* no scans now: a window inside the freeze saw nothing */
		uint64_t since = mm_now_ns() - __atomic_load_n(&p->frozen_ns, __ATOMIC_RELAXED);

		for (unsigned i = 0; i < MM_WSS_WINDOWS; i++)
			if (since >= w->window_s[i] * 1000000000ULL) {
				w->window_pages[i] = 0;
				w->window_covered_ms[i] = w->window_s[i] * 1000;
			}
	}
	return 0;
}
