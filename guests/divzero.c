/* divzero.c: an integer division by zero: the VMM must report a #DE and stop */
#include "rt.h"

int main(int argc, char **argv)
{
	volatile uint64_t divisor = (uint64_t)argc - 1; /* 0 unless given arguments */
	uint64_t q;

	(void)argv;
	printf("divzero: dividing by %lu\n", divisor);
	q = 1000 / divisor;
	printf("divzero: FAILED: 1000 / %lu = %lu without a fault\n", divisor, q);
	return 1;
}
