/* start.c: C entry for every vCPU, command line splitting, per-vCPU boot info, heap */
#include "rt.h"

#define RT_MAX_ARGS 128

const struct ufvm_boot_info *rt_boot = (const struct ufvm_boot_info *)UFVM_BOOTINFO_BASE;

static char cmdline_copy[UFVM_CMDLINE_MAX];
static char *argv_table[RT_MAX_ARGS + 1];
static uint64_t heap_next;

void rt_start(const struct ufvm_boot_info *bi);

const struct ufvm_boot_info *rt_self(void)
{
	uint64_t sp = (uint64_t)__builtin_frame_address(0);
	uint64_t idx;

	if (sp < UFVM_STACKS_BASE)
		return rt_boot;
	idx = (sp - UFVM_STACKS_BASE) / UFVM_STACK_SIZE;
	if (idx >= UFVM_MAX_CPUS)
		return rt_boot;
	return (const struct ufvm_boot_info *)(UFVM_BOOTINFO_BASE + idx * sizeof(*rt_boot));
}

const char *rt_cmdline(void)
{
	uint64_t gpa = rt_boot->cmdline;

	if (gpa == 0 || gpa >= rt_boot->mem_size)
		return "";
	return (const char *)gpa;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Splits a private copy of the command line, so rt_cmdline() stays intact. */
static int split_cmdline(void)
{
	const char *src = rt_cmdline();
	char *p = cmdline_copy;
	int argc = 0;

	for (size_t i = 0; i < sizeof(cmdline_copy) - 1 && src[i]; i++)
		cmdline_copy[i] = src[i];
	argv_table[argc++] = "guest";
	while (*p) {
		while (is_space(*p))
			*p++ = '\0';
		if (!*p)
			break;
		if (argc == RT_MAX_ARGS) {
			printf("guest: command line has more than %d tokens, ignoring the rest\n",
			       RT_MAX_ARGS - 1);
			break;
		}
		argv_table[argc++] = p;
		while (*p && !is_space(*p))
			p++;
	}
	argv_table[argc] = NULL;
	return argc;
}

void rt_start(const struct ufvm_boot_info *bi)
{
	if (bi->cpu_index == 0) {
		uint64_t zero = 0;

		rt_boot = bi;
		__atomic_compare_exchange_n(&heap_next, &zero, bi->heap_start, 0, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
		if (bi->abi_version != UFVM_ABI_VERSION)
			printf("guest: warning: VMM speaks ABI %u, guest was built for %u\n",
			       bi->abi_version, UFVM_ABI_VERSION);
		int argc = split_cmdline();
		rt_exit(main(argc, argv_table));
	}
	if (ap_main)
		ap_main(bi);
	rt_halt();
}

void *rt_alloc(uint64_t size, uint64_t align)
{
	uint64_t cur = 0, start, end;

	if (align == 0)
		align = 1;

	/* an AP may allocate before vCPU 0 got to set heap_next */
	__atomic_compare_exchange_n(&heap_next, &cur, rt_boot->heap_start, 0, __ATOMIC_SEQ_CST,
				    __ATOMIC_SEQ_CST);
	cur = __atomic_load_n(&heap_next, __ATOMIC_RELAXED);
	do {
		start = (cur + align - 1) & ~(align - 1);
		if (start < cur || __builtin_add_overflow(start, size, &end) ||
		    end > rt_boot->heap_end)
			return NULL;
	} while (!__atomic_compare_exchange_n(&heap_next, &cur, end, 1, __ATOMIC_SEQ_CST,
					      __ATOMIC_RELAXED));
	return (void *)start;
}

uint64_t rt_heap_free(void)
{
	uint64_t cur = __atomic_load_n(&heap_next, __ATOMIC_RELAXED);

	if (cur == 0)
		cur = rt_boot->heap_start;
	return rt_boot->heap_end > cur ? rt_boot->heap_end - cur : 0;
}
