/* wp.c: clean-page tracking by write-protect: which pages with a swap copy the guest wrote */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "mm/mm.h"

/*
 * A page read back from swap keeps its slot (PST_F_SLOT): while it equals its
 * swap copy, evicting it again costs no write. To know when that stops being
 * true without KVM's dirty log (which makes KVM map guest RAM in 4 KiB
 * write-protected shadow pages, a sixfold slowdown here), such pages are mapped
 * write-protected (UFFDIO_CONTINUE/COPY with MODE_WP) and the uffd has
 * UFFD_FEATURE_WP_ASYNC: the first write, by a vCPU through KVM or by anything
 * else through our mapping, is resolved by the kernel itself (no round trip)
 * and leaves the PTE writable. PAGEMAP_SCAN then reads the state back:
 *
 *   PTE present, still protected                  not written
 *   PTE present, unprotected                      written
 *   zapped while protected: a uffd-wp PTE marker  not written
 *   zapped after a write: no PTE at all           written (pte_none reads as written)
 *
 * PST_F_WP says "mapped protected since the slot's copy was made", so that the
 * last two are not confused with a page never mapped since (no PTE, but clean).
 * The zap comes first everywhere (eviction step 1, a minor fault's page): after
 * it a write can only come through a fault we serve, so the state read is final.
 */

#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

/* PAGEMAP_SCAN (Linux 6.7; our headers are older) */
struct wp_region {
	uint64_t start, end, categories;
};
struct wp_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define WP_PAGEMAP_SCAN	   _IOWR('f', 16, struct wp_scan_arg)
#define WP_PAGE_IS_WRITTEN (1 << 1)
#define WP_VEC		   64

uint64_t mm_wp_features(void)
{
	return UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_ASYNC;
}

/* The written runs among [pfn, pfn+n): calls fn for each; -errno if the scan fails. */
static int scan_written(struct mm_pager *p, uint64_t pfn, uint64_t n,
			void (*fn)(struct mm_pager *, uint64_t, uint64_t))
{
	uint64_t start = (uintptr_t)(p->mem->hva + pfn * MM_PAGE), end = start + n * MM_PAGE;
	struct wp_region r[WP_VEC];

	while (start < end) {
		struct wp_scan_arg a = {.size = sizeof(a),
					.start = start,
					.end = end,
					.vec = (uintptr_t)r,
					.vec_len = WP_VEC,
					.category_mask = WP_PAGE_IS_WRITTEN,
					.return_mask = WP_PAGE_IS_WRITTEN};
		long got = ioctl(p->pagemap_fd, WP_PAGEMAP_SCAN, &a);

		if (got < 0)
			return -errno;
		for (long i = 0; i < got; i++)
			fn(p, (r[i].start - (uintptr_t)p->mem->hva) / MM_PAGE,
			   (r[i].end - r[i].start) / MM_PAGE);
		if (a.walk_end <= start)
			return -EIO; /* no progress: do not spin */
		start = a.walk_end;
	}
	return 0;
}

static void written(struct mm_pager *p, uint64_t pfn, uint64_t n)
{
	for (uint64_t i = pfn; i < pfn + n; i++) {
		struct pst_entry *e = &p->pst.e[i];

		if ((e->flags & (PST_F_SLOT | PST_F_WP)) == (PST_F_SLOT | PST_F_WP)) {
			mm_slot_free(p, e); /* clears PST_F_WP too */
			e->flags |= PST_F_DIRTY;
		}
	}
}

void mm_wp_sync(struct mm_pager *p, uint64_t pfn, uint64_t n)
{
	uint64_t i;

	if (!p->wp)
		return;
	for (i = pfn; i < pfn + n; i++) /* nothing to learn unless some page is tracked */
		if (p->pst.e[i].flags & PST_F_WP)
			break;
	if (i == pfn + n)
		return;
	if (scan_written(p, i, pfn + n - i, written) < 0)
		written(p, i, pfn + n - i); /* cannot tell: every tracked page is dirty */
}

void mm_wp_start(struct mm_pager *p)
{
	uint64_t need = mm_wp_features();
	struct wp_region r;
	struct wp_scan_arg a = {.size = sizeof(a), .vec = (uintptr_t)&r, .vec_len = 1};

	p->pagemap_fd = -1;
	p->wp = false;
	/* the uffd's features are all this kernel has, whatever was asked for */
	if (!p->o.wp || (p->uffd.features & need) != need)
		return;
	p->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (p->pagemap_fd < 0)
		return; /* no clean tracking: pages read back from swap count as dirty */
	a.start = (uintptr_t)p->mem->hva;
	a.end = a.start + MM_PAGE;
	a.return_mask = WP_PAGE_IS_WRITTEN;
	if (ioctl(p->pagemap_fd, WP_PAGEMAP_SCAN, &a) < 0) {
		mm_wp_stop(p);
		return;
	}
	p->wp = true;
}

void mm_wp_stop(struct mm_pager *p)
{
	if (p->pagemap_fd >= 0)
		close(p->pagemap_fd);
	p->pagemap_fd = -1;
	p->wp = false;
}
