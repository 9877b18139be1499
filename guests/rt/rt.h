/* rt.h: the freestanding runtime shared by every ufvm guest */
#ifndef UFVM_GUEST_RT_H
#define UFVM_GUEST_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <ufvm/abi.h>

/*
 * Start-up (crt0.S, start.c). vCPU 0 parses the command line into
 * whitespace-separated tokens (argv[0] is "guest", argv[1..] the tokens),
 * calls main() and exits with its return value. Every other vCPU calls
 * ap_main() if the guest defines it, then parks itself with the HALT
 * hypercall. The VM ends when vCPU 0 exits, so APs need no exit path.
 */
int main(int argc, char **argv);
void ap_main(const struct ufvm_boot_info *bi) __attribute__((weak));

/* Boot info of vCPU 0; valid on every vCPU from the first instruction. */
extern const struct ufvm_boot_info *rt_boot;

/*
 * Boot info of the calling vCPU, found from the stack pointer: only valid
 * while running on the stack the VMM gave this vCPU.
 */
const struct ufvm_boot_info *rt_self(void);

/* The raw command line as the VMM passed it (never NULL). */
const char *rt_cmdline(void);

/*
 * Bump allocator over [heap_start, heap_end) of the boot info; safe on any
 * vCPU. align must be a power of two. Returns NULL when the heap is exhausted.
 */
void *rt_alloc(uint64_t size, uint64_t align);
uint64_t rt_heap_free(void); /* bytes left */

/* Hypercalls (hypercall.c). Argument structs live on the stack, below 4 GiB. */
void rt_hypercall(unsigned nr, void *arg);
void rt_hypercall_gpa(unsigned nr, uint32_t gpa); /* raw: any gpa, for negative tests */
int64_t rt_write(const void *buf, uint64_t len);  /* bytes written or -UFVM_E* */
_Noreturn void rt_exit(int status);
uint64_t rt_clock_ns(void);	    /* host CLOCK_MONOTONIC, ns */
int64_t rt_mark(const char *label); /* 0 or -UFVM_E*; label is cut at UFVM_MARK_MAX */
_Noreturn void rt_halt(void);

/* printf-style output (format.c): %d %i %u %x %X %p %s %c %% with l, ll, z, h,
 * hh, flags '-' '0', width and precision (for %s and integers); no floats. */
int printf(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(__printf__, 3, 4)));
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int puts(const char *s); /* appends a newline */

/* Strings and memory (string.c); gcc may emit calls to mem* on its own. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
/* Sets *end past the digits; saturates at ULONG_MAX (and sets *end to s on no digits). */
unsigned long strtoul(const char *s, char **end, int base);

/*
 * key=value parameters (args.c). Each argv token must be key=value with a
 * known key. RT_OPT_U64 takes decimal or 0x hex with an optional K, M or G
 * suffix (binary multipliers); RT_OPT_MICRO takes a decimal fraction such as
 * 0.99 and stores it in millionths; RT_OPT_STR stores a pointer into argv.
 * Returns 0, or -1 after printing what is wrong with which token.
 */
enum rt_opt_type { RT_OPT_U64, RT_OPT_MICRO, RT_OPT_STR };
struct rt_opt {
	const char *key;
	enum rt_opt_type type;
	void *val; /* uint64_t * or const char ** */
};
int rt_parse_opts(int argc, char **argv, const struct rt_opt *opts, size_t nopts);
int rt_parse_u64(const char *s, uint64_t *out);	  /* 0 or -1 */
int rt_parse_micro(const char *s, uint64_t *out); /* 0 or -1 */

/* Time and rates (time.c) */
static inline uint64_t rt_rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
uint64_t rt_tsc_to_ns(uint64_t cycles); /* 0 when tsc_khz is unknown */
void rt_delay_ns(uint64_t ns);		/* spins on the host clock */
/* a * b / c with a 128-bit intermediate; saturates at UINT64_MAX, c == 0 gives UINT64_MAX */
uint64_t rt_muldiv(uint64_t a, uint64_t b, uint64_t c);
/* Formats amount / unit per second (amount counted over ns) as "123.45" into buf. */
const char *rt_fmt_rate(char *buf, size_t size, uint64_t amount, uint64_t unit, uint64_t ns);
/* Formats ns as milliseconds with three decimals, "12.345". */
const char *rt_fmt_ms(char *buf, size_t size, uint64_t ns);

/* Pseudo-random numbers and hashing (rand.c) */
static inline uint64_t rt_mix64(uint64_t x) /* splitmix64 finaliser: a bijection */
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}
struct rt_rand {
	uint64_t s[4];
};
void rt_rand_seed(struct rt_rand *r, uint64_t seed);
uint64_t rt_rand_next(struct rt_rand *r);	       /* xoshiro256** */
uint64_t rt_rand_below(struct rt_rand *r, uint64_t n); /* uniform in [0, n), n > 0 */
double rt_rand_double(struct rt_rand *r);	       /* uniform in [0, 1) */
double rt_log(double x);			       /* x > 0 */
double rt_exp(double x);
double rt_pow(double x, double y); /* x >= 0 */

/* Atomics and SMP (sync.c) */
static inline void rt_pause(void)
{
	__asm__ volatile("pause" ::: "memory");
}
#define rt_load_acquire(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define rt_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define rt_fetch_add(p, v)     __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define rt_add_fetch(p, v)     __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define rt_cas(p, expp, v)                                                                         \
	__atomic_compare_exchange_n((p), (expp), (v), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

/* A reusable spin barrier for n vCPUs; zero-initialise, then set n. */
struct rt_barrier {
	uint32_t n;
	uint32_t waiting;
	uint32_t generation;
};
/* Returns 0, or -1 if the others did not all arrive within timeout_ns (0: forever);
 * after a timeout the barrier is unusable. */
int rt_barrier_wait(struct rt_barrier *b, uint64_t timeout_ns);

/* Prints "guest: <message>" and exits with status. */
_Noreturn void rt_die(int status, const char *fmt, ...) __attribute__((format(__printf__, 2, 3)));

#define RT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define RT_MIB		 (1ULL << 20)

#endif
