/* hello.c: smallest guest: greets, shows its boot info and command line */
#include "rt.h"

/* probe: write and read back one word per GiB of free RAM and the last word of RAM, so a
 * test sees that all of --mem (up to 64G) is mapped. The number of wrong words. */
static uint64_t probe(const struct ufvm_boot_info *bi)
{
	volatile uint64_t *last = (volatile uint64_t *)(bi->mem_size - 8);
	uint64_t bad = 0, n = 0;

	for (uint64_t a = bi->heap_start; a < bi->heap_end; a += 1ULL << 30, n++)
		*(volatile uint64_t *)a = a ^ 0x5a5a5a5a5a5a5a5aULL;
	*last = 0xfeedfacecafebeefULL;
	for (uint64_t a = bi->heap_start; a < bi->heap_end; a += 1ULL << 30)
		bad += *(volatile uint64_t *)a != (a ^ 0x5a5a5a5a5a5a5a5aULL);
	bad += *last != 0xfeedfacecafebeefULL;
	printf("probe: %lu GiB steps and the last word at %p: %s\n", n, (void *)last,
	       bad ? "WRONG" : "ok");
	return bad;
}

int main(int argc, char **argv)
{
	const struct ufvm_boot_info *bi = rt_boot;
	uint64_t status = 0;

	printf("Hello from ufvm guest (cpu %u of %u, %lu MiB RAM)\n", bi->cpu_index, bi->cpu_count,
	       bi->mem_size >> 20);
	printf("cmdline: \"%s\"\n", rt_cmdline());
	for (int i = 1; i < argc; i++)
		printf("argv[%d] = \"%s\"\n", i, argv[i]);
	printf("heap: %p..%p, tsc: %lu kHz, abi %u\n", (void *)bi->heap_start, (void *)bi->heap_end,
	       bi->tsc_khz, bi->abi_version);
	/* any other token is only echoed, so hello can show what the VMM passed */
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "exit=", 5) == 0 &&
		    (rt_parse_u64(argv[i] + 5, &status) < 0 || status > 255)) {
			printf("usage: hello [exit=STATUS (0..255)] [probe] [anything else, "
			       "echoed]\n");
			return 2;
		}
	}
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "probe") == 0 && probe(bi))
			return 1;
	return (int)status;
}
