/* resolve.c: a fault resolved by its page's state: zero-fill, minor, swap-in with readahead */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "mm/mm.h"

static uint8_t *zeros; /* MM_REGION_PAGES pages of zeros: the source of zero-fill */

int mm_resolve_init(void)
{
	if (!zeros) {
		zeros = mmap(NULL, MM_REGION_PAGES * MM_PAGE, PROT_READ,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (zeros == MAP_FAILED) {
			zeros = NULL;
			return -errno;
		}
	}
	return 0;
}

/*
 * Take up to `want` pages of the limit's room for a resolution about to map them:
 * how many (0 when there is no room), with *held what must be given back once they
 * are accounted as resident (budget_give). Reservations make the check and the
 * mapping one step for concurrent fault threads. No limit (or a whole-VM swap in
 * progress, or reclaim stalled): all of `want`, nothing held.
 */
static uint64_t budget_take(struct mm_pager *p, uint64_t want, uint64_t *held)
{
	uint64_t cur = atomic_load(&p->reserved), take, used;

	*held = 0;
	if (!p->limit_pages || p->pausing || p->stalled)
		return want;
	do {
		used = p->resident + cur;
		if (used >= p->limit_pages)
			return 0;
		take = p->limit_pages - used < want ? p->limit_pages - used : want;
	} while (!atomic_compare_exchange_weak(&p->reserved, &cur, cur + take));
	*held = take;
	return take;
}

static void budget_give(struct mm_pager *p, uint64_t held)
{
	if (held)
		atomic_fetch_sub(&p->reserved, held);
}

static bool all_new(struct mm_pager *p, uint64_t start, uint64_t n)
{
	if (n == MM_REGION_PAGES)
		return p->reg[start / MM_REGION_PAGES].nnew == MM_REGION_PAGES;
	for (uint64_t i = start; i < start + n; i++)
		if (p->pst.e[i].state != PST_NEW)
			return false;
	return true;
}

/* Map-in bookkeeping; `touched` is the page the guest faulted on. Its neighbours in a
 * chunk or a readahead window are YOUNG (reclaim gives them their first chance) but not
 * SEEN: the working set counts only pages the guest was seen to use. */
void mm_set_resident(struct mm_pager *p, uint64_t pfn, uint64_t touched)
{
	struct pst_entry *e = &p->pst.e[pfn];

	if (e->state != PST_RESIDENT) {
		if (!mm_page_set(p, pfn, PST_RESIDENT))
			return;
		e->flags &= (uint8_t)~PST_F_WRITTEN; /* a report from before its zap: stale */
	}
	if (pfn == touched)
		mm_access_touch(p, pfn);
	/* Mapped writable: the swap copy goes stale, unless the dirty log or the
	 * write-protect tracking (wp.c) will tell when it does. */
	if (!mm_clean_tracked(p) || !(e->flags & PST_F_SLOT)) {
		mm_slot_free(p, e);
		e->flags |= PST_F_DIRTY;
	}
	e->flags |= PST_F_YOUNG;
	e->age = 0;
}

/* Map [pfn, pfn+n) (all with the same `wp`): 0, or an error with *mapped pages done. */
static int map_run(struct mm_pager *p, uint64_t pfn, uint64_t n, bool wp, uint64_t *mapped)
{
	uint64_t done = 0, i;
	int rc = uffd_continue(&p->uffd, p->mem->hva + pfn * MM_PAGE, n * MM_PAGE, wp, &done);

	/* EEXIST: some page is already mapped; map the rest one by one. */
	for (i = pfn + done / MM_PAGE; rc == UFFD_EXISTS && i < pfn + n; i++) {
		rc = uffd_continue(&p->uffd, p->mem->hva + i * MM_PAGE, MM_PAGE, wp, &done);
		if (rc == UFFD_EXISTS || rc == UFFD_OK)
			rc = i + 1 < pfn + n ? UFFD_EXISTS : UFFD_OK;
		else
			break;
	}
	if (rc == UFFD_OK || rc == UFFD_EXISTS) {
		*mapped = n;
		return 0;
	}
	*mapped = (i > pfn ? i : pfn + done / MM_PAGE) - pfn;
	if (rc == UFFD_RETRY)
		return -EAGAIN;
	if (rc == UFFD_GONE)
		return -ESRCH;
	if (rc == UFFD_NOPAGE)
		return -ENOENT;
	return rc < 0 ? rc : -EIO;
}

static bool needs_wp(const struct mm_pager *p, uint64_t pfn)
{
	return p->wp && (p->pst.e[pfn].flags & PST_F_SLOT);
}

/*
 * Pages with a clean swap copy are mapped write-protected (wp.c), the others
 * writable: a protected page costs its first write a (kernel-resolved) fault.
 * A tracked page may have been written and zapped since it was last mapped:
 * mm_wp_sync settles that first, or the new protected mapping would hide it.
 */
int mm_map_run(struct mm_pager *p, uint64_t pfn, uint64_t n, uint64_t *mapped)
{
	uint64_t i = pfn, sub = 0;
	int err = 0;

	mm_wp_sync(p, pfn, n);
	*mapped = 0;
	while (i < pfn + n && !err) {
		uint64_t j = i + 1;
		bool wp = needs_wp(p, i);

		while (j < pfn + n && needs_wp(p, j) == wp)
			j++;
		err = map_run(p, i, j - i, wp, &sub);
		for (uint64_t k = i; wp && k < i + sub; k++)
			p->pst.e[k].flags |= PST_F_WP;
		*mapped += sub;
		i = j;
	}
	return err;
}

static int zero_fill(struct mm_pager *p, uint64_t start, uint64_t n, uint64_t touched)
{
	uint64_t done = 0;
	int rc =
	    uffd_copy(&p->uffd, p->mem->hva + start * MM_PAGE, zeros, n * MM_PAGE, false, &done);

	for (uint64_t i = start; i < start + done / MM_PAGE; i++)
		mm_set_resident(p, i, touched);
	if (rc == UFFD_EXISTS) {
		/* Content appeared behind our back (a write to the memfd): map it. */
		for (uint64_t i = start + done / MM_PAGE; i < start + n; i++) {
			rc = uffd_copy(&p->uffd, p->mem->hva + i * MM_PAGE, zeros, MM_PAGE, false,
				       &done);
			if (rc == UFFD_EXISTS) {
				int err = mm_map_run(p, i, 1, &done);

				/* only EAGAIN is worth a retry: a gone uffd or an I/O error
				 * must stop the VM, not defer the fault for ever */
				rc = err == 0	      ? UFFD_OK
				     : err == -EAGAIN ? UFFD_RETRY
				     : err == -ESRCH  ? UFFD_GONE
						      : err;
			}
			if (rc != UFFD_OK)
				break;
			mm_set_resident(p, i, touched);
		}
	}
	if (rc == UFFD_OK)
		return 0;
	if (rc == UFFD_RETRY)
		return -EAGAIN;
	return rc == UFFD_GONE ? -ESRCH : (rc < 0 ? rc : -EIO);
}

enum mm_resolved mm_resolve_new(struct mm_pager *p, uint64_t pfn)
{
	uint64_t held, room = budget_take(p, p->chunk_pages, &held), n = p->chunk_pages, start;
	int err;

	if (!room) {
		mm_reclaim_kick(p);
		return MM_DEFER;
	}
	for (;;) {
		start = pfn & ~(n - 1);
		if (n == 1 || (n <= room && all_new(p, start, n)))
			break;
		n >>= 1;
	}
	err = zero_fill(p, start, n, pfn);
	budget_give(p, held);
	if (err == -EAGAIN)
		return MM_DEFER; /* pages done so far are accounted; the rest on retry */
	if (err < 0) {
		mm_pager_die(p, "ufvm: pager: zero-fill of guest page 0x%llx failed: %s",
			     (unsigned long long)(pfn * MM_PAGE), strerror(-err));
		return MM_DONE;
	}
	MM_STAT_ADD(p, faults_missing, 1);
	MM_STAT_ADD(p, chunks, 1);
	MM_STAT_ADD(p, chunk_pages, n);
	uffd_wake(&p->uffd, p->mem->hva + start * MM_PAGE, n * MM_PAGE);
	return MM_DONE;
}

enum mm_resolved mm_resolve_minor(struct mm_pager *p, uint64_t pfn)
{
	uint64_t mapped;
	int err = mm_map_run(p, pfn, 1, &mapped);

	if (err == -EAGAIN)
		return MM_DEFER;
	if (err == -ENOENT) {
		/* The content was discarded (MADV_REMOVE, a punched hole): now zeros. */
		if (mm_page_set(p, pfn, PST_NEW))
			return mm_resolve_new(p, pfn);
		return MM_DONE;
	}
	if (err < 0) {
		mm_pager_die(p, "ufvm: pager: mapping guest page 0x%llx failed: %s",
			     (unsigned long long)(pfn * MM_PAGE), strerror(-err));
		return MM_DONE;
	}
	if (p->pst.e[pfn].flags & PST_F_RA) {
		p->pst.e[pfn].flags &= (uint8_t)~PST_F_RA;
		mm_ra_feedback(p, 1, 0);
		MM_STAT_ADD(p, readahead_hits, 1);
	}
	mm_set_resident(p, pfn, pfn);
	MM_STAT_ADD(p, faults_minor, 1);
	uffd_wake(&p->uffd, p->mem->hva + pfn * MM_PAGE, MM_PAGE);
	return MM_DONE;
}

/*
 * Swap-in readahead. A fault where the previous window ended is a stream: the
 * window doubles (up to readahead_max) and every page read is mapped. Any
 * other fault reads an aligned cluster around the page but maps only the page
 * itself: its neighbours wait UNMAPPED, clean (they keep their slot) and
 * marked PST_F_RA. A minor fault on one is a readahead hit; evicting one
 * untouched is a miss, and dropping it costs no write. The cluster size
 * (1..16 pages, shared) doubles while two thirds of it are used and halves
 * while less than half is, so uniform random access ends up reading single
 * pages. A wasted page costs a read and evicts a page the guest may want; a
 * used one saves a fault: below half used, the waste is what costs (a Linux
 * boot used 49% and so read a tenth more than it needed, bench/README.md).
 *
 * A hit still costs the guest a minor fault, a userfaultfd round trip. While
 * two thirds of the measured neighbours are used (ra_eager), three clusters
 * of four are mapped at once with their faulting page, like a stream's window:
 * their pages are young and, without clean tracking, dirty (an unused one
 * costs a write when it is evicted); the fourth is read as above and keeps
 * measuring. A zipf workload used about three quarters of its neighbours and
 * took one minor fault per hit (bench/README.md, the memory pool); a Linux
 * boot uses about half, where mapping them gained nothing.
 */
#define RA_CLUSTER_MAX 16

void mm_ra_feedback(struct mm_pager *p, uint64_t hits, uint64_t misses)
{
	uint64_t h = __atomic_add_fetch(&p->ra_hits, hits, __ATOMIC_RELAXED);
	uint64_t m = __atomic_add_fetch(&p->ra_misses, misses, __ATOMIC_RELAXED);
	unsigned c = p->ra_cluster;

	if (h + m < 64)
		return;
	__atomic_store_n(&p->ra_hits, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&p->ra_misses, 0, __ATOMIC_RELAXED);
	if (h >= 2 * m && c < RA_CLUSTER_MAX)
		p->ra_cluster = c * 2;
	else if (h < m && c > 1)
		p->ra_cluster = c / 2;
	p->ra_eager = h >= 2 * m;
}

/*
 * Every page the read brought into the memfd leaves SWAPPED here, mapped or not:
 * after a failed CONTINUE (-EAGAIN) the rest wait UNMAPPED and a minor fault maps
 * them. Leaving them SWAPPED once left pages in the memfd that the limit did not
 * count, found later as strays holding their own swap copy (30-350 a run).
 */
static int map_swapped_in(struct mm_pager *p, uint64_t start, uint64_t end, uint64_t pfn, bool all)
{
	uint64_t mapped;
	int err = 0;

	for (uint64_t i = start, run = 0; i <= end; i++) {
		bool take = i < end && p->pst.e[i].state == PST_SWAPPED;

		if (take) {
			mm_page_set(p, i, PST_UNMAPPED); /* in the memfd, clean */
			if (!err && (all || i == pfn)) {
				run++;
				continue;
			}
			if (!all)
				p->pst.e[i].flags |= PST_F_RA;
		}
		if (!run)
			continue;
		err = mm_map_run(p, i - run, run, &mapped);
		for (uint64_t j = i - run; j < i - run + mapped; j++)
			mm_set_resident(p, j, pfn);
		run = 0;
	}
	return err;
}

enum mm_resolved mm_resolve_swapin(struct mm_fault_thread *ft, uint64_t pfn)
{
	struct mm_pager *p = ft->p;
	uint64_t room, held, start, end, got = 0, rend, win;
	bool stream = pfn == ft->ra_next, eager = stream;
	int err;

	if (stream) {
		win = ft->ra_win * 2 > p->ra_max ? p->ra_max : ft->ra_win * 2;
		start = pfn;
	} else {
		win = p->ra_cluster < p->ra_max ? p->ra_cluster : p->ra_max;
		start = pfn & ~(win - 1);
		eager = win > 1 && p->ra_eager && (atomic_fetch_add(&p->ra_seq, 1) & 3);
	}
	room = budget_take(p, win, &held);
	if (!room) {
		mm_reclaim_kick(p);
		return MM_DEFER;
	}
	if (win > room)
		start = pfn, win = room;
	ft->ra_win = win;
	rend = (pfn / MM_REGION_PAGES + 1) * MM_REGION_PAGES;
	end = start + win > rend ? rend : start + win;
	if (end <= pfn)
		end = pfn + 1;
	err = mm_swapin_range(p, ft->ios, start, end - start, NULL, &got);
	if (err < 0) {
		budget_give(p, held);
		mm_pager_die(p, "ufvm: %s: read of guest page 0x%llx failed: %s (VM stopped)",
			     p->swap_name, (unsigned long long)(pfn * MM_PAGE), strerror(-err));
		return MM_DONE;
	}
	err = map_swapped_in(p, start, end, pfn, eager);
	budget_give(p, held); /* read pages are in the memfd now: counted as resident */
	if (err == -EAGAIN)
		return MM_DEFER;
	if (err < 0) {
		mm_pager_die(p, "ufvm: pager: mapping guest page 0x%llx failed: %s",
			     (unsigned long long)(pfn * MM_PAGE), strerror(-err));
		return MM_DONE;
	}
	ft->ra_next = end;
	MM_STAT_ADD(p, faults_swapin, 1);
	MM_STAT_ADD(p, readahead_pages, got ? got - 1 : 0);
	if (stream)
		MM_STAT_ADD(p, readahead_stream_pages, got ? got - 1 : 0);
	else if (eager)
		MM_STAT_ADD(p, readahead_eager_pages, got ? got - 1 : 0);
	uffd_wake(&p->uffd, p->mem->hva + start * MM_PAGE, (end - start) * MM_PAGE);
	return MM_DONE;
}
