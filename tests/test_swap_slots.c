/* test_swap_slots.c: the swap slot allocator: reuse, runs, ENOSPC, a model-checked random mix */
#include <errno.h>
#include <stdbool.h>

#include "tests/swap_test.h"

static struct swap_store *open_store(uint64_t max_pages)
{
	struct swap_store *s;

	CHECK_EQ(swap_open(&s, NULL, max_pages), 0);
	return s;
}

static void test_open_limits(void)
{
	struct swap_slots *sl;
	struct swap_store *s;

	CHECK_EQ(swap_slots_create(&sl, 0), -EINVAL);
	CHECK_EQ(swap_slots_create(&sl, UINT32_MAX), -EFBIG);
	CHECK_EQ(swap_open(&s, NULL, 0), -EINVAL);
	/* The largest allocator reserves 32 GiB of links but touches only what it uses. */
	CHECK_EQ(swap_slots_create(&sl, UINT32_MAX - 1), 0);
	CHECK_EQ(swap_slots_get(sl, 1), 0);
	CHECK_EQ(swap_slots_get(sl, 8), 1);
	swap_slots_put(sl, 4);
	CHECK_EQ(swap_slots_get(sl, 1), 4);
	swap_slots_destroy(sl);
}

static void test_reuse_before_new(void)
{
	struct swap_store *s = open_store(64);
	int64_t a, b;
	int i;

	for (i = 0; i < 10; i++)
		CHECK_EQ(swap_slot_alloc(s), i);
	swap_slot_free(s, 5);
	swap_slot_free(s, 2);
	CHECK_EQ(swap_slots_used(s), 8);
	CHECK(!swap_slot_in_use(s, 5) && swap_slot_in_use(s, 6));
	a = swap_slot_alloc(s);
	b = swap_slot_alloc(s);
	CHECK((a == 2 && b == 5) || (a == 5 && b == 2));
	CHECK_EQ(swap_slot_alloc(s), 10);
	/* Double frees and strangers are ignored, not counted twice. */
	swap_slot_free(s, 3);
	swap_slot_free(s, 3);
	swap_slot_free(s, 63);
	swap_slot_free(s, 1000);
	CHECK_EQ(swap_slots_used(s), 10);
	CHECK_EQ(swap_slot_alloc(s), 3);
	CHECK_EQ(swap_slot_alloc(s), 11);
	swap_close(s);
}

static void test_enospc(void)
{
	struct swap_store *s = open_store(16);
	int i;

	for (i = 0; i < 16; i++)
		CHECK_EQ(swap_slot_alloc(s), i);
	CHECK_EQ(swap_slot_alloc(s), -ENOSPC);
	CHECK_EQ(swap_slot_alloc_run(s, 1), -ENOSPC);
	swap_slot_free(s, 7);
	CHECK_EQ(swap_slot_alloc(s), 7);
	CHECK_EQ(swap_slot_alloc(s), -ENOSPC);
	/* Freeing the top slots lowers the high-water mark: runs fit there again. */
	swap_slot_free(s, 15);
	swap_slot_free(s, 14);
	CHECK_EQ(swap_slot_alloc_run(s, 2), 14);
	CHECK_EQ(swap_slots_used(s), 16);
	swap_close(s);
}

static void test_runs(void)
{
	struct swap_store *s = open_store(64);
	int i;

	CHECK_EQ(swap_slot_alloc_run(s, 0), -EINVAL);
	CHECK_EQ(swap_slot_alloc_run(s, 65), -ENOSPC);
	CHECK_EQ(swap_slot_alloc_run(s, 10), 0);
	CHECK_EQ(swap_slot_alloc_run(s, 10), 10);
	for (i = 3; i < 7; i++)
		swap_slot_free(s, (uint64_t)i);
	/* Never-used slots are preferred for runs while they last... */
	CHECK_EQ(swap_slot_alloc_run(s, 4), 20);
	CHECK_EQ(swap_slot_alloc_run(s, 40), 24);
	/* ...then a hole of freed slots of the right size is found. */
	CHECK_EQ(swap_slot_alloc_run(s, 5), -ENOSPC);
	CHECK_EQ(swap_slot_alloc_run(s, 4), 3);
	CHECK_EQ(swap_slots_used(s), 64);
	/* Fragmented: three free slots, none adjacent. */
	swap_slot_free(s, 0);
	swap_slot_free(s, 2);
	swap_slot_free(s, 40);
	CHECK_EQ(swap_slot_alloc_run(s, 2), -ENOSPC);
	swap_slot_free(s, 1);
	CHECK_EQ(swap_slot_alloc_run(s, 3), 0);
	CHECK_EQ(swap_slot_alloc(s), 40);
	CHECK_EQ(swap_slot_alloc(s), -ENOSPC);
	swap_close(s);

	/* A hole that straddles two bitmap words. */
	s = open_store(200);
	CHECK_EQ(swap_slot_alloc_run(s, 200), 0);
	for (i = 56; i < 68; i++)
		swap_slot_free(s, (uint64_t)i);
	CHECK_EQ(swap_slot_alloc_run(s, 12), 56);
	for (i = 0; i < 200; i++)
		swap_slot_free(s, (uint64_t)i);
	CHECK_EQ(swap_slots_used(s), 0);
	CHECK_EQ(swap_slot_alloc_run(s, 200), 0);
	swap_close(s);
}

/* Random allocs, runs and frees checked against a byte-per-slot model. */
#define MODEL_MAX 3000

static bool model_has_run(const bool *used, uint64_t top, uint32_t n)
{
	uint64_t i, run = 0;

	for (i = 0; i < top; i++) {
		run = used[i] ? 0 : run + 1;
		if (run >= n)
			return true;
	}
	return false;
}

static void test_random_model(void)
{
	static bool used[MODEL_MAX];
	struct swap_slots *sl;
	uint64_t x = 42, nused = 0, top = 0, i;
	int64_t got;
	int op;

	CHECK_EQ(swap_slots_create(&sl, MODEL_MAX), 0);
	for (op = 0; op < 300000; op++) {
		uint64_t r = xorshift(&x);
		uint32_t n = r % 3 ? 1 : 1 + (uint32_t)(r >> 8) % 40;

		/* top: one past the highest used slot, i.e. the allocator's high-water mark. */
		while (top > 0 && !used[top - 1])
			top--;
		/* Runs average ~7 slots, frees take one: keep the fill near 80% to fragment. */
		if ((r >> 20) % 100 < (nused < MODEL_MAX * 4 / 5 ? 20u : 8u)) {
			got = swap_slots_get(sl, n);
			if (got == -ENOSPC) {
				CHECK(!model_has_run(used, top, n) && MODEL_MAX - top < n);
				continue;
			}
			CHECK(got >= 0 && (uint64_t)got + n <= MODEL_MAX);
			/* A single slot is new (>= top) only when no freed slot is waiting. */
			if (n == 1 && (uint64_t)got >= top)
				CHECK(top == nused);
			for (i = (uint64_t)got; i < (uint64_t)got + n; i++) {
				CHECK(!used[i]);
				used[i] = true;
			}
			nused += n;
			if ((uint64_t)got + n > top)
				top = (uint64_t)got + n;
		} else if (nused) {
			do
				i = xorshift(&x) % MODEL_MAX;
			while (!used[i]);
			swap_slots_put(sl, i);
			used[i] = false;
			nused--;
		}
		CHECK_EQ(swap_slots_count(sl), nused);
	}
	for (i = 0; i < MODEL_MAX; i++)
		CHECK_EQ(swap_slots_test(sl, i), used[i]);
	swap_slots_destroy(sl);
}

int main(void)
{
	test_open_limits();
	test_reuse_before_new();
	test_enospc();
	test_runs();
	test_random_model();
	printf("swap_slots: all tests passed\n");
	return 0;
}
