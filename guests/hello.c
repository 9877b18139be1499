/* hello.c: smallest guest: greets, shows its boot info and command line */
#include "rt.h"

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
			printf("usage: hello [exit=STATUS (0..255)] [anything else, echoed]\n");
			return 2;
		}
	}
	return (int)status;
}
