/* cli.c: parsing of sizes and counts given on the command line */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "vmm/vmm.h"

int cli_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return -ERANGE;
	}
	switch (*p) {
	case 'k':
	case 'K':
		mul = 1ULL << 10;
		p++;
		break;
	case 'm':
	case 'M':
		mul = 1ULL << 20;
		p++;
		break;
	case 'g':
	case 'G':
		mul = 1ULL << 30;
		p++;
		break;
	case 't':
	case 'T':
		mul = 1ULL << 40;
		p++;
		break;
	default:
		break;
	}
	if (mul > 1 && (strcmp(p, "iB") == 0 || strcmp(p, "B") == 0))
		p += strlen(p);
	if (*p != '\0')
		return -EINVAL;
	if (__builtin_mul_overflow(v, mul, &v))
		return -ERANGE;
	*out = v;
	return 0;
}

int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > max)
			return -ERANGE;
	}
	if (v < min)
		return -ERANGE;
	*out = (unsigned)v;
	return 0;
}
