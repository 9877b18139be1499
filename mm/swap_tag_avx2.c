/* swap_tag_avx2.c: swap_tag.c's page hash built for AVX2 (only called where the CPU has it) */
#include <stdint.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mm/mm.h"

uint64_t swap_tag_hash_avx2(const void *page, uint64_t seed)
{
	return XXH3_64bits_withSeed(page, MM_PAGE, seed);
}
