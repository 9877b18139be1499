/* forgeexc.c: user code forges a crash report on the exception stubs' port: the VMM must refuse it
 */
#include "rt.h"

#define TSS_IOMAP 104 /* vmm/x86.c: each vCPU's TSS, its I/O bitmap at this offset */

/*
 * The exception stubs run at CPL 0 and report with an OUT to UFVM_EXC_PORT,
 * a frame of vector, error code, rip, cs, rflags, rsp, ss at %rsp. This guest
 * runs at CPL 3, opens the port in its own TSS's I/O bitmap (guest RAM is its
 * to write; with IOPL 3 it needs not even that) and reports a #DE at RIP 0 it
 * never had. The VMM must take that as the unexpected port I/O it is.
 */
int main(int argc, char **argv)
{
	static uint64_t frame[7] = {0, 0, 0x0, 0x2b, 0x202, 0x1000, 0x23};
	uint8_t *tss = (uint8_t *)(UFVM_TSS_BASE + 512ULL * rt_boot->cpu_index);

	(void)argc;
	(void)argv;
	tss[TSS_IOMAP + UFVM_EXC_PORT / 8] &= (uint8_t) ~(1u << (UFVM_EXC_PORT % 8));
	printf("forgeexc: reporting a divide error at RIP 0 from CPL 3\n");
	__asm__ volatile("mov %%rsp, %%rbx\n\t"
			 "mov %0, %%rsp\n\t"
			 "mov %1, %%dx\n\t"
			 "out %%al, %%dx\n\t"
			 "mov %%rbx, %%rsp"
			 :
			 : "r"(frame), "i"(UFVM_EXC_PORT)
			 : "rbx", "rdx", "memory");
	printf("forgeexc: FAILED: the VMM let the guest go on\n");
	return 1;
}
