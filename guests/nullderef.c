/* nullderef.c: reads address 0 (page 0 is unmapped): the VMM must report a #PF and stop */
#include "rt.h"

int main(int argc, char **argv)
{
	volatile uint64_t *null = (volatile uint64_t *)0;

	(void)argc;
	(void)argv;

	printf("nullderef: reading address 0\n");
	printf("nullderef: FAILED: read 0x%lx without a fault\n", *null);
	return 1;
}
