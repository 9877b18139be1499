/* smp.c: every vCPU tests its own memory, a neighbour's, and shared atomic counters */
#include "rt.h"

static const char usage[] = "usage: smp [mib=N total (16)] [iters=I per vCPU (1000000)]"
			    " [counters=C (64)] [timeout_s=T (20)]\n";

struct cpu_stats {
	uint64_t write_ns, verify_ns, atomic_ns;
	uint64_t write_t0, write_t1; /* host clock: the write phase, for the VM-wide figure */
	uint64_t own_bad, neighbour_bad;
	uint64_t started;
} __attribute__((aligned(64)));

/* Parameters and shared state, published by vCPU 0 through `go`. */
static struct {
	uint64_t chunk_words, iters, ncounters, timeout_ns;
	uint64_t *mem, *counters, *total;
	struct rt_barrier barrier;
	uint32_t go;
	uint32_t timed_out;
} g;
static struct cpu_stats stats[UFVM_MAX_CPUS];

static inline uint64_t pattern(uint64_t addr, uint32_t cpu)
{
	return rt_mix64(addr ^ ((uint64_t)cpu << 56));
}

static uint64_t verify(const volatile uint64_t *chunk, uint64_t words, uint32_t owner,
		       uint32_t self)
{
	uint64_t bad = 0;

	for (uint64_t i = 0; i < words; i++) {
		uint64_t got = chunk[i], want = pattern((uint64_t)&chunk[i], owner);

		if (got != want && bad++ < 4)
			printf("smp: cpu %u: cpu %u's word at %p: got 0x%016lx, want 0x%016lx\n",
			       self, owner, (void *)&chunk[i], got, want);
	}
	return bad;
}

static int barrier(uint32_t cpu)
{
	if (rt_barrier_wait(&g.barrier, g.timeout_ns) == 0)
		return 0;
	printf("smp: cpu %u: barrier timed out: %u of %u vCPUs arrived\n", cpu,
	       __atomic_load_n(&g.barrier.waiting, __ATOMIC_RELAXED), g.barrier.n);
	rt_store_release(&g.timed_out, 1);
	return -1;
}

/* Runs on every vCPU; returns -1 if a barrier timed out. */
static int worker(uint32_t cpu, uint32_t n)
{
	struct cpu_stats *st = &stats[cpu];
	uint64_t *own = g.mem + cpu * g.chunk_words;
	uint64_t *next = g.mem + ((cpu + 1) % n) * g.chunk_words;
	uint64_t t0, t1;

	st->started = 1;
	if (rt_self()->cpu_index != cpu) {
		printf("smp: cpu %u: rt_self() says cpu %u\n", cpu, rt_self()->cpu_index);
		st->own_bad++;
	}
	t0 = rt_clock_ns();
	for (uint64_t i = 0; i < g.chunk_words; i++)
		own[i] = pattern((uint64_t)&own[i], cpu);
	t1 = rt_clock_ns();
	st->write_ns = t1 - t0;
	st->write_t0 = t0;
	st->write_t1 = t1;
	st->own_bad += verify(own, g.chunk_words, cpu, cpu);
	st->verify_ns = rt_clock_ns() - t1;
	if (barrier(cpu))
		return -1;
	/* every neighbour finished writing: its stores must be visible here */
	st->neighbour_bad = verify(next, g.chunk_words, (cpu + 1) % n, cpu);

	t0 = rt_clock_ns();
	for (uint64_t i = 0; i < g.iters; i++) {
		rt_fetch_add(&g.counters[(i + cpu) % g.ncounters], 1);
		rt_fetch_add(g.total, 1);
	}
	st->atomic_ns = rt_clock_ns() - t0;
	return barrier(cpu);
}

void ap_main(const struct ufvm_boot_info *bi)
{
	while (!rt_load_acquire(&g.go))
		rt_pause();
	worker(bi->cpu_index, bi->cpu_count);
}

/* How often cpu's loop (i + cpu) % C == c hits counter c in iters iterations. */
static uint64_t expected_count(uint64_t c, uint32_t ncpus)
{
	uint64_t sum = 0, C = g.ncounters;

	for (uint32_t cpu = 0; cpu < ncpus; cpu++)
		sum += g.iters / C + ((c + C - cpu % C) % C < g.iters % C ? 1 : 0);
	return sum;
}

static uint64_t report(uint32_t n)
{
	uint64_t bad = 0, first = UINT64_MAX, last = 0;
	char a[32], b[32], c[32];

	/* the VM's own rate: all vCPUs' bytes over the wall-clock span of their writes */
	for (uint32_t cpu = 0; cpu < n; cpu++) {
		first = stats[cpu].write_t0 < first ? stats[cpu].write_t0 : first;
		last = stats[cpu].write_t1 > last ? stats[cpu].write_t1 : last;
	}
	printf("smp: all %u vCPUs wrote %lu MiB in %s ms (wall clock): %s MiB/s\n", n,
	       (uint64_t)(g.chunk_words * 8 * n / RT_MIB), rt_fmt_ms(a, sizeof(a), last - first),
	       rt_fmt_rate(b, sizeof(b), g.chunk_words * 8 * n, RT_MIB, last - first));
	for (uint32_t cpu = 0; cpu < n; cpu++) {
		const struct cpu_stats *st = &stats[cpu];
		uint64_t bytes = g.chunk_words * 8;

		printf("smp: cpu %u: write %s MiB/s, verify %s MiB/s, %lu atomic adds in %s ms, "
		       "errors own %lu neighbour %lu\n",
		       cpu, rt_fmt_rate(a, sizeof(a), bytes, RT_MIB, st->write_ns),
		       rt_fmt_rate(b, sizeof(b), bytes, RT_MIB, st->verify_ns), 2 * g.iters,
		       rt_fmt_ms(c, sizeof(c), st->atomic_ns), st->own_bad, st->neighbour_bad);
		bad += st->own_bad + st->neighbour_bad;
	}
	for (uint64_t i = 0; i < g.ncounters; i++) {
		uint64_t got = g.counters[i], want = expected_count(i, n);

		if (got != want && bad++ < 8)
			printf("smp: counter %lu is %lu, want %lu\n", i, got, want);
	}
	if (*g.total != n * g.iters) {
		printf("smp: total counter is %lu, want %lu\n", *g.total, n * g.iters);
		bad++;
	}
	return bad;
}

int main(int argc, char **argv)
{
	uint32_t n = rt_boot->cpu_count;
	uint64_t mib = 16, iters = 1000000, ncounters = 64, timeout_s = 20, bad;
	struct rt_opt opts[] = {{"mib", RT_OPT_U64, &mib},
				{"iters", RT_OPT_U64, &iters},
				{"counters", RT_OPT_U64, &ncounters},
				{"timeout_s", RT_OPT_U64, &timeout_s}};

	if (rt_parse_opts(argc, argv, opts, RT_ARRAY_SIZE(opts)) < 0 || mib == 0 ||
	    mib > (1ULL << 30) || ncounters == 0 || ncounters > (1 << 20) || timeout_s > 3600) {
		printf("%s", usage);
		return 2;
	}
	g.chunk_words = mib * RT_MIB / n / UFVM_PAGE_SIZE * UFVM_PAGE_SIZE / 8;
	g.iters = iters;
	g.ncounters = ncounters;
	g.timeout_ns = timeout_s * 1000000000;
	g.mem = rt_alloc(mib * RT_MIB, 2 * RT_MIB);
	g.counters = rt_alloc(ncounters * 8, 64);
	g.total = rt_alloc(64, 64);
	if (!g.mem || !g.counters || !g.total || g.chunk_words == 0) {
		printf("smp: mib=%lu does not fit in the free guest RAM or is too small for %u "
		       "vCPUs\n%s",
		       mib, n, usage);
		return 2;
	}
	printf("smp: %u vCPUs, %lu KiB each at %p, %lu iterations over %lu counters\n", n,
	       g.chunk_words * 8 >> 10, (void *)g.mem, iters, ncounters);
	g.barrier.n = n;
	rt_store_release(&g.go, 1);

	if (worker(0, n) < 0) {
		for (uint32_t cpu = 0; cpu < n; cpu++)
			if (!__atomic_load_n(&stats[cpu].started, __ATOMIC_RELAXED))
				printf("smp: cpu %u never started\n", cpu);
		printf("smp: FAILED (barrier timeout)\n");
		return 1;
	}
	bad = report(n);
	printf("smp: %s (%lu errors)\n", bad ? "FAILED" : "ok", bad);
	return bad ? 1 : 0;
}
