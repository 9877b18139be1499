/* test_gpa.c: the gpa gate at its boundaries and on overflow */
#include <errno.h>
#include <string.h>

#include "mm/mm.h"
#include "tests/check.h"

int main(void)
{
	struct mm_mem m = {.memfd = -1};
	uint64_t sz = 16ULL << 20;
	char buf[16] = "0123456789abcdef", out[16];

	CHECK(mm_mem_create(&m, 3ULL << 20) == -EINVAL); /* not a multiple of 2 MiB */
	CHECK(mm_mem_create(&m, 0) == -EINVAL);
	CHECK(mm_mem_create(&m, sz) == 0);
	if (check_failures)
		CHECK_DONE();

	CHECK(mm_gpa(&m, 0, 0) == m.hva);
	CHECK(mm_gpa(&m, 0, sz) == m.hva);
	CHECK(mm_gpa(&m, sz, 0) == m.hva + sz); /* empty range at the end is valid */
	CHECK(mm_gpa(&m, sz - 1, 1) == m.hva + sz - 1);
	CHECK(mm_gpa(&m, sz - 1, 2) == NULL);
	CHECK(mm_gpa(&m, sz, 1) == NULL);
	CHECK(mm_gpa(&m, sz + 1, 0) == NULL);
	CHECK(mm_gpa(&m, 0, sz + 1) == NULL);
	CHECK(mm_gpa(&m, UINT64_MAX, 1) == NULL);
	CHECK(mm_gpa(&m, 1, UINT64_MAX) == NULL); /* wraps to 0: must not pass */
	CHECK(mm_gpa(&m, UINT64_MAX, UINT64_MAX) == NULL);
	CHECK(mm_gpa(&m, 4096, UINT64_MAX - 4095) == NULL);

	CHECK(mm_copy_to_guest(&m, sz - 16, buf, 16) == 0);
	CHECK(mm_copy_from_guest(&m, out, sz - 16, 16) == 0 && memcmp(out, buf, 16) == 0);
	CHECK(mm_copy_to_guest(&m, sz - 15, buf, 16) == -EFAULT);
	CHECK(mm_copy_from_guest(&m, out, UINT64_MAX - 3, 16) == -EFAULT);

	/* the VMM's own writes, for KVM dirty tracking's consumers: exactly the pages touched */
	{
		uint64_t bits[64] = {0}; /* 4096 pages = 16 MiB */

		m.host_dirty = bits;
		CHECK(mm_copy_to_guest(&m, 4096 * 70 - 3, buf, 6) == 0);  /* pages 69 and 70 */
		mm_mark_written(&m, 4096 * 200, 4096);			  /* page 200 only */
		mm_mark_written(&m, 4096 * 300, 0);			  /* nothing */
		CHECK(mm_copy_to_guest(&m, sz - 15, buf, 16) == -EFAULT); /* refused: no mark */
		CHECK(bits[1] == (1ULL << 5 | 1ULL << 6) && bits[3] == 1ULL << 8);
		bits[1] = bits[3] = 0;
		for (int i = 0; i < 64; i++)
			CHECK(bits[i] == 0);
		m.host_dirty = NULL;
	}
	mm_mem_destroy(&m);
	CHECK_DONE();
}
