/* mm.h: guest memory, the gpa gate and (later) the pager; library code, returns -errno */
#ifndef UFVM_MM_H
#define UFVM_MM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t gpa_t; /* a guest-physical address: never dereference it directly */

struct mm_mem {
	int memfd;     /* backing shmem file; guest RAM content lives here */
	uint8_t *hva;  /* MAP_SHARED mapping of the whole memfd */
	uint64_t size; /* bytes, a multiple of 2 MiB */
};

/* Create a memfd of `size` bytes and map it shared. size must be a multiple of 2 MiB. */
int mm_mem_create(struct mm_mem *m, uint64_t size);
void mm_mem_destroy(struct mm_mem *m);

/*
 * The one gate from guest-physical addresses to host pointers: returns a
 * pointer to [gpa, gpa+len) if the whole range lies inside guest RAM, NULL
 * otherwise (including on arithmetic overflow). len 0 is valid for gpa <= size.
 */
void *mm_gpa(const struct mm_mem *m, gpa_t gpa, uint64_t len);

/* Checked copies between guest RAM and the host; -EFAULT when out of range. */
int mm_copy_from_guest(const struct mm_mem *m, void *dst, gpa_t src, uint64_t len);
int mm_copy_to_guest(const struct mm_mem *m, gpa_t dst, const void *src, uint64_t len);

/* ---- swap store (swap_store.c, swap_slots.c) ----------------------------
 * A file of page-sized slots written and read through io_uring. Library
 * code: never prints, returns -errno. Not thread-safe: one owner thread
 * (the pager) drives it, and no call returns with I/O still in flight.
 */
struct swap_store;

struct swap_opts {
	const char *path; /* NULL: an unlinked temporary file under $TMPDIR (or /tmp) */
	bool direct;      /* open with O_DIRECT (buffers must then be 4 KiB aligned) */
	unsigned qdepth;  /* io_uring queue depth / max requests in flight; 0 = 64, max 4096 */
};

/*
 * Open (create or truncate) the swap file able to hold max_pages slots;
 * o NULL means all defaults. 1 <= max_pages < 2^32 - 1 (slots fit the pst's
 * 32-bit field), else -EINVAL or -EFBIG. The file is sparse: disk blocks are
 * taken only when a slot is first written, so a full disk shows up as
 * -ENOSPC in swap_io.res, and a slot written once can be rewritten without
 * new space.
 */
int swap_open(struct swap_store **out, const struct swap_opts *o, uint64_t max_pages);
void swap_close(struct swap_store *s); /* NULL is a no-op */

/*
 * Slot allocator: freed slots are reused (most recently freed first) before
 * new ones; the lowest free slot is not guaranteed. Single-slot alloc and
 * free are O(1). Freeing a slot that is not allocated is ignored.
 */
int64_t swap_slot_alloc(struct swap_store *s); /* slot number, or -ENOSPC */
/*
 * Allocate n consecutive slots (for batch writes); returns the first, or
 * -ENOSPC when no n free slots are consecutive (-EINVAL for n == 0). Runs
 * come from never-used slots when they fit, else first fit among freed ones
 * (a scan of one bit per slot). Free them one slot at a time.
 */
int64_t swap_slot_alloc_run(struct swap_store *s, uint32_t n);
void swap_slot_free(struct swap_store *s, uint64_t slot);
uint64_t swap_slots_used(const struct swap_store *s);
bool swap_slot_in_use(const struct swap_store *s, uint64_t slot); /* for consistency checks */

struct swap_io {
	uint64_t slot;   /* first slot */
	uint32_t npages; /* consecutive slots <-> consecutive 4 KiB pages at buf */
	void *buf;
	int res; /* out: 0 or -errno (short I/O is retried internally) */
};

/*
 * Submit all n requests (batched, at most qdepth in flight, -EAGAIN resubmitted,
 * short transfers advanced and requeued) and wait for all of them. Fills each
 * io->res. Returns 0 if every request succeeded, else the first error.
 * One request per io, however long the run: write a run of consecutive slots
 * as one io. A failing io never affects the others. Per-io errors: -EINVAL
 * (npages 0, NULL buf, slots beyond max_pages, buf not 4 KiB aligned with
 * O_DIRECT), -EIO (the file ended early), else what the kernel returned
 * (-ENOSPC, -EIO, ...). A failed write may have written part of the run;
 * a failed read leaves buf partly filled. Slots never written read as zeros.
 * If io_uring itself fails (not an io), every io fails with that error and
 * the store stays unusable: close it.
 */
int swap_write(struct swap_store *s, struct swap_io *ios, unsigned n);
int swap_read(struct swap_store *s, struct swap_io *ios, unsigned n);

struct swap_stats {
	uint64_t pages_written, pages_read; /* pages of ios that succeeded */
	uint64_t write_errors, read_errors; /* ios that failed */
	uint64_t submits;  /* io_uring_enter calls (each submits a batch and reaps) */
	uint64_t requeues; /* resubmissions after -EAGAIN or a short transfer */
};
void swap_get_stats(const struct swap_store *s, struct swap_stats *st);

/* Test-only failure injection: after `after` more pages, fail every op of kind
 * `write` (true) or read (false) with -err until cleared with err == 0.
 * err is a positive errno. Pages are counted as they are submitted, so an io
 * that crosses the limit transfers its first pages, then fails. Injected
 * errors arrive as completions, like real ones (an injected EAGAIN is retried
 * until the retry cap, then fails). */
void swap_inject_error(struct swap_store *s, bool write, int err, uint64_t after);

/* The allocator behind swap_slot_*() (swap_slots.c); a swap_store owns one.
 * Usable alone, for tests. n = 1 takes from the free list in O(1). */
struct swap_slots;
int swap_slots_create(struct swap_slots **out, uint64_t max_pages); /* as swap_open */
void swap_slots_destroy(struct swap_slots *sl);
int64_t swap_slots_get(struct swap_slots *sl, uint32_t n); /* first of n slots, or -errno */
void swap_slots_put(struct swap_slots *sl, uint64_t slot);
bool swap_slots_test(const struct swap_slots *sl, uint64_t slot);
uint64_t swap_slots_count(const struct swap_slots *sl);

#endif
