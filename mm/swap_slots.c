/* swap_slots.c: swap-file slot allocator: intrusive free list, high-water mark, run finder */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "mm/mm.h"

#define SLOT_NIL UINT32_MAX

/*
 * Slots [0, hwm) have been handed out at least once; slots >= hwm are fresh.
 * Freed slots below hwm sit on a doubly linked free list threaded through
 * link[] (intrusive: the links live in a per-slot array indexed by slot
 * number, nothing is allocated per free), most recently freed first, so
 * single allocations and frees are O(1) and reuse slots whose file blocks are
 * already allocated. The list is doubly linked so the run finder and the hwm
 * trim can unlink any slot in O(1). `used` has one bit per slot: it catches
 * double frees and lets the run finder skip 64 slots per word.
 *
 * Invariant: hwm == 0 or slot hwm-1 is in use (freeing the top slot trims hwm
 * down past every free slot below it). So no free run touches hwm, and a run
 * that fits above hwm is always taken there whole.
 *
 * Both arrays are MAP_NORESERVE anonymous memory: a huge max_pages costs only
 * the pages actually touched.
 */
struct swap_slot_link {
	uint32_t next, prev;
};

struct swap_slots {
	struct swap_slot_link *link;
	uint64_t *used;
	struct mm_meta link_mem, used_mem; /* their mappings (meta.c: a frozen VM drops them) */
	uint64_t max, hwm, nused;
	uint32_t head; /* most recently freed slot, SLOT_NIL when the list is empty */
};

int swap_slots_create(struct swap_slots **out, uint64_t max_pages)
{
	struct swap_slots *sl;

	if (max_pages == 0)
		return -EINVAL;
	if (max_pages >= SLOT_NIL)
		return -EFBIG;
	sl = calloc(1, sizeof(*sl));
	if (!sl)
		return -ENOMEM;
	sl->max = max_pages;
	sl->head = SLOT_NIL;
	if (mm_meta_map(&sl->link_mem, max_pages * sizeof(*sl->link)) < 0)
		goto err_free;
	if (mm_meta_map(&sl->used_mem, (max_pages + 63) / 64 * sizeof(*sl->used)) < 0)
		goto err_unmap_link;
	sl->link = sl->link_mem.base;
	sl->used = sl->used_mem.base;
	*out = sl;
	return 0;

err_unmap_link:
	mm_meta_unmap(&sl->link_mem);
err_free:
	free(sl);
	return -ENOMEM;
}

void swap_slots_destroy(struct swap_slots *sl)
{
	if (!sl)
		return;
	mm_meta_unmap(&sl->used_mem);
	mm_meta_unmap(&sl->link_mem);
	free(sl);
}

int swap_slots_to_file(struct swap_slots *sl)
{
	int err = mm_meta_to_file(&sl->link_mem);

	return err ? err : mm_meta_to_file(&sl->used_mem);
}

int swap_slots_drop(struct swap_slots *sl)
{
	int err = mm_meta_drop(&sl->link_mem);

	return err ? err : mm_meta_drop(&sl->used_mem);
}

bool swap_slots_test(const struct swap_slots *sl, uint64_t slot)
{
	return slot < sl->hwm && ((sl->used[slot / 64] >> (slot % 64)) & 1);
}

uint64_t swap_slots_count(const struct swap_slots *sl)
{
	return __atomic_load_n(&sl->nused, __ATOMIC_RELAXED);
}

static void list_push(struct swap_slots *sl, uint32_t i)
{
	sl->link[i] = (struct swap_slot_link){.next = sl->head, .prev = SLOT_NIL};
	if (sl->head != SLOT_NIL)
		sl->link[sl->head].prev = i;
	sl->head = i;
}

static void list_del(struct swap_slots *sl, uint32_t i)
{
	struct swap_slot_link l = sl->link[i];

	if (l.prev != SLOT_NIL)
		sl->link[l.prev].next = l.next;
	else
		sl->head = l.next;
	if (l.next != SLOT_NIL)
		sl->link[l.next].prev = l.prev;
}

/* First fit over [0, hwm): whole words are skipped (all used) or counted (all free). */
static int64_t find_free_run(const struct swap_slots *sl, uint32_t n)
{
	uint64_t i = 0, run = 0;

	while (i < sl->hwm) {
		uint64_t w = sl->used[i / 64];

		if (i % 64 == 0 && w == UINT64_MAX) {
			run = 0;
			i += 64;
			continue;
		}
		if (i % 64 == 0 && w == 0) { /* by the invariant, the whole word is below hwm */
			run += 64;
			i += 64;
		} else {
			run = ((w >> (i % 64)) & 1) ? 0 : run + 1;
			i++;
		}
		if (run >= n)
			return (int64_t)(i - run);
	}
	return -ENOSPC;
}

int64_t swap_slots_get(struct swap_slots *sl, uint32_t n)
{
	int64_t first;
	uint64_t i;

	if (n == 0)
		return -EINVAL;
	if (n == 1 && sl->head != SLOT_NIL) {
		first = sl->head;
		list_del(sl, sl->head);
	} else if (n <= sl->max - sl->hwm) {
		first = (int64_t)sl->hwm;
		sl->hwm += n;
	} else {
		first = find_free_run(sl, n);
		if (first < 0)
			return first;
		for (i = 0; i < n; i++)
			list_del(sl, (uint32_t)first + i);
	}
	for (i = (uint64_t)first; i < (uint64_t)first + n; i++)
		sl->used[i / 64] |= 1ULL << (i % 64);
	/* atomic: the count is read without the owner's lock (swap_slots_count) */
	__atomic_store_n(&sl->nused, sl->nused + n, __ATOMIC_RELAXED);
	return first;
}

void swap_slots_put(struct swap_slots *sl, uint64_t slot)
{
	if (!swap_slots_test(sl, slot))
		return; /* never allocated or already free: nothing to undo */
	sl->used[slot / 64] &= ~(1ULL << (slot % 64));
	__atomic_store_n(&sl->nused, sl->nused - 1, __ATOMIC_RELAXED);
	if (slot + 1 < sl->hwm) {
		list_push(sl, (uint32_t)slot);
		return;
	}
	/* The top slot: lower hwm past it and past every free slot under it. */
	sl->hwm = slot;
	while (sl->hwm > 0 && !swap_slots_test(sl, sl->hwm - 1)) {
		list_del(sl, (uint32_t)(sl->hwm - 1));
		sl->hwm--;
	}
}
