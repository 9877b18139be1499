/* busy.c: keeps every vCPU busy one way until the VM is stopped (tests/e2e_stop.py) */
#include "rt.h"

static const char usage[] =
    "usage: busy [mode=spin|exits|halt|console|touch (spin)] [mib=N for touch (64)]\n"
    "  spin: every vCPU computes, no exits; exits: every vCPU reads the host clock in a\n"
    "  loop; halt: vCPU 0 computes, the others halt; console: every vCPU writes to the\n"
    "  console without end; touch: vCPU 0 writes N MiB, marks 'written', then reads\n"
    "  them over and over (the others compute). Each marks 'busy' once it is.\n";

enum mode { SPIN, EXITS, HALT, CONSOLE, TOUCH };

/* Published by vCPU 0 through `go`. */
static struct {
	enum mode mode;
	uint32_t go;
	uint32_t started; /* vCPUs in their loop */
} g;

static volatile uint64_t sink;

static _Noreturn void spin(void)
{
	uint64_t x = 1;

	for (;;) {
		x = rt_mix64(x);
		sink = x;
	}
}

static _Noreturn void exits(void)
{
	for (;;)
		sink += rt_clock_ns();
}

static _Noreturn void console(uint32_t cpu)
{
	static char line[64][128];
	char *buf = line[cpu % 64];
	int n = snprintf(buf, 128, "busy: cpu %u fills the console %0*d\n", cpu, 80, 0);

	for (;;)
		rt_write(buf, (uint64_t)n);
}

static _Noreturn void touch(uint64_t mib)
{
	uint64_t words = mib * (1 << 20) / 8, bad = 0;
	uint64_t *mem = rt_alloc(words * 8, 4096);

	if (!mem) {
		printf("busy: cannot allocate %lu MiB\n", mib);
		rt_exit(2);
	}
	for (uint64_t i = 0; i < words; i++)
		mem[i] = rt_mix64(i);
	rt_mark("written");
	for (;;) {
		for (uint64_t i = 0; i < words; i += 512) /* a word per page */
			if (mem[i] != rt_mix64(i) && bad++ < 4)
				printf("busy: word %lu: got 0x%lx\n", i, mem[i]);
	}
}

static _Noreturn void run(uint32_t cpu, uint64_t mib)
{
	if (rt_add_fetch(&g.started, 1) == rt_boot->cpu_count || (g.mode == HALT && cpu == 0))
		rt_mark("busy");
	switch (g.mode) {
	case EXITS:
		exits();
	case CONSOLE:
		console(cpu);
	case TOUCH:
		if (cpu == 0)
			touch(mib);
		spin();
	default:
		spin();
	}
}

void ap_main(const struct ufvm_boot_info *bi)
{
	while (!rt_load_acquire(&g.go))
		rt_pause();
	if (g.mode == HALT)
		return; /* the runtime halts this vCPU */
	run(bi->cpu_index, 0);
}

int main(int argc, char **argv)
{
	static const char *const names[] = {"spin", "exits", "halt", "console", "touch"};
	const char *mode = "spin";
	uint64_t mib = 64;
	struct rt_opt opts[] = {{"mode", RT_OPT_STR, &mode}, {"mib", RT_OPT_U64, &mib}};
	unsigned m;

	if (rt_parse_opts(argc, argv, opts, 2) < 0) {
		printf("%s", usage);
		return 2;
	}
	for (m = 0; m < 5 && strcmp(mode, names[m]); m++)
		;
	if (m == 5 || !mib) {
		printf("%s", usage);
		return 2;
	}
	g.mode = (enum mode)m;
	printf("busy: mode %s on %u vCPU(s)\n", names[m], rt_boot->cpu_count);
	rt_store_release(&g.go, 1);
	run(0, mib);
}
