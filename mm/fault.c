/* fault.c: the fault service threads: drain the uffd, resolve by page state */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mm/mm.h"

/*
 * Fault service. Each thread polls the uffd and its own eventfd, and at every
 * wake-up first retries the faults it deferred, then drains the uffd
 * completely. A fault is resolved under the lock of its 2 MiB region, taken
 * with trylock only: a fault thread never blocks on anything another thread
 * may hold while waiting for the uffd to be read (reclaim zaps with
 * MADV_DONTNEED under a region lock, and with UFFD_FEATURE_EVENT_REMOVE that
 * madvise waits until a fault thread has read the REMOVE event). A fault that
 * finds its region busy, or no memory under the limit, is deferred and
 * retried when the region is unlocked or reclaim frees memory.
 *
 *   state at fault   resolution
 *   NEW              UFFDIO_COPY of zeros over the largest aligned block (up to
 *                    the chunk size) around it that is all NEW and fits the limit
 *   RESIDENT         UFFDIO_CONTINUE (zapped by someone else) - minor
 *   UNMAPPED         UFFDIO_CONTINUE - minor; the young test says "accessed"
 *                    (adjacent pages whose minor faults wait together: one range)
 *   SWAPPED          swap store read into the memfd, with readahead, then CONTINUE
 *   WRITEBACK        never seen: reclaim holds the region lock throughout
 */
enum { DONE, DEFER };

static uint8_t *zeros; /* MM_REGION_PAGES pages of zeros: the source of zero-fill */

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
static void set_resident(struct mm_pager *p, uint64_t pfn, uint64_t touched)
{
	struct pst_entry *e = &p->pst.e[pfn];

	if (e->state != PST_RESIDENT && !mm_page_set(p, pfn, PST_RESIDENT))
		return;
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
		set_resident(p, i, touched);
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
			set_resident(p, i, touched);
		}
	}
	if (rc == UFFD_OK)
		return 0;
	if (rc == UFFD_RETRY)
		return -EAGAIN;
	return rc == UFFD_GONE ? -ESRCH : (rc < 0 ? rc : -EIO);
}

static int resolve_new(struct mm_pager *p, uint64_t pfn)
{
	uint64_t held, room = budget_take(p, p->chunk_pages, &held), n = p->chunk_pages, start;
	int err;

	if (!room) {
		mm_reclaim_kick(p);
		return DEFER;
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
		return DEFER; /* pages done so far are accounted; the rest on retry */
	if (err < 0) {
		mm_pager_die(p, "ufvm: pager: zero-fill of guest page 0x%llx failed: %s",
			     (unsigned long long)(pfn * MM_PAGE), strerror(-err));
		return DONE;
	}
	MM_STAT_ADD(p, faults_missing, 1);
	MM_STAT_ADD(p, chunks, 1);
	MM_STAT_ADD(p, chunk_pages, n);
	uffd_wake(&p->uffd, p->mem->hva + start * MM_PAGE, n * MM_PAGE);
	return DONE;
}

static int resolve_minor(struct mm_pager *p, uint64_t pfn)
{
	uint64_t mapped;
	int err = mm_map_run(p, pfn, 1, &mapped);

	if (err == -EAGAIN)
		return DEFER;
	if (err == -ENOENT) {
		/* The content was discarded (MADV_REMOVE, a punched hole): now zeros. */
		if (mm_page_set(p, pfn, PST_NEW))
			return resolve_new(p, pfn);
		return DONE;
	}
	if (err < 0) {
		mm_pager_die(p, "ufvm: pager: mapping guest page 0x%llx failed: %s",
			     (unsigned long long)(pfn * MM_PAGE), strerror(-err));
		return DONE;
	}
	if (p->pst.e[pfn].flags & PST_F_RA) {
		p->pst.e[pfn].flags &= (uint8_t)~PST_F_RA;
		mm_ra_feedback(p, 1, 0);
		MM_STAT_ADD(p, readahead_hits, 1);
	}
	set_resident(p, pfn, pfn);
	MM_STAT_ADD(p, faults_minor, 1);
	uffd_wake(&p->uffd, p->mem->hva + pfn * MM_PAGE, MM_PAGE);
	return DONE;
}

/*
 * Swap-in readahead. A fault where the previous window ended is a stream: the
 * window doubles (up to readahead_max) and every page read is mapped. Any
 * other fault reads an aligned cluster around the page but maps only the page
 * itself: its neighbours wait UNMAPPED, clean (they keep their slot) and
 * marked PST_F_RA. A minor fault on one is a readahead hit; evicting one
 * untouched is a miss, and dropping it costs no write. The cluster size
 * (1..16 pages, shared) doubles while most readahead is used and halves while
 * little is, so uniform random access ends up reading single pages.
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
	if (h > m && c < RA_CLUSTER_MAX)
		p->ra_cluster = c * 2;
	else if (h * 4 < h + m && c > 1)
		p->ra_cluster = c / 2;
}

static int map_swapped_in(struct mm_pager *p, uint64_t start, uint64_t end, uint64_t pfn,
			  bool stream)
{
	uint64_t mapped;
	int err;

	for (uint64_t i = start, run = 0; i <= end; i++) {
		bool take = i < end && p->pst.e[i].state == PST_SWAPPED;

		if (take) {
			mm_page_set(p, i, PST_UNMAPPED); /* in the memfd, clean */
			if (stream || i == pfn) {
				run++;
				continue;
			}
			p->pst.e[i].flags |= PST_F_RA;
		}
		if (!run)
			continue;
		err = mm_map_run(p, i - run, run, &mapped);
		for (uint64_t j = i - run; j < i - run + mapped; j++)
			set_resident(p, j, pfn);
		if (err < 0)
			return err; /* -EAGAIN: the rest wait UNMAPPED, a minor fault maps them */
		run = 0;
	}
	return 0;
}

static int resolve_swapin(struct mm_fault_thread *ft, uint64_t pfn)
{
	struct mm_pager *p = ft->p;
	uint64_t room, held, start, end, got = 0, rend, win;
	bool stream = pfn == ft->ra_next;
	int err;

	if (stream) {
		win = ft->ra_win * 2 > p->ra_max ? p->ra_max : ft->ra_win * 2;
		start = pfn;
	} else {
		win = p->ra_cluster < p->ra_max ? p->ra_cluster : p->ra_max;
		start = pfn & ~(win - 1);
	}
	room = budget_take(p, win, &held);
	if (!room) {
		mm_reclaim_kick(p);
		return DEFER;
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
		mm_pager_die(
		    p, "ufvm: swap file %s: read of guest page 0x%llx failed: %s (VM stopped)",
		    p->swap_name, (unsigned long long)(pfn * MM_PAGE), strerror(-err));
		return DONE;
	}
	err = map_swapped_in(p, start, end, pfn, stream);
	budget_give(p, held); /* read pages are in the memfd now: counted as resident */
	if (err == -EAGAIN)
		return DEFER;
	if (err < 0) {
		mm_pager_die(p, "ufvm: pager: mapping guest page 0x%llx failed: %s",
			     (unsigned long long)(pfn * MM_PAGE), strerror(-err));
		return DONE;
	}
	ft->ra_next = end;
	MM_STAT_ADD(p, faults_swapin, 1);
	MM_STAT_ADD(p, readahead_pages, got ? got - 1 : 0);
	uffd_wake(&p->uffd, p->mem->hva + start * MM_PAGE, (end - start) * MM_PAGE);
	return DONE;
}

static void record_latency(struct mm_pager *p, uint64_t t0)
{
	uint64_t us = (mm_now_ns() - t0) / 1000;
	unsigned b = 0;

	while (us && b < MM_LAT_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	MM_STAT_ADD(p, fault_lat_us[b], 1);
}

static int handle_fault(struct mm_fault_thread *ft, const struct uffd_msg *m)
{
	struct mm_pager *p = ft->p;
	uint64_t addr = m->arg.pagefault.address & ~(MM_PAGE - 1), pfn, r, t0 = mm_now_ns();
	int rc = DONE, state;

	if (addr < (uintptr_t)p->mem->hva || addr >= (uintptr_t)p->mem->hva + p->mem->size)
		return DONE;
	pfn = (addr - (uintptr_t)p->mem->hva) / MM_PAGE;
	r = pfn / MM_REGION_PAGES;
	if (pthread_mutex_trylock(&p->reg[r].lock)) {
		atomic_store(&p->reg[r].want, 1);
		if (pthread_mutex_trylock(&p->reg[r].lock))
			return DEFER;
	}
	/* A MINOR fault can find the page SWAPPED: it was zapped, the fault was deferred
	 * while reclaim held the region, and reclaim evicted it meanwhile. */
	state = p->pst.e[pfn].state;
	switch (state) {
	case PST_NEW:
		rc = resolve_new(p, pfn);
		break;
	case PST_RESIDENT:
	case PST_UNMAPPED:
		rc = resolve_minor(p, pfn);
		break;
	case PST_SWAPPED:
		rc = resolve_swapin(ft, pfn);
		break;
	default:
		rc = DEFER;
	}
	mm_region_unlock(p, r);
	if (rc == DONE)
		record_latency(p, t0);
	if (rc == DONE && state == PST_SWAPPED)
		MM_STAT_ADD(p, refault_ns, mm_now_ns() - t0); /* --mem-limit auto's signal */
	if (p->limit_pages && p->resident > p->high)
		mm_reclaim_kick(p);
	return rc;
}

/*
 * UFFD_EVENT_REMOVE: someone ran MADV_DONTNEED/MADV_REMOVE on guest RAM; our
 * own zaps cause most of them. Nothing to do but read it (the madvise caller
 * waits for that): page states stay as they are, since a zapped RESIDENT page
 * comes back through a minor fault, and a removed one through resolve_minor's
 * "no page" case.
 */
static int handle_msg(struct mm_fault_thread *ft, const struct uffd_msg *m)
{
	if (atomic_load(&ft->p->dead))
		return DEFER; /* the VM is being stopped: leave vCPUs blocked */
	if (m->event == UFFD_EVENT_PAGEFAULT)
		return handle_fault(ft, m);
	if (m->event == UFFD_EVENT_REMOVE)
		MM_STAT_ADD(ft->p, remove_events, 1);
	return DONE;
}

static void defer(struct mm_fault_thread *ft, const struct uffd_msg *m)
{
	if (ft->ndeferred == ft->capdeferred) {
		unsigned cap = ft->capdeferred ? ft->capdeferred * 2 : 64;
		struct uffd_msg *n = realloc(ft->deferred, cap * sizeof(*n));

		if (!n) {
			mm_pager_die(ft->p, "ufvm: pager: out of memory deferring a fault");
			return;
		}
		ft->deferred = n;
		ft->capdeferred = cap;
	}
	ft->deferred[ft->ndeferred++] = *m;
	MM_STAT_ADD(ft->p, faults_deferred, 1);
}

/* A pending fault's page, or UINT64_MAX for anything but a minor fault on guest RAM. */
static uint64_t minor_pfn(const struct mm_pager *p, const struct uffd_msg *m)
{
	uint64_t a = m->arg.pagefault.address, base = (uintptr_t)p->mem->hva;

	if (m->event != UFFD_EVENT_PAGEFAULT ||
	    !(m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) || a < base ||
	    a >= base + p->mem->size)
		return UINT64_MAX;
	return (a - base) / MM_PAGE;
}

static int by_address(const void *a, const void *b)
{
	const struct uffd_msg *x = a, *y = b;
	uint64_t ax = x->event == UFFD_EVENT_PAGEFAULT ? x->arg.pagefault.address : 0;
	uint64_t ay = y->event == UFFD_EVENT_PAGEFAULT ? y->arg.pagefault.address : 0;

	return ax < ay ? -1 : ax > ay;
}

/*
 * Minor faults of neighbouring pages waiting together (vCPUs sweeping the same
 * memory after a sample's zap) are resolved with one UFFDIO_CONTINUE: msgs[i..i+k)
 * when they are k adjacent pages in one region, all RESIDENT or UNMAPPED and not
 * readahead. Returns how many messages it resolved; 0 leaves them to handle_msg.
 */
static int resolve_minor_batch(struct mm_fault_thread *ft, const struct uffd_msg *msgs, int i,
			       int n)
{
	struct mm_pager *p = ft->p;
	uint64_t pfn = minor_pfn(p, &msgs[i]), r, mapped = 0, t0 = mm_now_ns();
	int k = 1, ok = 1;

	if (pfn == UINT64_MAX || atomic_load(&p->dead))
		return 0;
	r = pfn / MM_REGION_PAGES;
	while (i + k < n && minor_pfn(p, &msgs[i + k]) == pfn + (uint64_t)k &&
	       (pfn + (uint64_t)k) / MM_REGION_PAGES == r)
		k++;
	if (k == 1 || pthread_mutex_trylock(&p->reg[r].lock))
		return 0;
	for (int j = 0; j < k && ok; j++) {
		const struct pst_entry *e = &p->pst.e[pfn + (uint64_t)j];

		ok = (e->state == PST_RESIDENT || e->state == PST_UNMAPPED) &&
		     !(e->flags & PST_F_RA);
	}
	if (ok && mm_map_run(p, pfn, (uint64_t)k, &mapped) == 0) {
		for (int j = 0; j < k; j++)
			set_resident(p, pfn + (uint64_t)j, pfn + (uint64_t)j);
	} else {
		ok = 0; /* whatever was mapped is EEXIST to the one-by-one path */
	}
	mm_region_unlock(p, r);
	if (!ok)
		return 0;
	MM_STAT_ADD(p, faults_minor, k);
	MM_STAT_ADD(p, minor_batched, k);
	for (int j = 0; j < k; j++)
		record_latency(p, t0);
	uffd_wake(&p->uffd, p->mem->hva + pfn * MM_PAGE, (uint64_t)k * MM_PAGE);
	return k;
}

/* Resolve msgs[0..n), in address order; defer what must wait (into ft->deferred
 * unless keep: then msgs[0..return) are the ones kept, for retry_deferred). */
static unsigned handle_batch(struct mm_fault_thread *ft, struct uffd_msg *msgs, unsigned n,
			     bool keep)
{
	unsigned kept = 0;
	int k;

	if (n > 1)
		qsort(msgs, n, sizeof(msgs[0]), by_address);
	for (unsigned i = 0; i < n; i++) {
		if ((k = resolve_minor_batch(ft, msgs, (int)i, (int)n)) > 0) {
			i += (unsigned)k - 1;
			continue;
		}
		if (handle_msg(ft, &msgs[i]) != DEFER)
			continue;
		if (keep)
			msgs[kept++] = msgs[i];
		else
			defer(ft, &msgs[i]);
	}
	return kept;
}

static void retry_deferred(struct mm_fault_thread *ft)
{
	ft->ndeferred = handle_batch(ft, ft->deferred, ft->ndeferred, true);
}

/*
 * After a burst, watch the uffd for o.spin_us more before sleeping in poll():
 * a vCPU that faults again soon (a guest sweeping swapped memory) then finds
 * the handler awake, and the wake-up of a sleeping thread, which costs tens of
 * microseconds on nested hosts, is saved. Only worth it with a core to spare,
 * which the VMM decides (mm_pager_opts.spin_us). True with msgs read into *n.
 */
static bool spin_for_more(struct mm_fault_thread *ft, struct uffd_msg *msgs, int *n)
{
	struct mm_pager *p = ft->p;
	uint64_t end;

	if (!p->o.spin_us || ft->ndeferred)
		return false;
	end = mm_now_ns() + p->o.spin_us * 1000ULL;
	while ((*n = uffd_read(&p->uffd, msgs, 64)) == 0 && mm_now_ns() < end &&
	       !atomic_load(&p->fstop))
		__builtin_ia32_pause();
	if (*n <= 0)
		return false;
	handle_batch(ft, msgs, (unsigned)*n, false);
	return true;
}

static void *fault_main(void *arg)
{
	struct mm_fault_thread *ft = arg;
	struct mm_pager *p = ft->p;
	struct uffd_msg msgs[64];
	uint64_t v;
	int n;

	while (!atomic_load(&p->fstop)) {
		struct pollfd pf[3] = {{.fd = p->uffd.fd, .events = POLLIN},
				       {.fd = ft->efd, .events = POLLIN},
				       {.fd = p->rc_efd, .events = POLLIN}};
		/* Until the reclaim thread runs, the first fault thread starts it on a
		 * swap-out request (made maybe from a signal handler); it reads rc_efd. */
		bool watch_rc = ft == &p->ft[0] && !atomic_load(&p->reclaim_started);

		poll(pf, watch_rc ? 3 : 2, ft->ndeferred ? 1 : 200);
		if (pf[1].revents && read(ft->efd, &v, sizeof(v)) < 0) {
			/* nothing pending after all */
		}
		if (watch_rc && pf[2].revents && mm_reclaim_ensure(p) < 0 &&
		    read(p->rc_efd, &v, sizeof(v)) == sizeof(v))
			mm_warn_once(p, &p->warned_rc,
				     "ufvm: pager: cannot start the reclaim thread: swap-out "
				     "request dropped");
		retry_deferred(ft);
		do {
			while ((n = uffd_read(&p->uffd, msgs, 64)) > 0)
				handle_batch(ft, msgs, (unsigned)n, false);
		} while (n == 0 && spin_for_more(ft, msgs, &n));
		if (n < 0 && !atomic_load(&p->fstop)) {
			mm_pager_die(p, "ufvm: pager: userfaultfd read failed: %s", strerror(-n));
			break;
		}
	}
	return NULL;
}

int mm_fault_start(struct mm_pager *p)
{
	if (!zeros) {
		zeros = mmap(NULL, MM_REGION_PAGES * MM_PAGE, PROT_READ,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (zeros == MAP_FAILED) {
			zeros = NULL;
			return -errno;
		}
	}
	p->ft = calloc(p->nft, sizeof(*p->ft));
	if (!p->ft)
		return -ENOMEM;
	for (unsigned i = 0; i < p->nft; i++) {
		struct mm_fault_thread *ft = &p->ft[i];

		ft->p = p;
		ft->ra_next = UINT64_MAX;
		ft->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		ft->ios = calloc(MM_REGION_PAGES, sizeof(*ft->ios));
		if (ft->efd < 0 || !ft->ios ||
		    pthread_create(&ft->tid, NULL, fault_main, ft) != 0) {
			p->nft = i + 1;
			ft->tid = 0;
			mm_fault_stop(p);
			return -ENOMEM;
		}
	}
	return 0;
}

void mm_fault_stop(struct mm_pager *p)
{
	atomic_store(&p->stop, true);
	atomic_store(&p->fstop, true);
	mm_wake_faults(p);
	for (unsigned i = 0; i < p->nft; i++) {
		struct mm_fault_thread *ft = &p->ft[i];

		if (ft->tid)
			pthread_join(ft->tid, NULL);
		if (ft->efd > 0)
			close(ft->efd);
		free(ft->ios);
		free(ft->deferred);
	}
	free(p->ft);
	p->ft = NULL;
	p->nft = 0;
}
