/* hostcopy.c: host copies in and out of guest RAM that never take a userfault */
#include <string.h>

#include "mm/mm.h"

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
			mm_pager_die(p, "ufvm: swap file %s: read of guest page 0x%llx failed: %s",
				     p->swap_name, (unsigned long long)(pfn * MM_PAGE),
				     strerror(-err));
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
