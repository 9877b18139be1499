/* args.c: key=value parameters with K/M/G suffixes and decimal fractions */
#include "rt.h"

int rt_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	uint64_t v, mult = 1;

	if (*s < '0' || *s > '9')
		return -1;
	v = strtoul(s, &end, 0);
	if (end == s || v == ~0UL)
		return -1;
	switch (*end) {
	case 'k':
	case 'K':
		mult = 1ULL << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mult = 1ULL << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mult = 1ULL << 30;
		end++;
		break;
	}
	if (*end != '\0' || __builtin_mul_overflow(v, mult, &v))
		return -1;
	*out = v;
	return 0;
}

int rt_parse_micro(const char *s, uint64_t *out)
{
	uint64_t whole = 0, frac = 0, scale = 1000000;
	const char *p = s;

	if ((*p < '0' || *p > '9') && *p != '.')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++)
		if (__builtin_mul_overflow(whole, 10, &whole) ||
		    __builtin_add_overflow(whole, (uint64_t)(*p - '0'), &whole))
			return -1;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			scale /= 10; /* digits beyond the sixth are dropped */
			frac += (uint64_t)(*p - '0') * scale;
		}
	}
	if (*p != '\0' || __builtin_mul_overflow(whole, 1000000, &whole) ||
	    __builtin_add_overflow(whole, frac, out))
		return -1;
	return 0;
}

static const struct rt_opt *find_opt(const struct rt_opt *opts, size_t nopts, const char *tok,
				     size_t keylen)
{
	for (size_t i = 0; i < nopts; i++)
		if (strlen(opts[i].key) == keylen && strncmp(opts[i].key, tok, keylen) == 0)
			return &opts[i];
	return NULL;
}

int rt_parse_opts(int argc, char **argv, const struct rt_opt *opts, size_t nopts)
{
	for (int i = 1; i < argc; i++) {
		const char *tok = argv[i], *eq = strchr(tok, '=');
		const struct rt_opt *o;
		int bad = 0;

		if (!eq) {
			printf("guest: parameter '%s': expected key=value\n", tok);
			return -1;
		}
		o = find_opt(opts, nopts, tok, (size_t)(eq - tok));
		if (!o) {
			printf("guest: parameter '%s': unknown key '%.*s'\n", tok, (int)(eq - tok),
			       tok);
			return -1;
		}
		switch (o->type) {
		case RT_OPT_U64:
			bad = rt_parse_u64(eq + 1, o->val);
			break;
		case RT_OPT_MICRO:
			bad = rt_parse_micro(eq + 1, o->val);
			break;
		case RT_OPT_STR:
			*(const char **)o->val = eq + 1;
			break;
		}
		if (bad) {
			printf("guest: parameter '%s': '%s' is not a valid %s\n", tok, eq + 1,
			       o->type == RT_OPT_U64 ? "number (digits, 0x.., K/M/G suffix)"
						     : "decimal fraction");
			return -1;
		}
	}
	return 0;
}
