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
 * (the pager) drives it.
 */
struct swap_store;

struct swap_opts {
	const char *path; /* NULL: an unlinked temporary file under $TMPDIR (or /tmp) */
	bool direct;      /* open with O_DIRECT (buffers must then be 4 KiB aligned) */
	unsigned qdepth;  /* io_uring queue depth / max requests in flight; 0 = 64 */
};

/* Open (create or truncate) the swap file able to hold max_pages slots. */
int swap_open(struct swap_store **out, const struct swap_opts *o, uint64_t max_pages);
void swap_close(struct swap_store *s);

/* Slot allocator: lowest freed slot is not required; freed slots are reused before new ones. */
int64_t swap_slot_alloc(struct swap_store *s); /* slot number, or -ENOSPC */
/* Allocate n consecutive slots (for batch writes); returns the first, or -ENOSPC. */
int64_t swap_slot_alloc_run(struct swap_store *s, uint32_t n);
void swap_slot_free(struct swap_store *s, uint64_t slot);
uint64_t swap_slots_used(const struct swap_store *s);

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
 */
int swap_write(struct swap_store *s, struct swap_io *ios, unsigned n);
int swap_read(struct swap_store *s, struct swap_io *ios, unsigned n);

struct swap_stats {
	uint64_t pages_written, pages_read;
	uint64_t write_errors, read_errors;
	uint64_t submits; /* io_uring_submit calls */
};
void swap_get_stats(const struct swap_store *s, struct swap_stats *st);

/* Test-only failure injection: after `after` more pages, fail every op of kind
 * `write` (true) or read (false) with -err until cleared with err == 0. */
void swap_inject_error(struct swap_store *s, bool write, int err, uint64_t after);

#endif
