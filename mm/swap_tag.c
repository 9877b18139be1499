/* swap_tag.c: a keyed 32-bit tag per swap slot, so that a page read back is the page written */
#include <errno.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mm/mm.h"

/*
 * XXH3 (Debian's libxxhash, inlined): about 0.25 us per 4 KiB page with SSE2
 * and 0.12 us with AVX2 here, against tens of microseconds for the fault that
 * reads the page. The AVX2 build of the same function lives in
 * swap_tag_avx2.c (compiled with -mavx2) and is chosen once, at start, on CPUs
 * that have it.
 */
static uint64_t hash_sse2(const void *page, uint64_t seed)
{
	return XXH3_64bits_withSeed(page, MM_PAGE, seed);
}

int swap_tags_init(struct swap_tags *t, uint64_t nslots)
{
	uint64_t key = 0;

	*t = (struct swap_tags){.hash = hash_sse2};
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx2"))
		t->hash = swap_tag_hash_avx2;
#endif
	/* Keyed per VM: a page of another run or another VM (a shared file, a shared
	 * memcached) never carries a matching tag by construction. */
	if (getrandom(&key, sizeof(key), GRND_NONBLOCK) != sizeof(key))
		key = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
	t->key = key;
	/* Only the pages of the array that slots in use reach take memory: slots are
	 * handed out from 0 up, so that is 4 bytes per page in swap (meta.c: a frozen VM
	 * gives them back). */
	if (mm_meta_map(&t->meta, (nslots ? nslots : 1) * sizeof(*t->tag)) < 0)
		return -ENOMEM;
	t->tag = t->meta.base;
	t->nslots = nslots;
	return 0;
}

void swap_tags_free(struct swap_tags *t)
{
	mm_meta_unmap(&t->meta);
	t->tag = NULL;
}

uint32_t swap_tag(const struct swap_tags *t, uint64_t pfn, const void *page)
{
	uint64_t h = t->hash(page, t->key ^ (pfn * 0x9e3779b97f4a7c15ULL));

	return (uint32_t)(h ^ (h >> 32));
}

void swap_tags_set(struct swap_tags *t, uint64_t slot, uint64_t pfn, const void *page)
{
	if (slot < t->nslots)
		t->tag[slot] = swap_tag(t, pfn, page);
}

bool swap_tags_check(const struct swap_tags *t, uint64_t slot, uint64_t pfn, const void *page)
{
	return slot < t->nslots && t->tag[slot] == swap_tag(t, pfn, page);
}
