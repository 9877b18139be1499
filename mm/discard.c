/* discard.c: pages the guest gave away (balloon inflate, free page reporting) go back to NEW */
#include <errno.h>
#include <fcntl.h>

#include "mm/mm.h"

/*
 * The "* -> NEW" edge of the page-state machine: invalidate_range_start/end
 * with the page freed and no copy kept. Under the region lock, so no fault,
 * eviction, scan or host copy can see a page half-way:
 *
 *   RESIDENT, UNMAPPED --punch the memfd hole--> NEW   (content gone, PTEs gone)
 *   SWAPPED            --free the swap slot-----> NEW   (the hole is there already)
 *   NEW                -- nothing to do
 *   WRITEBACK          -- never seen: reclaim holds the region lock throughout
 *
 * The punch zaps every mapping of those file pages, the registered one and the
 * pager's view alike (shmem's hole punch unmaps the range first), so through
 * the MMU notifier KVM's sptes go too: no separate MADV_DONTNEED, whose REMOVE
 * event would cost a fault-thread round trip per inflated page. The next guest
 * access is a missing fault on a NEW page: a zero chunk, and only over pages
 * that are all NEW, so live neighbours are never overwritten.
 */
static int64_t discard_locked(struct mm_pager *p, uint64_t pfn, uint64_t n)
{
	uint64_t moved = 0;

	if (fallocate(p->mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(pfn * MM_PAGE), (off_t)(n * MM_PAGE)) < 0)
		return -errno;
	for (uint64_t i = pfn; i < pfn + n; i++) {
		if (p->pst.e[i].state == PST_NEW)
			continue;
		if (!mm_page_set(p, i, PST_NEW)) /* frees the slot; a bug is reported */
			return -EIO;
		moved++;
	}
	MM_STAT_ADD(p, discarded_pages, moved);
	return (int64_t)moved;
}

int64_t mm_pager_discard(struct mm_pager *p, uint64_t first_page, uint64_t npages)
{
	uint64_t end, pfn = first_page;
	int64_t moved = 0, r_moved = 0;

	if (first_page > p->npages || npages > p->npages - first_page)
		return -EINVAL;
	end = first_page + npages;
	while (r_moved >= 0 && pfn < end) {
		uint64_t r = pfn / MM_REGION_PAGES, rend = (r + 1) * MM_REGION_PAGES;
		uint64_t n = (rend < end ? rend : end) - pfn;

		pthread_mutex_lock(&p->reg[r].lock);
		r_moved = discard_locked(p, pfn, n);
		mm_region_unlock(p, r);
		moved += r_moved > 0 ? r_moved : 0;
		pfn += n;
	}
	return r_moved < 0 ? r_moved : moved;
}
