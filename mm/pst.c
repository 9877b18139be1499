/* pst.c: the page-state table, one entry per 4 KiB guest page, and its legal transitions */
#include <errno.h>
#include <stdlib.h>

#include "mm/mm.h"

/*
 * The page state machine (mm/README.md has the long version). Each edge names
 * the MMU-notifier operation, or fault-path step, that it mirrors:
 *
 *             fault: zero-fill chunk (UFFDIO_COPY)
 *   NEW ------------------------------------------> RESIDENT <-----------+
 *    |  host write into a never-touched page        |    ^               |
 *    +-------------------------> UNMAPPED <---------+    | minor fault   |
 *                                 |  ^   clear_young     | (test_young:  |
 *           invalidate_range_start|  |   (zap PTE)       |  young)       |
 *        (evict; from RESIDENT too)  | writeback failed  |               |
 *                                 v  |   (cancel)        |               |
 *                              WRITEBACK --------------->+ (no)          |
 *                                 | invalidate_range_end                 |
 *                                 v (memfd page freed)                   |
 *                              SWAPPED ---------- swap-in fault ---------+
 *                                 +---- prefetch into memfd ---> UNMAPPED
 *
 * Any state except WRITEBACK may go back to NEW when the content is
 * discarded (MADV_REMOVE, a punched hole): invalidate_range_start/end with
 * the page freed and no copy kept. WRITEBACK is left only by its owner
 * (reclaim), which holds the region lock for the whole writeback, so a fault
 * can never observe it: that is how a racing guest write waits.
 */
#define B(s) (1u << (s))
static const unsigned legal_to[PST_NSTATES] = {
    [PST_NEW] = B(PST_RESIDENT) | B(PST_UNMAPPED),
    [PST_RESIDENT] = B(PST_NEW) | B(PST_UNMAPPED) | B(PST_WRITEBACK),
    [PST_UNMAPPED] = B(PST_NEW) | B(PST_RESIDENT) | B(PST_WRITEBACK),
    [PST_WRITEBACK] = B(PST_UNMAPPED) | B(PST_SWAPPED),
    [PST_SWAPPED] = B(PST_NEW) | B(PST_RESIDENT) | B(PST_UNMAPPED),
};

static const char *const names[PST_NSTATES] = {
    [PST_NEW] = "new",		 [PST_RESIDENT] = "resident",
    [PST_UNMAPPED] = "unmapped", [PST_WRITEBACK] = "writeback",
    [PST_SWAPPED] = "swapped",
};

int pst_init(struct pst *t, uint64_t npages)
{
	/* zeroed: every page PST_NEW (meta.c: droppable when the VM is frozen) */
	if (mm_meta_map(&t->meta, (npages ? npages : 1) * sizeof(*t->e)) < 0)
		return -ENOMEM;
	t->e = t->meta.base;
	t->npages = npages;
	return 0;
}

void pst_free(struct pst *t)
{
	mm_meta_unmap(&t->meta);
	t->e = NULL;
	t->npages = 0;
}

bool pst_transition_legal(enum pst_state from, enum pst_state to)
{
	if ((unsigned)from >= PST_NSTATES || (unsigned)to >= PST_NSTATES)
		return false;
	return legal_to[from] & B(to);
}

const char *pst_state_name(enum pst_state s)
{
	return (unsigned)s < PST_NSTATES ? names[s] : "invalid";
}

int pst_set(struct pst *t, uint64_t pfn, enum pst_state to)
{
	struct pst_entry *e;

	if (pfn >= t->npages)
		return -EINVAL;
	e = &t->e[pfn];
	if (!pst_transition_legal((enum pst_state)e->state, to))
		return -EINVAL;
	if (to == PST_SWAPPED && !(e->flags & PST_F_SLOT))
		return -EINVAL; /* content would be lost */
	if (to == PST_NEW) {
		e->flags = 0;
		e->age = 0;
	}
	e->state = (uint8_t)to;
	return 0;
}
