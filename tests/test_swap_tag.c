/* test_swap_tag.c: swap tags tell a page read back from what was written, by content and place */
#include <errno.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tests/swap_test.h"

static uint8_t page[PAGE], other[PAGE];

int main(void)
{
	struct swap_tags t, t2;
	uint64_t avx2_seen = 0;

	CHECK_EQ(swap_tags_init(&t, 1000), 0);
	CHECK_EQ(swap_tags_init(&t2, 1000), 0);
	for (unsigned i = 0; i < PAGE; i++)
		page[i] = (uint8_t)(i * 7 + 3);
	swap_tags_set(&t, 5, 42, page);
	CHECK(swap_tags_check(&t, 5, 42, page));
	/* another page's content, zeros (a hole), one flipped bit: all caught */
	memcpy(other, page, PAGE);
	other[4095] ^= 1;
	CHECK(!swap_tags_check(&t, 5, 42, other));
	memset(other, 0, PAGE);
	CHECK(!swap_tags_check(&t, 5, 42, other));
	/* the right content in the wrong place: another page's, another slot's */
	CHECK(!swap_tags_check(&t, 5, 43, page));
	CHECK(!swap_tags_check(&t, 6, 42, page));
	/* a tag of another VM (another key) does not vouch for this one's copy */
	CHECK(swap_tag(&t, 42, page) != swap_tag(&t2, 42, page));
	/* slots beyond the table are never trusted */
	swap_tags_set(&t, 1000, 42, page);
	CHECK(!swap_tags_check(&t, 1000, 42, page));
	/* a page of zeros written as zeros reads back fine */
	memset(other, 0, PAGE);
	swap_tags_set(&t, 7, 9, other);
	CHECK(swap_tags_check(&t, 7, 9, other));
#if defined(__x86_64__)
	/* the AVX2 build agrees with the SSE2 build of the same hash (this file's) */
	if (__builtin_cpu_supports("avx2")) {
		CHECK(t.hash == swap_tag_hash_avx2);
		for (uint64_t seed = 0; seed < 64; seed++)
			CHECK_EQ(swap_tag_hash_avx2(page, seed * 0x9e3779b97f4a7c15ULL),
				 XXH3_64bits_withSeed(page, PAGE, seed * 0x9e3779b97f4a7c15ULL));
		avx2_seen = 1;
	}
#endif
	swap_tags_free(&t);
	swap_tags_free(&t2);
	printf("swap tags: ok%s\n", avx2_seen ? " (AVX2)" : "");
	return 0;
}
