/* memtouch.c: write a seeded pattern over N MiB, read it back, report MiB/s and mismatches */
#include "rt.h"

static const char usage[] =
    "usage: memtouch [mib=N (64)] [passes=P (1)] [seed=S (1)] [pause_ms=MS (0)]\n"
    "  marks write-start, write-done, written, verify-start, verify-done per pass;\n"
    "  pause_ms spins after 'written' so the host can act on the idle VM\n";

/* Every 8-byte word's value depends on its address, the pass and the seed. */
static inline uint64_t pattern(uint64_t addr, uint64_t pass, uint64_t seed)
{
	return rt_mix64(addr ^ (pass << 56) ^ (seed * 0x9e3779b97f4a7c15ULL));
}

static void write_pass(uint64_t *mem, uint64_t words, uint64_t pass, uint64_t seed)
{
	for (uint64_t i = 0; i < words; i++)
		mem[i] = pattern((uint64_t)&mem[i], pass, seed);
}

static uint64_t verify_pass(const volatile uint64_t *mem, uint64_t words, uint64_t pass,
			    uint64_t seed)
{
	uint64_t bad = 0;

	for (uint64_t i = 0; i < words; i++) {
		uint64_t want = pattern((uint64_t)&mem[i], pass, seed), got = mem[i];

		if (got == want)
			continue;
		if (bad++ < 8)
			printf("memtouch: mismatch at %p (page %p): got 0x%016lx, want 0x%016lx\n",
			       (void *)&mem[i], (void *)((uint64_t)&mem[i] & ~0xfffULL), got, want);
	}
	return bad;
}

static void report(const char *what, uint64_t mib, uint64_t ns)
{
	char rate[32], ms[32];

	printf("memtouch: %-6s %lu MiB in %s ms: %s MiB/s\n", what, mib,
	       rt_fmt_ms(ms, sizeof(ms), ns), rt_fmt_rate(rate, sizeof(rate), mib, 1, ns));
}

int main(int argc, char **argv)
{
	uint64_t mib = 64, passes = 1, seed = 1, pause_ms = 0, total_bad = 0;
	struct rt_opt opts[] = {{"mib", RT_OPT_U64, &mib},
				{"passes", RT_OPT_U64, &passes},
				{"seed", RT_OPT_U64, &seed},
				{"pause_ms", RT_OPT_U64, &pause_ms}};
	uint64_t *mem;

	if (rt_parse_opts(argc, argv, opts, RT_ARRAY_SIZE(opts)) < 0 || mib == 0 || passes == 0) {
		printf("%s", usage);
		return 2;
	}
	mem = mib <= (UINT64_MAX >> 20) ? rt_alloc(mib * RT_MIB, RT_MIB * 2) : NULL;
	if (!mem) {
		printf("memtouch: mib=%lu does not fit in the %lu MiB of free guest RAM\n%s", mib,
		       rt_heap_free() >> 20, usage);
		return 2;
	}
	printf("memtouch: %lu MiB at %p, %lu pass(es), seed %lu\n", mib, (void *)mem, passes, seed);
	for (uint64_t pass = 0; pass < passes; pass++) {
		uint64_t words = mib * RT_MIB / 8, t0, t1, t2, t3, bad;

		rt_mark("write-start");
		t0 = rt_clock_ns();
		write_pass(mem, words, pass, seed);
		t1 = rt_clock_ns();
		rt_mark("write-done");
		rt_mark("written");
		if (pause_ms)
			rt_delay_ns(pause_ms * 1000000);
		rt_mark("verify-start");
		t2 = rt_clock_ns();
		bad = verify_pass(mem, words, pass, seed);
		t3 = rt_clock_ns();
		rt_mark("verify-done");
		printf("memtouch: pass %lu\n", pass);
		report("write", mib, t1 - t0);
		report("verify", mib, t3 - t2);
		printf("memtouch: pass %lu: %lu mismatches\n", pass, bad);
		total_bad += bad;
	}
	printf("memtouch: %s (%lu mismatches)\n", total_bad ? "FAILED" : "ok", total_bad);
	return total_bad ? 1 : 0;
}
