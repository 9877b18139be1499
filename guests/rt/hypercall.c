/* hypercall.c: the five hypercalls of include/ufvm/abi.h, as port writes */
#include "rt.h"

void rt_hypercall_gpa(unsigned nr, uint32_t gpa)
{
	/* "memory": the VMM reads the argument struct and writes results back */
	__asm__ volatile("outl %0, %1" : : "a"(gpa), "d"((uint16_t)UFVM_HC_PORT(nr)) : "memory");
}

void rt_hypercall(unsigned nr, void *arg)
{
	uint64_t gpa = (uint64_t)arg;

	if (gpa >> 32)
		rt_die(1, "hypercall %u: argument at %p is above 4 GiB", nr, arg);
	rt_hypercall_gpa(nr, (uint32_t)gpa);
}

int64_t rt_write(const void *buf, uint64_t len)
{
	struct ufvm_hc_write hc = {.buf = (uint64_t)buf, .len = len, .ret = -UFVM_ENOSYS};

	rt_hypercall(UFVM_HC_WRITE, &hc);
	return hc.ret;
}

_Noreturn void rt_exit(int status)
{
	struct ufvm_hc_exit hc = {.status = (uint64_t)status};

	rt_hypercall(UFVM_HC_EXIT, &hc);
	for (;;)
		__builtin_trap(); /* the VMM let an exited vCPU run on: crash loudly */
}

uint64_t rt_clock_ns(void)
{
	struct ufvm_hc_clock hc = {.ns = 0, .ret = -UFVM_ENOSYS};

	rt_hypercall(UFVM_HC_CLOCK, &hc);
	return hc.ret == 0 ? hc.ns : 0;
}

int64_t rt_mark(const char *label)
{
	struct ufvm_hc_mark hc = {
	    .label = (uint64_t)label, .len = strnlen(label, UFVM_MARK_MAX), .ret = -UFVM_ENOSYS};

	rt_hypercall(UFVM_HC_MARK, &hc);
	return hc.ret;
}

_Noreturn void rt_halt(void)
{
	/* HALT takes no argument; pass a harmless, valid address anyway */
	static uint64_t dummy;

	for (;;)
		rt_hypercall(UFVM_HC_HALT, &dummy);
}

_Noreturn void rt_die(int status, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf), "guest: ");
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	n = strlen(buf);
	if (n == sizeof(buf) - 1)
		n--;
	buf[n++] = '\n';
	rt_write(buf, n);
	rt_exit(status);
}
