/* hotcold.c: a cold set written once and a hot set rewritten every round, all verified */
#include "rt.h"

static const char usage[] =
    "usage: hotcold [hot=MIB (16)] [cold=MIB (64)] [rounds=K (10)] [seed=S (1)]"
    " [pause_ms=MS (0)]\n"
    "  marks cold-written (then pauses pause_ms), rounds-done, verify-done\n";

/* Values depend on address, seed and round (the cold set uses round 0). */
static inline uint64_t pattern(uint64_t addr, uint64_t round, uint64_t seed)
{
	return rt_mix64(addr ^ (round << 48) ^ (seed * 0x9e3779b97f4a7c15ULL));
}

static void fill(uint64_t *mem, uint64_t words, uint64_t round, uint64_t seed)
{
	for (uint64_t i = 0; i < words; i++)
		mem[i] = pattern((uint64_t)&mem[i], round, seed);
}

/* Checks every word against round's pattern; if next != 0, rewrites it for round next. */
static uint64_t check(const char *set, uint64_t *mem, uint64_t words, uint64_t round, uint64_t next,
		      uint64_t seed, uint64_t *sum)
{
	uint64_t bad = 0, s = 0;

	for (uint64_t i = 0; i < words; i++) {
		uint64_t addr = (uint64_t)&mem[i], want = pattern(addr, round, seed);
		uint64_t got = ((volatile uint64_t *)mem)[i];

		s += got;
		if (got != want && bad++ < 8)
			printf("hotcold: %s set mismatch at %p: got 0x%016lx, want 0x%016lx\n", set,
			       (void *)addr, got, want);
		if (next)
			mem[i] = pattern(addr, next, seed);
	}
	*sum = s;
	return bad;
}

static uint64_t expected_sum(uint64_t *mem, uint64_t words, uint64_t round, uint64_t seed)
{
	uint64_t s = 0;

	for (uint64_t i = 0; i < words; i++)
		s += pattern((uint64_t)&mem[i], round, seed);
	return s;
}

int main(int argc, char **argv)
{
	uint64_t hot = 16, cold = 64, rounds = 10, seed = 1, pause_ms = 0, bad = 0, sum;
	struct rt_opt opts[] = {
	    {"hot", RT_OPT_U64, &hot},		 {"cold", RT_OPT_U64, &cold},
	    {"rounds", RT_OPT_U64, &rounds},	 {"seed", RT_OPT_U64, &seed},
	    {"pause_ms", RT_OPT_U64, &pause_ms},
	};
	uint64_t *hmem = NULL, *cmem = NULL, hwords, cwords, t0, t1, min = UINT64_MAX, max = 0;
	char a[32], b[32];

	if (rt_parse_opts(argc, argv, opts, RT_ARRAY_SIZE(opts)) < 0 || hot == 0 || rounds == 0 ||
	    rounds >= 0xffff) {
		printf("%s", usage);
		return 2;
	}
	if (hot <= (1ULL << 40) && cold <= (1ULL << 40)) {
		cmem = rt_alloc(cold * RT_MIB, 2 * RT_MIB);
		hmem = rt_alloc(hot * RT_MIB, 2 * RT_MIB);
	}
	if (!hmem || (cold && !cmem)) {
		printf("hotcold: hot=%lu + cold=%lu MiB do not fit in the free guest RAM\n%s", hot,
		       cold, usage);
		return 2;
	}
	hwords = hot * RT_MIB / 8;
	cwords = cold * RT_MIB / 8;
	printf("hotcold: hot %lu MiB at %p, cold %lu MiB at %p, %lu rounds\n", hot, (void *)hmem,
	       cold, (void *)cmem, rounds);

	t0 = rt_clock_ns();
	fill(cmem, cwords, 0, seed);
	fill(hmem, hwords, 1, seed);
	t1 = rt_clock_ns();
	printf("hotcold: initial fill %s ms (%s MiB/s)\n", rt_fmt_ms(a, sizeof(a), t1 - t0),
	       rt_fmt_rate(b, sizeof(b), hot + cold, 1, t1 - t0));
	rt_mark("cold-written");
	if (pause_ms)
		rt_delay_ns(pause_ms * 1000000);

	/* round r verifies the hot set's round r pattern and writes round r + 1's */
	for (uint64_t r = 1; r <= rounds; r++) {
		t0 = rt_clock_ns();
		bad += check("hot", hmem, hwords, r, r + 1, seed, &sum);
		t1 = rt_clock_ns();
		min = t1 - t0 < min ? t1 - t0 : min;
		max = t1 - t0 > max ? t1 - t0 : max;
		printf("hotcold: round %lu: %s ms (%s MiB/s read+write)\n", r,
		       rt_fmt_ms(a, sizeof(a), t1 - t0),
		       rt_fmt_rate(b, sizeof(b), hot, 1, t1 - t0));
	}
	rt_mark("rounds-done");
	printf("hotcold: rounds min %s ms, max %s ms\n", rt_fmt_ms(a, sizeof(a), min),
	       rt_fmt_ms(b, sizeof(b), max));

	t0 = rt_clock_ns();
	bad += check("hot", hmem, hwords, rounds + 1, 0, seed, &sum);
	if (sum != expected_sum(hmem, hwords, rounds + 1, seed))
		printf("hotcold: hot set checksum 0x%016lx is wrong\n", sum);
	bad += check("cold", cmem, cwords, 0, 0, seed, &sum);
	if (sum != expected_sum(cmem, cwords, 0, seed))
		printf("hotcold: cold set checksum 0x%016lx is wrong\n", sum);
	t1 = rt_clock_ns();
	rt_mark("verify-done");
	printf("hotcold: verify %lu MiB in %s ms (%s MiB/s)\n", hot + cold,
	       rt_fmt_ms(a, sizeof(a), t1 - t0), rt_fmt_rate(b, sizeof(b), hot + cold, 1, t1 - t0));
	printf("hotcold: %s (%lu mismatches)\n", bad ? "FAILED" : "ok", bad);
	return bad ? 1 : 0;
}
