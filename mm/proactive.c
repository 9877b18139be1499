/* proactive.c: coldest-first reclaim, the run-time memory limit, and --mem-limit auto */
#include <errno.h>
#include <sys/mman.h>

#include "mm/mm.h"

/*
 * Reclaim by idle age. With access sampling every page in memory carries its
 * idle age in scan intervals (access.c); without it, in reclaim revolutions.
 * Victims are taken in passes of falling age (128, 64, ... 1, 0 intervals),
 * each pass a walk of the regions from the clock hand, so the longest-idle
 * pages leave first; only a forced pass takes pages that are mapped (RESIDENT).
 * Each region is evicted with the clock's own zap-before-writeback steps
 * (mm_evict), under its region lock and evict_lock.
 */
static const unsigned pass_age[] = {128, 64, 32, 16, 8, 4, 2, 1, 0};

/* Pick and zap up to want victims in region r (locked): idle >= min_age, or any with force. */
static uint64_t evict_idle(struct mm_pager *p, uint64_t r, unsigned min_age, bool force,
			   uint64_t want, int *err)
{
	uint64_t base = r * MM_REGION_PAGES, n = 0, run = 0;
	uint8_t *vic = p->rc_vic;

	for (unsigned i = 0; i <= MM_REGION_PAGES; i++) {
		struct pst_entry *e = i < MM_REGION_PAGES ? &p->pst.e[base + i] : NULL;

		if (e) {
			vic[i] =
			    n < want &&
			    ((e->state == PST_UNMAPPED && !(e->flags & PST_F_YOUNG) &&
			      e->age >= min_age) ||
			     (force && (e->state == PST_RESIDENT || e->state == PST_UNMAPPED)));
			n += vic[i];
			if (vic[i] && e->state == PST_RESIDENT) {
				mm_page_set(p, base + i, PST_UNMAPPED); /* clear_young */
				e->flags &= (uint8_t)~PST_F_YOUNG;
			}
		}
		if (e && vic[i]) {
			run++; /* step 1: zap every victim, whatever its state said */
			continue;
		}
		if (run) {
			madvise(p->mem->hva + (base + i - run) * MM_PAGE, run * MM_PAGE,
				MADV_DONTNEED);
			MM_STAT_ADD(p, zapped_pages, run);
		}
		run = 0;
	}
	MM_STAT_ADD(p, reclaim_scanned, MM_REGION_PAGES);
	return n ? mm_evict(p, base, MM_REGION_PAGES, vic, err) : 0;
}

uint64_t mm_reclaim_coldest(struct mm_pager *p, uint64_t want, unsigned min_age, bool force,
			    int *err)
{
	uint64_t freed = 0;
	unsigned npass = sizeof(pass_age) / sizeof(pass_age[0]);

	for (unsigned k = 0; k <= npass && freed < want && !*err && !mm_cancelled(p); k++) {
		bool f = k == npass;

		if ((f && !force) || (!f && pass_age[k] < min_age))
			continue;
		for (uint64_t i = 0; i < p->nregions && freed < want && !*err && !mm_cancelled(p);
		     i++) {
			uint64_t r = (p->hand + i) % p->nregions;

			if (!p->reg[r].nres)
				continue;
			pthread_mutex_lock(&p->reg[r].lock);
			freed += evict_idle(p, r, f ? 0 : pass_age[k], f, want - freed, err);
			mm_region_unlock(p, r);
		}
	}
	MM_STAT_ADD(p, coldest_pages, freed);
	return freed;
}

int mm_pager_reclaim(struct mm_pager *p, uint64_t npages, uint64_t *reclaimed)
{
	int err = 0;

	pthread_mutex_lock(&p->evict_lock);
	*reclaimed = npages ? mm_reclaim_coldest(p, npages, 0, true, &err) : 0;
	pthread_mutex_unlock(&p->evict_lock);
	if (*reclaimed)
		mm_wake_faults(p);
	return *reclaimed ? 0 : err;
}

int mm_pager_set_limit(struct mm_pager *p, uint64_t bytes)
{
	uint64_t lim = bytes / MM_PAGE, batch;

	if (bytes > p->mem->size || (bytes && bytes < (4ULL << 20)))
		return -EINVAL;
	batch = mm_reclaim_batch(lim);
	if (lim && mm_reclaim_ensure(p) < 0)
		return -EAGAIN;
	if (!lim) {
		__atomic_store_n(&p->limit_pages, 0, __ATOMIC_SEQ_CST);
	} else {
		/* marks first: a fault thread may see the new limit at once */
		__atomic_store_n(&p->low, lim - 2 * batch, __ATOMIC_SEQ_CST);
		__atomic_store_n(&p->high, lim - batch, __ATOMIC_SEQ_CST);
		__atomic_store_n(&p->limit_pages, lim, __ATOMIC_SEQ_CST);
	}
	atomic_store(&p->stalled, false);
	mm_reclaim_kick(p);
	mm_wake_faults(p); /* a raised limit lets deferred faults through */
	return 0;
}

/*
 * --mem-limit auto (TMO and DAMON-reclaim in spirit): at each scan, reclaim
 * the pages idle for at least `age` intervals, a bounded batch at a time.
 * The signal is the share of time spent serving refaults (swap-in faults):
 * above the target, hold back and only reclaim colder pages (age doubles);
 * well below it, creep back towards the configured idle threshold.
 * Returns the threshold for the next scan.
 */
unsigned mm_proactive_step(struct mm_pager *p, uint64_t refault_permille, unsigned age)
{
	unsigned floor = p->o.auto_min_age ? p->o.auto_min_age : 8;
	uint64_t target = (p->o.auto_target_pct ? p->o.auto_target_pct : 1) * 10ULL, quota, n;
	int err = 0;

	if (age < floor)
		age = floor;
	if (refault_permille > target) {
		MM_STAT_ADD(p, proactive_holds, 1);
		return age * 2 > UINT8_MAX ? UINT8_MAX : age * 2;
	}
	if (refault_permille * 2 < target && age > floor)
		age = age - (age - floor + 3) / 4;
	quota = p->resident / 8 > MM_REGION_PAGES ? p->resident / 8 : MM_REGION_PAGES;
	pthread_mutex_lock(&p->evict_lock);
	n = mm_reclaim_coldest(p, quota, age, false, &err);
	pthread_mutex_unlock(&p->evict_lock);
	if (n) {
		MM_STAT_ADD(p, proactive_pages, n);
		mm_wake_faults(p);
	}
	return age;
}

int mm_pager_pagemap(struct mm_pager *p, uint64_t first, uint64_t n, uint8_t *state, uint8_t *age)
{
	uint64_t end, pfn = first;

	if (__builtin_add_overflow(first, n, &end) || end > p->npages)
		return -EINVAL;
	while (pfn < end) {
		uint64_t r = pfn / MM_REGION_PAGES, stop = (r + 1) * MM_REGION_PAGES;

		stop = stop < end ? stop : end;
		pthread_mutex_lock(&p->reg[r].lock);
		mm_wp_sync(p, pfn, stop - pfn); /* DIRTY for what the guest wrote since */
		for (; pfn < stop; pfn++) {
			const struct pst_entry *e = &p->pst.e[pfn];
			uint8_t s = e->state;

			if (e->flags & PST_F_YOUNG)
				s |= MM_PAGEMAP_YOUNG;
			if ((e->flags & PST_F_DIRTY) || mm_access_page_dirty(p, pfn))
				s |= MM_PAGEMAP_DIRTY;
			state[pfn - first] = s;
			if (age)
				age[pfn - first] = e->age;
		}
		mm_region_unlock(p, r);
	}
	return 0;
}
