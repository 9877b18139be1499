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
	mm_mem_destroy(&m);
	CHECK_DONE();
}
