/* memtouch.c: guests/memtouch.elf's passes as a Linux program: write a pattern, verify it */
/*
 * For a Linux guest's initramfs (tools/demo_swap.py --linux): a static program that keeps
 * N MiB of anonymous memory (mmap, so the guest kernel's own pages) and, pass after pass,
 * writes a pattern that depends on each word's offset, the pass and the seed, then reads
 * every word back. Each pass after the first first reads back the whole previous pattern,
 * so whatever happened to the VM between two passes (a freeze, a whole-VM swap-out) is
 * checked on every byte. It prints what guests/memtouch.elf prints, so the same checks
 * read both:
 *   memtouch: pass P: M mismatches
 * Exit status 0 when every pass verified, 1 on a mismatch, 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static const char usage[] = "usage: memtouch [mib=N (64)] [passes=P (1)] [seed=S (1)]\n";

/* splitmix64's finalizer: every word differs from its neighbours and from the last pass */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline uint64_t pattern(uint64_t off, uint64_t pass, uint64_t seed)
{
	return mix64(off ^ (pass << 56) ^ (seed * 0x9e3779b97f4a7c15ULL));
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Every word of pass's pattern read back; the number that differ (the first few printed) */
static uint64_t verify(const volatile uint64_t *mem, uint64_t words, uint64_t pass, uint64_t seed)
{
	uint64_t bad = 0;

	for (uint64_t i = 0; i < words; i++) {
		uint64_t want = pattern(i * 8, pass, seed), got = mem[i];

		if (got != want && bad++ < 8)
			printf("memtouch: mismatch at offset 0x%" PRIx64 " (pass %" PRIu64
			       " pattern): got 0x%016" PRIx64 ", want 0x%016" PRIx64 "\n",
			       i * 8, pass, got, want);
	}
	return bad;
}

static int parse(const char *arg, const char *key, uint64_t *out)
{
	size_t n = strlen(key);
	char *end;

	if (strncmp(arg, key, n) || arg[n] != '=')
		return 0;
	*out = strtoull(arg + n + 1, &end, 0);
	return *end || end == arg + n + 1 ? -1 : 1;
}

int main(int argc, char **argv)
{
	uint64_t mib = 64, passes = 1, seed = 1, total_bad = 0;
	volatile uint64_t *mem;

	for (int i = 1; i < argc; i++) {
		int r = parse(argv[i], "mib", &mib);

		if (!r)
			r = parse(argv[i], "passes", &passes);
		if (!r)
			r = parse(argv[i], "seed", &seed);
		if (r != 1) {
			fprintf(stderr, "memtouch: bad argument %s\n%s", argv[i], usage);
			return 2;
		}
	}
	if (mib == 0 || passes == 0 || mib > (SIZE_MAX >> 21)) {
		fprintf(stderr, "%s", usage);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	mem = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("memtouch: mmap");
		return 2;
	}
	printf("memtouch: %" PRIu64 " MiB of anonymous memory, %" PRIu64 " pass(es), seed %" PRIu64
	       "\n",
	       mib, passes, seed);
	for (uint64_t pass = 0; pass < passes; pass++) {
		uint64_t words = (mib << 20) / 8, bad = 0, t0, t1, t2, t3;

		t0 = now_ns();
		if (pass > 0) /* the previous pass's data, still there */
			bad += verify(mem, words, pass - 1, seed);
		t1 = now_ns();
		for (uint64_t i = 0; i < words; i++)
			mem[i] = pattern(i * 8, pass, seed);
		t2 = now_ns();
		bad += verify(mem, words, pass, seed);
		t3 = now_ns();
		printf("memtouch: pass %" PRIu64 ": kept %" PRIu64 " ms, write %" PRIu64
		       " ms, verify %" PRIu64 " ms\n",
		       pass, (t1 - t0) / 1000000, (t2 - t1) / 1000000, (t3 - t2) / 1000000);
		printf("memtouch: pass %" PRIu64 ": %" PRIu64 " mismatches\n", pass, bad);
		total_bad += bad;
	}
	printf("memtouch: %s (%" PRIu64 " mismatches)\n", total_bad ? "FAILED" : "ok", total_bad);
	return total_bad ? 1 : 0;
}
