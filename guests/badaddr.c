/* badaddr.c: a hypercall whose argument struct is outside guest RAM: the VMM must stop the VM */
#include "rt.h"

static const char usage[] = "usage: badaddr [where=high|end|straddle (high)] [addr=GPA]\n"
			    "  high: 0xfffff000; end: the first byte past RAM;"
			    " straddle: 8 bytes before the end of RAM\n";

int main(int argc, char **argv)
{
	const char *where = "high";
	uint64_t addr = 0;
	struct rt_opt opts[] = {{"where", RT_OPT_STR, &where}, {"addr", RT_OPT_U64, &addr}};

	if (rt_parse_opts(argc, argv, opts, RT_ARRAY_SIZE(opts)) < 0)
		goto bad_usage;
	if (addr == 0) {
		if (strcmp(where, "high") == 0)
			addr = 0xfffff000;
		else if (strcmp(where, "end") == 0)
			addr = rt_boot->mem_size;
		else if (strcmp(where, "straddle") == 0)
			addr = rt_boot->mem_size - 8; /* struct ufvm_hc_write is 24 bytes */
		else
			goto bad_usage;
	}
	if (addr >> 32) {
		printf("badaddr: 0x%lx does not fit in %%eax: RAM is larger than 4 GiB?\n", addr);
		return 2;
	}
	printf("badaddr: write hypercall with its argument at 0x%lx (RAM ends at 0x%lx)\n", addr,
	       rt_boot->mem_size);
	rt_hypercall_gpa(UFVM_HC_WRITE, (uint32_t)addr);
	printf("badaddr: FAILED: the VMM let the guest continue\n");
	return 1;

bad_usage:
	printf("%s", usage);
	return 2;
}
