/* fault.c: the fault service threads: drain the uffd, resolve by page state */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
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

static void record_latency(struct mm_pager *p, uint64_t t0, bool swapin)
{
	uint64_t us = (mm_now_ns() - t0) / 1000;
	unsigned b = 0;

	while (us && b < MM_LAT_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	MM_STAT_ADD(p, fault_lat_us[b], 1);
	if (swapin)
		MM_STAT_ADD(p, swapin_lat_us[b], 1);
}

static enum mm_resolved handle_fault(struct mm_fault_thread *ft, const struct uffd_msg *m)
{
	struct mm_pager *p = ft->p;
	uint64_t addr = m->arg.pagefault.address & ~(MM_PAGE - 1), pfn, r, t0 = mm_now_ns();
	enum mm_resolved rc = MM_DONE;
	int state;

	if (addr < (uintptr_t)p->mem->hva || addr >= (uintptr_t)p->mem->hva + p->mem->size)
		return MM_DONE;
	pfn = (addr - (uintptr_t)p->mem->hva) / MM_PAGE;
	r = pfn / MM_REGION_PAGES;
	if (pthread_mutex_trylock(&p->reg[r].lock)) {
		atomic_store(&p->reg[r].want, 1);
		if (pthread_mutex_trylock(&p->reg[r].lock))
			return MM_DEFER;
	}
	/* A MINOR fault can find the page SWAPPED: it was zapped, the fault was deferred
	 * while reclaim held the region, and reclaim evicted it meanwhile. */
	state = p->pst.e[pfn].state;
	switch (state) {
	case PST_NEW:
		rc = mm_resolve_new(p, pfn);
		break;
	case PST_RESIDENT:
	case PST_UNMAPPED:
		rc = mm_resolve_minor(p, pfn);
		break;
	case PST_SWAPPED:
		rc = mm_resolve_swapin(ft, pfn);
		break;
	default:
		rc = MM_DEFER;
	}
	mm_region_unlock(p, r);
	if (rc == MM_DONE)
		record_latency(p, t0, state == PST_SWAPPED);
	if (rc == MM_DONE && state == PST_UNMAPPED) /* the sampler's cost to the guest */
		MM_STAT_ADD(p, sample_ns, mm_now_ns() - t0);
	if (rc == MM_DONE && state == PST_SWAPPED) {
		uint64_t dt = mm_now_ns() - t0;

		MM_STAT_ADD(p, refault_ns, dt); /* --mem-limit auto's signal */
		MM_STAT_ADD(p, stall_ns, dt);
	}
	if (p->limit_pages && p->resident > p->high)
		mm_reclaim_kick(p);
	return rc;
}

/*
 * UFFD_EVENT_REMOVE: someone ran MADV_DONTNEED/MADV_REMOVE on guest RAM; our
 * own zaps cause most of them. Nothing to do but read it (the madvise caller
 * waits for that): page states stay as they are, since a zapped RESIDENT page
 * comes back through a minor fault, and a removed one through mm_resolve_minor's
 * "no page" case.
 */
static enum mm_resolved handle_msg(struct mm_fault_thread *ft, const struct uffd_msg *m)
{
	if (atomic_load(&ft->p->dead))
		return MM_DEFER; /* the VM is being stopped: leave vCPUs blocked */
	if (m->event == UFFD_EVENT_PAGEFAULT)
		return handle_fault(ft, m);
	if (m->event == UFFD_EVENT_REMOVE)
		MM_STAT_ADD(ft->p, remove_events, 1);
	return MM_DONE;
}

/* Each deferred fault is a blocked vCPU (or VMM thread): their waiting time, summed. */
static void account_stall(struct mm_fault_thread *ft)
{
	uint64_t now = mm_now_ns();

	if (ft->ndeferred && ft->stall_t)
		MM_STAT_ADD(ft->p, stall_ns, ft->ndeferred * (now - ft->stall_t));
	ft->stall_t = now;
}

static void defer(struct mm_fault_thread *ft, const struct uffd_msg *m)
{
	account_stall(ft);
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
			mm_set_resident(p, pfn + (uint64_t)j, pfn + (uint64_t)j);
	} else {
		ok = 0; /* whatever was mapped is EEXIST to the one-by-one path */
	}
	mm_region_unlock(p, r);
	if (!ok)
		return 0;
	MM_STAT_ADD(p, faults_minor, k);
	MM_STAT_ADD(p, minor_batched, k);
	for (int j = 0; j < k; j++)
		record_latency(p, t0, false);
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

	for (unsigned i = 0; i < n && atomic_load(&ft->p->frozen); i++)
		if (msgs[i].event == UFFD_EVENT_PAGEFAULT) /* the guest runs again: sample it */
			atomic_store(&ft->p->frozen, false);
	if (n > 1)
		qsort(msgs, n, sizeof(msgs[0]), by_address);
	for (unsigned i = 0; i < n; i++) {
		if ((k = resolve_minor_batch(ft, msgs, (int)i, (int)n)) > 0) {
			i += (unsigned)k - 1;
			continue;
		}
		if (handle_msg(ft, &msgs[i]) != MM_DEFER)
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
	account_stall(ft);
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

/*
 * A swap-in fault reads its pages through the pager's view of the memfd
 * (mm_swapin_range), which leaves PTEs there: such a page is mapped twice, for
 * the guest and in our view, and the process's RssShmem (what ps and the pool
 * show) counts it twice. Once a burst of faults is over, and every 100 ms at
 * most, drop our view's PTEs: MADV_DONTNEED on a shared mapping keeps the
 * memfd's content, and no uffd is registered on this view. A pager thread that
 * reads or writes through it meanwhile just maps the same page again.
 */
static void trim_alias(struct mm_pager *p)
{
	uint64_t now = mm_now_ns(), last = atomic_load(&p->alias_trim_ns);

	if (!atomic_load(&p->alias_reads) || now - last < 100000000ULL ||
	    !atomic_compare_exchange_strong(&p->alias_trim_ns, &last, now))
		return;
	atomic_store(&p->alias_reads, 0);
	madvise(p->alias, p->mem->size, MADV_DONTNEED);
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
		trim_alias(p);
	}
	return NULL;
}

int mm_fault_start(struct mm_pager *p)
{
	int err = mm_resolve_init();

	if (err < 0)
		return err;
	p->ft = calloc(p->nft, sizeof(*p->ft));
	if (!p->ft)
		return -ENOMEM;
	for (unsigned i = 0; i < p->nft; i++) {
		struct mm_fault_thread *ft = &p->ft[i];
		char name[16];

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
		snprintf(name, sizeof(name), "ufvm-fault%u", i % 100000u); /* for top -H and perf */
		pthread_setname_np(ft->tid, name);
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
