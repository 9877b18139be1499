/* batch.h: reclaim's batch for a memory limit, shared by the pager and the pool */
#ifndef UFVM_MM_BATCH_H
#define UFVM_MM_BATCH_H

#include <stdint.h>

/*
 * Reclaim's batch for a limit, in pages: reclaim starts one batch below the
 * limit and stops two below it. 1/256 of the limit, 32 pages to 2 MiB (a 64 MiB
 * limit: 256 KiB). The room it keeps free is memory the guest cannot use: with
 * 2 MiB batches a guest under a 64 MiB limit held 60-64 MiB where a memory
 * cgroup holds 64, and each MiB short cost about 1,400 swap-ins in
 * bench/linux_bench.py (bench/README.md). Busy reclaim runs evict more than a
 * batch anyway. The pool allows a VM this much over its limit before calling
 * it stuck.
 */
static inline uint64_t mm_reclaim_batch(uint64_t limit_pages)
{
	uint64_t b = limit_pages / 256;

	return b < 32 ? 32 : b > 512 ? 512 : b; /* 512 pages: MM_REGION_PAGES, 2 MiB */
}

#endif
