/* sync.c: spin barrier for the vCPUs of an SMP guest */
#include "rt.h"

/*
 * Generation barrier: the last arrival resets the count and then bumps the
 * generation with release order, so a vCPU that sees the new generation also
 * sees the reset count when it arrives at the next barrier.
 */
int rt_barrier_wait(struct rt_barrier *b, uint64_t timeout_ns)
{
	uint32_t gen = rt_load_acquire(&b->generation);
	uint64_t deadline = 0;

	if (rt_add_fetch(&b->waiting, 1) == b->n) {
		__atomic_store_n(&b->waiting, 0, __ATOMIC_RELAXED);
		rt_store_release(&b->generation, gen + 1);
		return 0;
	}
	if (timeout_ns)
		deadline = rt_clock_ns() + timeout_ns;
	for (uint64_t spins = 1; rt_load_acquire(&b->generation) == gen; spins++) {
		rt_pause();
		/* the clock is a VM exit: look at it rarely */
		if (deadline && (spins & 0xfffff) == 0 && rt_clock_ns() > deadline)
			return -1;
	}
	return 0;
}
