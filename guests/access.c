/* access.c: a known access pattern for access tracking: a set rewritten, a set only read, a set
 * left idle */
#include "rt.h"

static const char usage[] =
    "usage: access [write=MIB (8)] [read=MIB (8)] [idle=MIB (32)] [ms=MS (3000)] [seed=S (1)]\n"
    "  fills all three sets, marks pattern-start, then for ms milliseconds rewrites the\n"
    "  write set and reads the read set; marks pattern-done and verifies every word\n";

static inline uint64_t pattern(uint64_t addr, uint64_t gen, uint64_t seed)
{
	return rt_mix64(addr ^ (gen << 48) ^ (seed * 0x9e3779b97f4a7c15ULL));
}

static void fill(uint64_t *m, uint64_t words, uint64_t gen, uint64_t seed)
{
	for (uint64_t i = 0; i < words; i++)
		m[i] = pattern((uint64_t)&m[i], gen, seed);
}

/* Mismatches against generation gen; the sum of the words read goes to *sum. */
static uint64_t verify(const char *set, const uint64_t *m, uint64_t words, uint64_t gen,
		       uint64_t seed, uint64_t *sum)
{
	uint64_t bad = 0, s = 0;

	for (uint64_t i = 0; i < words; i++) {
		uint64_t got = ((const volatile uint64_t *)m)[i],
			 want = pattern((uint64_t)&m[i], gen, seed);

		s += got;
		if (got != want && bad++ < 8)
			printf("access: %s set mismatch at %p: got 0x%016lx, want 0x%016lx\n", set,
			       (void *)&m[i], got, want);
	}
	*sum = s;
	return bad;
}

int main(int argc, char **argv)
{
	uint64_t w = 8, r = 8, idle = 32, ms = 3000, seed = 1, bad = 0, gen = 1, loops = 0, sum = 0;
	struct rt_opt opts[] = {
	    {"write", RT_OPT_U64, &w}, {"read", RT_OPT_U64, &r},    {"idle", RT_OPT_U64, &idle},
	    {"ms", RT_OPT_U64, &ms},   {"seed", RT_OPT_U64, &seed},
	};
	uint64_t *wm, *rm, *im, t_end, s;

	if (rt_parse_opts(argc, argv, opts, RT_ARRAY_SIZE(opts)) < 0 || !w || !r || !idle ||
	    w > (1ULL << 20) || r > (1ULL << 20) || idle > (1ULL << 20)) {
		printf("%s", usage);
		return 2;
	}
	wm = rt_alloc(w * RT_MIB, 2 * RT_MIB);
	rm = rt_alloc(r * RT_MIB, 2 * RT_MIB);
	im = rt_alloc(idle * RT_MIB, 2 * RT_MIB);
	if (!wm || !rm || !im) {
		printf("access: the sets do not fit in guest RAM\n%s", usage);
		return 2;
	}
	/* the test reads these lines to find the sets in guest-physical memory */
	printf("access: write %p %lu MiB\naccess: read %p %lu MiB\naccess: idle %p %lu MiB\n",
	       (void *)wm, w, (void *)rm, r, (void *)im, idle);
	fill(wm, w * RT_MIB / 8, gen, seed);
	fill(rm, r * RT_MIB / 8, 0, seed);
	fill(im, idle * RT_MIB / 8, 0, seed);
	rt_mark("pattern-start");
	printf("access: pattern started\n");
	t_end = rt_clock_ns() + ms * 1000000;
	while (rt_clock_ns() < t_end) {
		bad += verify("read", rm, r * RT_MIB / 8, 0, seed, &s);
		sum += s;
		fill(wm, w * RT_MIB / 8, ++gen, seed);
		loops++;
	}
	rt_mark("pattern-done");
	bad += verify("write", wm, w * RT_MIB / 8, gen, seed, &s);
	bad += verify("read", rm, r * RT_MIB / 8, 0, seed, &s);
	bad += verify("idle", im, idle * RT_MIB / 8, 0, seed, &s);
	printf("access: %lu loops (checksum 0x%016lx); %s (%lu mismatches)\n", loops, sum,
	       bad ? "FAILED" : "ok", bad);
	return bad ? 1 : 0;
}
