/* reclaim.c: the memory limit: a clock over the page-state table, zap-before-writeback eviction */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mm/mm.h"

/*
 * Reclaim state machine (separate from the page states). The clock hand walks
 * 2 MiB regions, downward (reclaim_run says why); in each, under the region lock:
 *
 *   RESIDENT, YOUNG --clear_young (the bit only)--> RESIDENT, not YOUNG: kept
 *   RESIDENT, not YOUNG --> victim (mapped in by no fault since the hand passed)
 *   UNMAPPED (zapped by the sampler, untouched since) --> victim
 *
 * YOUNG is set by every fault that maps a page (first touch, swap-in, the minor
 * fault of a page the sampler zapped), so a page in use gets its second chance
 * without a test of its own. The clock does not zap to test: on these hosts a
 * zapped page the guest touches again costs a fault round trip, as much as a
 * swap-in, so testing cost more than it saved (side by side, medians of 7:
 * random 9.7 -> 7.8 s, hot/cold 1.26 -> 1.07 s, sequential 2.45 -> 2.12 s
 * without the zap). Access sampling (access.c) is the finer young test, and
 * coldest-first reclaim uses its ages when it runs.
 *
 * After two revolutions without progress every resident page is a victim
 * (force); after three, or at the first write that fails (a full or failing
 * swap file), reclaim declares itself stalled and the limit is lifted until a
 * write succeeds again, so a full swap device never hangs a vCPU.
 *
 * Eviction of the victims (zap-before-writeback, see mm/README.md):
 *   1. they are UNMAPPED: no PTE in the VMM, so (through the kernel's MMU
 *      notifier) none in KVM; any access now faults into the uffd, and the
 *      fault waits: its region is locked for the whole of steps 1-4;
 *   2. mark WRITEBACK; clean pages (a valid swap copy) skip the write;
 *   3. write from the pager's own unregistered view of the memfd, so the
 *      content written is the content at the zap, with no later write lost;
 *   4. on success punch the memfd page out (fallocate PUNCH_HOLE) -> SWAPPED;
 *      on failure -> UNMAPPED again: the page stays resident.
 */

void mm_reclaim_kick(struct mm_pager *p)
{
	uint64_t one = 1;

	if (write(p->rc_efd, &one, sizeof(one)) < 0) {
		/* saturated: a kick is pending */
	}
}

static void zap(struct mm_pager *p, uint64_t pfn, uint64_t n)
{
	if (!n)
		return;
	madvise(p->mem->hva + pfn * MM_PAGE, n * MM_PAGE, MADV_DONTNEED);
	MM_STAT_ADD(p, zapped_pages, n);
}

/* Give slots to the dirty WRITEBACK pages in runs; pages with none go back. */
static unsigned build_writes(struct mm_pager *p, uint64_t base, unsigned npg, const uint8_t *vic,
			     struct swap_io *ios)
{
	unsigned nio = 0;

	pthread_mutex_lock(&p->swap_lock);
	for (unsigned i = 0; i < npg;) {
		struct pst_entry *e = &p->pst.e[base + i];
		unsigned run = 0;
		int64_t slot;

		if (vic[i] != MM_VIC_EVICT || (e->flags & PST_F_SLOT)) {
			i++;
			continue;
		}
		while (i + run < npg && vic[i + run] == MM_VIC_EVICT &&
		       !(p->pst.e[base + i + run].flags & PST_F_SLOT))
			run++;
		slot = swap_slot_alloc_run(p->swap, run);
		if (slot < 0) {
			run = 1;
			slot = swap_slot_alloc(p->swap);
		}
		if (slot < 0) {
			pthread_mutex_unlock(&p->swap_lock);
			mm_warn_once(p, &p->warned_full,
				     "ufvm: %s: no free slot (pages stay resident)", p->swap_name);
			pthread_mutex_lock(&p->swap_lock);
			i += run;
			continue;
		}
		for (unsigned j = 0; j < run; j++) {
			p->pst.e[base + i + j].slot = (uint32_t)slot + j;
			p->pst.e[base + i + j].flags |= PST_F_SLOT;
		}
		ios[nio++] = (struct swap_io){.slot = (uint64_t)slot,
					      .npages = run,
					      .buf = p->alias + (base + i) * MM_PAGE,
					      .pfn = base + i};
		i += run;
	}
	pthread_mutex_unlock(&p->swap_lock);
	return nio;
}

static void write_failed(struct mm_pager *p, struct swap_io *io, int err)
{
	uint64_t pfn = (uint64_t)((uint8_t *)io->buf - p->alias) / MM_PAGE;

	for (uint64_t i = pfn; i < pfn + io->npages; i++)
		mm_slot_free(p, &p->pst.e[i]);
	MM_STAT_ADD(p, write_errors, io->npages);
	mm_warn_once(p, &p->warned_write,
		     "ufvm: %s: write failed: %s%s%s (page stays resident; further "
		     "errors are only counted)",
		     p->swap_name, strerror(-err), *p->write_why ? ": " : "", p->write_why);
}

unsigned mm_evict_prepare(struct mm_pager *p, uint64_t base, unsigned npg, uint8_t *vic,
			  struct swap_io *ios, bool drop_zero, int *err)
{
	uint64_t clean = 0;
	int open_err;

	mm_access_sync_dirty(p, base, npg); /* after the zap: every earlier write is logged */
	mm_wp_sync(p, base, npg);	    /* ... and shows in the PTEs (wp.c) */
	uint64_t ra_miss = 0;

	for (unsigned i = 0; i < npg; i++) {
		if (!vic[i])
			continue;
		ra_miss += !!(p->pst.e[base + i].flags & PST_F_RA);
		/* A page to write that holds only zeros (a zero-filled chunk the guest never
		 * wrote, a page it cleared): nothing to keep, so no write and no slot; it goes
		 * back to NEW in mm_evict_finish and its next touch is a zero fill. Zapped and
		 * locked, so no write can land while it is read. A clean page (valid slot)
		 * is dropped without a write anyway; freeing its slot here would wait for
		 * swap_lock, which a whole-VM swap-out's writer holds. */
		if (drop_zero && !(p->pst.e[base + i].flags & PST_F_SLOT) &&
		    mm_page_is_zero(p->alias + (base + i) * MM_PAGE)) {
			vic[i] = MM_VIC_ZERO;
			continue;
		}
		mm_page_set(p, base + i, PST_WRITEBACK);
		clean += !!(p->pst.e[base + i].flags & PST_F_SLOT);
	}
	if (ra_miss)
		mm_ra_feedback(p, 0, ra_miss);
	pthread_mutex_lock(&p->swap_lock);
	open_err = mm_swap_ensure_locked(p);
	pthread_mutex_unlock(&p->swap_lock);
	if (open_err < 0) {
		mm_warn_once(p, &p->warned_open, "ufvm: %s: cannot open: %s (pages stay resident)",
			     p->swap_name, strerror(-open_err));
		if (!*err)
			*err = open_err;
	}
	MM_STAT_ADD(p, clean_drops, clean);
	return open_err < 0 ? 0 : build_writes(p, base, npg, vic, ios);
}

/* The victims mm_evict_prepare found all zeros (still UNMAPPED): punched out of the memfd
 * and back to NEW. If the punch fails they stay UNMAPPED, resident, as after a failed write. */
static uint64_t drop_zeros(struct mm_pager *p, uint64_t base, unsigned npg, const uint8_t *vic)
{
	uint64_t dropped = 0;

	for (unsigned i = 0, run = 0; i <= npg; i++) {
		if (i < npg && vic[i] == MM_VIC_ZERO) {
			run++;
			continue;
		}
		if (run &&
		    fallocate(p->mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)((base + i - run) * MM_PAGE), (off_t)(run * MM_PAGE)) == 0) {
			for (uint64_t j = base + i - run; j < base + i; j++)
				mm_page_set(p, j, PST_NEW);
			dropped += run;
		}
		run = 0;
	}
	MM_STAT_ADD(p, zero_drops, dropped);
	return dropped;
}

uint64_t mm_evict_finish(struct mm_pager *p, uint64_t base, unsigned npg, const uint8_t *vic,
			 struct swap_io *ios, unsigned nio, int *err)
{
	uint64_t freed = 0, written = 0;

	for (unsigned k = 0; k < nio; k++) {
		if (ios[k].res < 0) {
			write_failed(p, &ios[k], ios[k].res);
			if (!*err)
				*err = ios[k].res;
		} else {
			written += ios[k].npages;
		}
	}
	for (unsigned i = 0, run = 0; i <= npg; i++) {
		struct pst_entry *e = i < npg ? &p->pst.e[base + i] : NULL;

		if (e && vic[i] == MM_VIC_EVICT && (e->flags & PST_F_SLOT)) {
			e->flags &= (uint8_t)~PST_F_DIRTY;
			run++;
			continue;
		}
		if (e && vic[i] == MM_VIC_EVICT)
			mm_page_set(p, base + i, PST_UNMAPPED); /* no slot or write failed */
		if (!run)
			continue;
		if (fallocate(p->mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)((base + i - run) * MM_PAGE), (off_t)(run * MM_PAGE)) == 0) {
			for (uint64_t j = base + i - run; j < base + i; j++)
				mm_page_set(p, j, PST_SWAPPED);
			freed += run;
		} else {
			for (uint64_t j = base + i - run; j < base + i; j++)
				mm_page_set(p, j, PST_UNMAPPED); /* clean, keeps its slot */
		}
		run = 0;
	}
	MM_STAT_ADD(p, swapout_pages, written);
	MM_STAT_ADD(p, swapout_bytes, written * MM_PAGE);
	return freed + drop_zeros(p, base, npg, vic);
}

/* Steps 2-4 for the victims vic[] of pages [base, base+npg) (all UNMAPPED, locks held). */
uint64_t mm_evict(struct mm_pager *p, uint64_t base, unsigned npg, uint8_t *vic, int *err)
{
	unsigned nio = mm_evict_prepare(p, base, npg, vic, p->rc_ios, true, err);

	if (nio)
		mm_swap_write(p, p->rc_ios, nio);
	return mm_evict_finish(p, base, npg, vic, p->rc_ios, nio, err);
}

bool mm_evict_zap(struct mm_pager *p, uint64_t r0, unsigned nreg, bool force, uint8_t *vic)
{
	uint64_t base = r0 * MM_REGION_PAGES, run = 0;
	unsigned npg = nreg * MM_REGION_PAGES;
	bool any = false;

	mm_access_apply_dirty(p, base, npg); /* written since the last harvest: young */
	for (unsigned i = 0; i <= npg; i++) {
		struct pst_entry *e = i < npg ? &p->pst.e[base + i] : NULL;

		if (e) {
			/* second chance for a page mapped since the hand last came by:
			 * clear_young without a zap (a zap's refault costs a round trip) */
			bool young = e->state == PST_RESIDENT && (e->flags & PST_F_YOUNG) && !force;

			if (young)
				e->flags &= (uint8_t)~PST_F_YOUNG;
			vic[i] = e->state == PST_UNMAPPED || (e->state == PST_RESIDENT && !young);
			any |= vic[i];
		}
		if (e && e->state == PST_RESIDENT && vic[i]) { /* step 1 for a mapped victim */
			mm_page_set(p, base + i, PST_UNMAPPED);
			e->flags &= (uint8_t)~PST_F_YOUNG;
			run++;
			continue;
		}
		if (e && e->state == PST_UNMAPPED) {
			/* Zapped already; zapping victims again costs nothing extra
			 * (same madvise run) and keeps step 1 true whatever happened. */
			if (!p->sampling && e->age < UINT8_MAX) /* else the scanner ages pages */
				e->age++;
			run++;
			continue;
		}
		zap(p, base + i - run, run);
		run = 0;
	}
	mm_access_reprotect(p, base, npg); /* the young bits are used up: watch for new writes */
	MM_STAT_ADD(p, reclaim_scanned, npg);
	return any;
}

uint64_t mm_evict_regions(struct mm_pager *p, uint64_t r0, unsigned nreg, bool force, int *err)
{
	if (!mm_evict_zap(p, r0, nreg, force, p->rc_vic))
		return 0;
	return mm_evict(p, r0 * MM_REGION_PAGES, nreg * MM_REGION_PAGES, p->rc_vic, err);
}

/* Stalled lifts the limit (faults get room without reclaim); either way deferred faults
 * must look again. */
static void set_stalled(struct mm_pager *p, bool stalled)
{
	atomic_store(&p->stalled, stalled);
	mm_wake_faults(p);
}

/*
 * The hand walks down, from high addresses to low. Guests sweep memory upward (memset,
 * memcpy, a decompressor, relocations, sequential scans), and a hand moving the same
 * way settles just ahead of the sweep: it takes each region shortly before the guest
 * gets there, the loop larger than memory that defeats any LRU. tools/pagetrace.py
 * showed it in a Linux boot under a limit: two thirds of the swap-ins came within a
 * second of their eviction. Walking down, the hand crosses a sweep instead of riding
 * it: in the same benchmark (bench/README.md) swap-ins fell from 18-20k to 16k, writes
 * from 27-28k to 24-25k, and the unikernel workloads did not move.
 */
static void reclaim_run(struct mm_pager *p)
{
	uint64_t idle = 0, freed, c0 = mm_thread_cpu_ns();
	int err = 0;

	pthread_mutex_lock(&p->evict_lock);
	MM_STAT_ADD(p, reclaim_runs, 1);
	mm_access_harvest(p); /* what KVM logged since the last scan, for the hand */
	/* With access sampling, the longest-idle pages go first; the clock does the rest. */
	if (p->sampling && p->resident > p->low &&
	    mm_reclaim_coldest(p, p->resident - p->low, 1, false, &err))
		set_stalled(p, false);
	while (!err && p->resident > p->low && idle < 3 * p->nregions && !atomic_load(&p->stop)) {
		uint64_t r = p->hand;

		p->hand = (p->hand + p->nregions - 1) % p->nregions; /* downward: see above */
		idle++;
		if (!p->reg[r].nres)
			continue;
		pthread_mutex_lock(&p->reg[r].lock);
		freed = mm_evict_regions(p, r, 1, idle > 2 * p->nregions, &err);
		mm_region_unlock(p, r);
		if (freed) {
			idle = 0;
			set_stalled(p, false);
		}
	}
	/* Three revolutions without progress, or a write that failed (the swap file is
	 * full or failing: re-zapping and re-writing every region would be in vain): lift
	 * the limit, so no vCPU hangs, until reclaim_main's back-off retries. */
	if (err || idle >= 3 * p->nregions)
		set_stalled(p, true);
	pthread_mutex_unlock(&p->evict_lock);
	MM_STAT_ADD(p, reclaim_cpu_ns, mm_thread_cpu_ns() - c0);
}

static void *reclaim_main(void *arg)
{
	struct mm_pager *p = arg;
	uint64_t v, last_stalled = 0, backoff = 100000000ULL;
	int mode;

	while (!atomic_load(&p->stop)) {
		struct pollfd pf = {.fd = p->rc_efd, .events = POLLIN};

		poll(&pf, 1, 100);
		if (pf.revents && read(p->rc_efd, &v, sizeof(v)) < 0) {
			/* spurious */
		}
		mode = __atomic_exchange_n(&p->rc_swapout, -1, __ATOMIC_ACQ_REL);
		if (mode >= 0)
			mm_pager_swapout_all(p, (enum mm_swapin_mode)mode);
		if (!p->limit_pages || p->resident <= p->high)
			continue;
		/* While stalled (swap full or failing), retry after 0.1 s, doubling to 3.2 s. */
		if (atomic_load(&p->stalled) && mm_now_ns() - last_stalled < backoff)
			continue;
		reclaim_run(p);
		if (atomic_load(&p->stalled)) {
			if (last_stalled && backoff < 3200000000ULL)
				backoff *= 2;
			last_stalled = mm_now_ns();
		} else {
			last_stalled = 0;
			backoff = 100000000ULL;
		}
	}
	return NULL;
}

void mm_pager_request_swapout(struct mm_pager *p, enum mm_swapin_mode mode)
{
	__atomic_store_n(&p->rc_swapout, (int)mode, __ATOMIC_RELEASE);
	mm_reclaim_kick(p);
}

/*
 * Start the reclaim thread unless it runs already; not from a signal handler.
 * It starts with the pager when there is a limit, else at the first limit set
 * at run time or the first swap-out request (a fault thread watches rc_efd for
 * requests made from a signal handler): a run that needs none pays for no thread.
 */
int mm_reclaim_ensure(struct mm_pager *p)
{
	int err = 0;

	if (atomic_load(&p->reclaim_started))
		return 0;
	pthread_mutex_lock(&p->rc_lock);
	if (!atomic_load(&p->reclaim_started) && !atomic_load(&p->stop)) {
		if (pthread_create(&p->reclaim_tid, NULL, reclaim_main, p) == 0) {
			pthread_setname_np(p->reclaim_tid, "ufvm-reclaim");
			atomic_store(&p->reclaim_started, true);
		} else
			err = -EAGAIN;
	}
	pthread_mutex_unlock(&p->rc_lock);
	return err;
}

int mm_reclaim_start(struct mm_pager *p)
{
	return p->limit_pages ? mm_reclaim_ensure(p) : 0;
}

void mm_reclaim_stop(struct mm_pager *p)
{
	pthread_mutex_lock(&p->rc_lock); /* no mm_reclaim_ensure starts one after this */
	atomic_store(&p->stop, true);
	pthread_mutex_unlock(&p->rc_lock);
	if (atomic_load(&p->reclaim_started)) {
		mm_reclaim_kick(p);
		pthread_join(p->reclaim_tid, NULL);
	}
	atomic_store(&p->reclaim_started, false);
}
