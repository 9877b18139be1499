/* time.c: TSC and host-clock helpers, and integer formatting of rates and times */
#include "rt.h"

uint64_t rt_muldiv(uint64_t a, uint64_t b, uint64_t c)
{
	unsigned __int128 p = (unsigned __int128)a * b;
	uint64_t hi = (uint64_t)(p >> 64), lo = (uint64_t)p, q, r;

	if (c == 0 || hi >= c)
		return UINT64_MAX; /* the quotient would not fit: divq would raise #DE */
	__asm__("divq %4" : "=a"(q), "=d"(r) : "a"(lo), "d"(hi), "rm"(c));
	return q;
}

uint64_t rt_tsc_to_ns(uint64_t cycles)
{
	uint64_t khz = rt_boot->tsc_khz;

	return khz ? rt_muldiv(cycles, 1000000, khz) : 0;
}

void rt_delay_ns(uint64_t ns)
{
	uint64_t end = rt_clock_ns() + ns;

	while (rt_clock_ns() < end)
		for (int i = 0; i < 1000; i++)
			rt_pause();
}

const char *rt_fmt_rate(char *buf, size_t size, uint64_t amount, uint64_t unit, uint64_t ns)
{
	uint64_t x100;

	if (ns == 0 || unit == 0) {
		snprintf(buf, size, "inf");
		return buf;
	}
	x100 = rt_muldiv(amount, 100000000000ULL, ns) / unit;
	snprintf(buf, size, "%lu.%02lu", x100 / 100, x100 % 100);
	return buf;
}

const char *rt_fmt_ms(char *buf, size_t size, uint64_t ns)
{
	snprintf(buf, size, "%lu.%03lu", ns / 1000000, ns / 1000 % 1000);
	return buf;
}
