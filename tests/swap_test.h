/* swap_test.h: checks and page patterns shared by the swap store unit tests */
#ifndef UFVM_SWAP_TEST_H
#define UFVM_SWAP_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"

#define PAGE 4096u

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_) {                                                                    \
			fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n",          \
				__FILE__, __LINE__, #a, #b, a_, b_);                               \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static inline uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Fill a page with bytes that depend on tag, so misplaced pages are caught too. */
static inline void fill_page(void *page, uint64_t tag)
{
	uint64_t x = tag * 0x9e3779b97f4a7c15ULL + 1, w;
	unsigned i;

	for (i = 0; i < PAGE; i += 8) {
		w = xorshift(&x);
		memcpy((char *)page + i, &w, 8);
	}
}

/* FNV-1a over a page. */
static inline uint64_t page_sum(const void *page)
{
	const unsigned char *p = page;
	uint64_t h = 0xcbf29ce484222325ULL;
	unsigned i;

	for (i = 0; i < PAGE; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

static inline void *page_alloc(size_t npages)
{
	void *p = aligned_alloc(PAGE, npages * PAGE);

	CHECK(p);
	return p;
}

#endif
