/* trace.c: the page-event trace (--trace-pages): every page-state transition, timed */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mm/mm.h"

/*
 * The kernel's vmscan and swap tracepoints, for the pager: each transition of the
 * page-state table (mm_page_set) appends one 16-byte record to a file that is mapped
 * shared, so recording costs an atomic add and a store, with no lock and no system
 * call. Records of one page come in the order they happened (they are taken under
 * its region lock); across pages, sort by time. Format (little-endian), docs in
 * mm/README.md and the reader in tools/pagetrace.py:
 *
 *   header  64 bytes: "UFVMPTR1", u32 version 1, u32 record size 16, u64 pages,
 *           u64 page size, u64 records kept, u64 records dropped (the file was full)
 *   record  u64 ns since the pager started, u32 pfn, u8 from, u8 to (enum pst_state),
 *           u8 flags after the transition (PST_F_*), u8 0
 */
#define TRACE_MAX (1ULL << 24) /* records: a 256 MiB file at most, written sparsely */

struct mm_trace_hdr {
	char magic[8];
	uint32_t version, rec_size;
	uint64_t npages, page_size, nrec, dropped;
	uint8_t rsvd[16];
};
_Static_assert(sizeof(struct mm_trace_hdr) == 64, "the trace header is 64 bytes");

struct mm_trace_rec {
	uint64_t ns;
	uint32_t pfn;
	uint8_t from, to, flags, rsvd;
};
_Static_assert(sizeof(struct mm_trace_rec) == 16, "trace records are 16 bytes");

struct mm_trace {
	int fd;
	void *map;
	size_t bytes;
	struct mm_trace_hdr *hdr;
	struct mm_trace_rec *rec;
	uint64_t t0;
	_Atomic uint64_t n;
};

int mm_trace_open(struct mm_pager *p, int fd)
{
	struct mm_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->fd = fd;
	t->bytes = sizeof(struct mm_trace_hdr) + TRACE_MAX * sizeof(struct mm_trace_rec);
	t->map = MAP_FAILED;
	if (ftruncate(fd, 0) == 0 && ftruncate(fd, (off_t)t->bytes) == 0)
		t->map = mmap(NULL, t->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (t->map == MAP_FAILED) {
		int err = -errno;

		free(t);
		return err;
	}
	t->hdr = t->map;
	t->rec = (struct mm_trace_rec *)(t->hdr + 1);
	memcpy(t->hdr->magic, "UFVMPTR1", 8);
	t->hdr->version = 1;
	t->hdr->rec_size = sizeof(struct mm_trace_rec);
	t->hdr->npages = p->npages;
	t->hdr->page_size = MM_PAGE;
	t->t0 = mm_now_ns();
	p->trace = t;
	return 0;
}

void mm_trace_page(struct mm_trace *t, uint64_t pfn, unsigned from, unsigned to, unsigned flags)
{
	uint64_t i = atomic_fetch_add_explicit(&t->n, 1, memory_order_relaxed);

	if (i < TRACE_MAX)
		t->rec[i] = (struct mm_trace_rec){.ns = mm_now_ns() - t->t0,
						  .pfn = (uint32_t)pfn,
						  .from = (uint8_t)from,
						  .to = (uint8_t)to,
						  .flags = (uint8_t)flags};
}

/* After every pager thread is gone: the header's counts, the file cut to its records. */
void mm_trace_close(struct mm_pager *p)
{
	struct mm_trace *t = p->trace;
	uint64_t n, kept;

	if (!t)
		return;
	p->trace = NULL;
	n = atomic_load(&t->n);
	kept = n < TRACE_MAX ? n : TRACE_MAX;
	t->hdr->nrec = kept;
	t->hdr->dropped = n - kept;
	if (t->hdr->dropped)
		mm_warn_once(p, &p->warned_trace,
			     "ufvm: --trace-pages: the trace is full: the last %llu of %llu "
			     "transitions were not recorded",
			     (unsigned long long)t->hdr->dropped, (unsigned long long)n);
	munmap(t->map, t->bytes);
	if (ftruncate(t->fd, (off_t)(sizeof(struct mm_trace_hdr) +
				     kept * sizeof(struct mm_trace_rec))) < 0) {
		/* the file keeps its sparse tail; the header says how much of it counts */
	}
	free(t);
}
