/* triplefault.c: zeroes the IDT, then faults: no handler can run, so the CPU shuts down */
#include "rt.h"

int main(int argc, char **argv)
{
	volatile uint64_t *idt = (volatile uint64_t *)UFVM_IDT_BASE;

	(void)argc;
	(void)argv;

	printf("triplefault: zeroing the IDT at %p\n", (void *)idt);
	for (uint64_t i = 0; i < UFVM_PAGE_SIZE / 8; i++)
		idt[i] = 0;
	printf("triplefault: IDT cleared, executing ud2\n");
	__asm__ volatile("ud2");
	printf("triplefault: FAILED: survived ud2 with an empty IDT\n");
	return 1;
}
