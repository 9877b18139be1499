/* swapall.c: whole-VM swap-out and swap-in, and host copies that never take a userfault */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mm/mm.h"

int mm_pager_swapout_all(struct mm_pager *p, enum mm_swapin_mode mode)
{
	uint64_t t0 = mm_now_ns(), pages = 0;
	struct stat sb;
	int err = 0;

	/* Lift the limit first: a vCPU blocked on a deferred fault must get out to pause. */
	atomic_store(&p->pausing, true);
	mm_wake_faults(p);
	if (p->ops.pause_vcpus) {
		err = p->ops.pause_vcpus(p->ctx);
		if (err < 0)
			goto out;
	}
	/* Several regions per round: one zap, one batch of I/O in flight, one punch. */
	pthread_mutex_lock(&p->evict_lock);
	for (uint64_t r = 0; r < p->nregions; r += MM_EVICT_REGIONS) {
		unsigned n =
		    p->nregions - r < MM_EVICT_REGIONS ? p->nregions - r : MM_EVICT_REGIONS;

		for (unsigned i = 0; i < n; i++)
			pthread_mutex_lock(&p->reg[r + i].lock);
		pages += mm_evict_regions(p, r, n, true, &err);
		for (unsigned i = 0; i < n; i++)
			mm_region_unlock(p, r + i);
	}
	pthread_mutex_unlock(&p->evict_lock);
	MM_STAT_ADD(p, swapout_all_runs, 1);
	MM_STAT_ADD(p, swapout_all_pages, pages);
	MM_STAT_ADD(p, swapout_all_ns, mm_now_ns() - t0);
	if (fstat(p->mem->memfd, &sb) == 0)
		__atomic_store_n(&p->st.swapout_all_resident_bytes, (uint64_t)sb.st_blocks * 512,
				 __ATOMIC_RELAXED);
	if (mode == MM_SWAPIN_PREFETCH) {
		int e = mm_pager_swapin_all(p);

		if (!err)
			err = e;
	}
	if (p->ops.resume_vcpus)
		p->ops.resume_vcpus(p->ctx);
out:
	atomic_store(&p->pausing, false);
	return err;
}

/*
 * Read the swapped pages of regions [r, r+n) back and map them (locks held).
 * They are read into a reused bounce buffer and written into the memfd with
 * pwrite, which fills whole new pages without zeroing them first (reading
 * straight into the memfd through our view would fault in, and zero, every
 * page before the read overwrites it); then UFFDIO_CONTINUE maps them.
 */
static int swapin_regions(struct mm_pager *p, uint64_t r, unsigned n, struct swap_io *ios,
			  uint8_t *bounce, uint64_t *pages)
{
	uint64_t base = r * MM_REGION_PAGES, got = 0, npg = n * MM_REGION_PAGES;
	int err = mm_swapin_range(p, ios, base, npg, bounce, &got);

	if (err < 0) {
		mm_pager_die(p, "ufvm: swap file: swap-in of guest memory at 0x%llx failed: %s",
			     (unsigned long long)(base * MM_PAGE), strerror(-err));
		return err;
	}
	for (uint64_t i = 0, run = 0; i <= npg && !err; i++) {
		uint64_t first = base + i - run;

		if (i < npg && p->pst.e[base + i].state == PST_SWAPPED) {
			run++;
			continue;
		}
		if (!run)
			continue;
		{
			uint64_t done = 0;
			int rc = uffd_copy(&p->uffd, p->mem->hva + first * MM_PAGE,
					   bounce + (i - run) * MM_PAGE, run * MM_PAGE, &done);

			for (uint64_t j = first; j < first + done / MM_PAGE; j++) {
				struct pst_entry *e = &p->pst.e[j];

				mm_page_set(p, j, PST_RESIDENT);
				if (!p->ops.harvest_dirty) { /* else clean until the dirty log says
								not */
					mm_slot_free(p, e);
					e->flags |= PST_F_DIRTY;
				}
			}
			if (rc != UFFD_OK && rc != UFFD_RETRY)
				err = rc < 0 ? rc : -EIO;
		}
		uffd_wake(&p->uffd, p->mem->hva + first * MM_PAGE, run * MM_PAGE);
		run = 0;
	}
	*pages += got;
	return err;
}

int mm_pager_swapin_all(struct mm_pager *p)
{
	const size_t blen = MM_EVICT_REGIONS * MM_REGION_PAGES * MM_PAGE;
	struct swap_io *ios = calloc(MM_EVICT_REGIONS * MM_REGION_PAGES, sizeof(*ios));
	uint8_t *bounce =
	    mmap(NULL, blen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t t0 = mm_now_ns(), pages = 0;
	int err = 0;

	if (!ios || bounce == MAP_FAILED) {
		free(ios);
		if (bounce != MAP_FAILED)
			munmap(bounce, blen);
		return -ENOMEM;
	}
	for (uint64_t r = 0; r < p->nregions && !err;) {
		unsigned n = 0;

		/* a run of up to MM_EVICT_REGIONS regions that hold swapped pages */
		while (r < p->nregions && p->reg[r].nres + p->reg[r].nnew == MM_REGION_PAGES)
			r++;
		while (r + n < p->nregions && n < MM_EVICT_REGIONS &&
		       p->reg[r + n].nres + p->reg[r + n].nnew < MM_REGION_PAGES)
			n++;
		if (!n)
			break;
		if (p->limit_pages) { /* prefetching more would only be reclaimed again */
			uint64_t room = p->resident < p->high ? p->high - p->resident : 0;

			if (n > room / MM_REGION_PAGES)
				n = (unsigned)(room / MM_REGION_PAGES);
			if (!n)
				break;
		}
		for (unsigned i = 0; i < n; i++)
			pthread_mutex_lock(&p->reg[r + i].lock);
		err = swapin_regions(p, r, n, ios, bounce, &pages);
		for (unsigned i = 0; i < n; i++)
			mm_region_unlock(p, r + i);
		r += n;
	}
	free(ios);
	munmap(bounce, blen);
	MM_STAT_ADD(p, swapin_all_pages, pages);
	MM_STAT_ADD(p, swapin_all_ns, mm_now_ns() - t0);
	return err;
}

/* One page's worth of a host copy (region lock held). */
static int copy_page(struct mm_pager *p, uint64_t pfn, uint64_t off, void *buf, uint64_t len,
		     bool to_guest)
{
	struct pst_entry *e = &p->pst.e[pfn];
	uint8_t *hp = p->alias + pfn * MM_PAGE + off;
	struct swap_io io;
	uint64_t got;
	int err;

	if (e->state == PST_NEW && !to_guest) {
		memset(buf, 0, len);
		return 0;
	}
	if (e->state == PST_SWAPPED) {
		err = mm_swapin_range(p, &io, pfn, 1, NULL, &got);
		if (err < 0) {
			mm_pager_die(p, "ufvm: swap file: read of guest page 0x%llx failed: %s",
				     (unsigned long long)(pfn * MM_PAGE), strerror(-err));
			return err;
		}
		mm_page_set(p, pfn, PST_UNMAPPED); /* clean: keeps its slot */
	} else if (e->state == PST_NEW) {
		mm_page_set(p, pfn, PST_UNMAPPED); /* the write below allocates it */
	}
	if (to_guest) {
		memcpy(hp, buf, len);
		mm_slot_free(p, e);
		e->flags |= PST_F_DIRTY;
	} else {
		memcpy(buf, hp, len);
	}
	e->flags |= PST_F_YOUNG;
	return 0;
}

int mm_pager_copy(struct mm_pager *p, gpa_t gpa, void *buf, uint64_t len, bool to_guest)
{
	uint8_t *b = buf;
	int err = 0;

	MM_STAT_ADD(p, host_copies, 1);
	while (len && !err) {
		uint64_t pfn = gpa / MM_PAGE, off = gpa % MM_PAGE;
		uint64_t n = MM_PAGE - off < len ? MM_PAGE - off : len;
		uint64_t r = pfn / MM_REGION_PAGES;

		pthread_mutex_lock(&p->reg[r].lock);
		err = copy_page(p, pfn, off, b, n, to_guest);
		mm_region_unlock(p, r);
		gpa += n;
		b += n;
		len -= n;
	}
	return err;
}
