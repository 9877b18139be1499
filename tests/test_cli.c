/* test_cli.c: size and count parsing, including overflow and junk */
#include <errno.h>

#include "tests/check.h"
#include "vmm/vmm.h"

int main(void)
{
	uint64_t v = 0;
	unsigned u = 0;

	CHECK(cli_parse_size("0", &v) == 0 && v == 0);
	CHECK(cli_parse_size("4096", &v) == 0 && v == 4096);
	CHECK(cli_parse_size("64K", &v) == 0 && v == 64 << 10);
	CHECK(cli_parse_size("512m", &v) == 0 && v == 512ULL << 20);
	CHECK(cli_parse_size("2G", &v) == 0 && v == 2ULL << 30);
	CHECK(cli_parse_size("2GiB", &v) == 0 && v == 2ULL << 30);
	CHECK(cli_parse_size("1MB", &v) == 0 && v == 1ULL << 20);
	CHECK(cli_parse_size("16777216T", &v) == -ERANGE); /* 2^64 */
	CHECK(cli_parse_size("18446744073709551615", &v) == 0 && v == UINT64_MAX);
	CHECK(cli_parse_size("18446744073709551616", &v) == -ERANGE);
	CHECK(cli_parse_size("", &v) == -EINVAL);
	CHECK(cli_parse_size("M", &v) == -EINVAL);
	CHECK(cli_parse_size("3X", &v) == -EINVAL);
	CHECK(cli_parse_size("-1", &v) == -EINVAL);
	CHECK(cli_parse_size(" 1", &v) == -EINVAL);
	CHECK(cli_parse_size("1 M", &v) == -EINVAL);
	CHECK(cli_parse_size("1Mx", &v) == -EINVAL);
	CHECK(cli_parse_size("1KK", &v) == -EINVAL);
	CHECK(cli_parse_size(NULL, &v) == -EINVAL);

	CHECK(cli_parse_uint("1", 1, 64, &u) == 0 && u == 1);
	CHECK(cli_parse_uint("64", 1, 64, &u) == 0 && u == 64);
	CHECK(cli_parse_uint("0", 1, 64, &u) == -ERANGE);
	CHECK(cli_parse_uint("65", 1, 64, &u) == -ERANGE);
	CHECK(cli_parse_uint("99999999999999999999", 1, 64, &u) == -ERANGE);
	CHECK(cli_parse_uint("", 1, 64, &u) == -EINVAL);
	CHECK(cli_parse_uint("2x", 1, 64, &u) == -EINVAL);
	CHECK(cli_parse_uint("-2", 1, 64, &u) == -EINVAL);
	CHECK_DONE();
}
