/* fuzz.h: what every fuzz harness provides to driver.c, and a reader for structured inputs */
#ifndef UFVM_FUZZ_H
#define UFVM_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mm/mm.h"

/*
 * A harness defines both. fuzz_init runs once per process, after AFL's fork
 * server has forked (guest RAM, io_uring and file descriptors are the child's
 * own); fuzz_one runs once per input, must leave no state behind that changes
 * what the next input does, and aborts (FUZZ_CHECK) when the code under test
 * broke one of its promises: a crash is then the finding even without a
 * sanitizer report.
 */
void fuzz_init(void);
void fuzz_one(const uint8_t *data, size_t len);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", __FILE__, __LINE__,  \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Harness set-up that cannot fail on a working host: say what and stop (exit 77 in
 * replay mode would hide a broken test, so it is a plain failure). */
#define FUZZ_NEED(cond, what)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz: set-up failed: %s\n", what);                        \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/*
 * Guest RAM as ufvm has it (mm_mem_create: a memfd mapped shared), moved between two
 * 2 MiB PROT_NONE guards: a host access just outside guest RAM then faults at once,
 * where a plain mmap may have a mapping next door that hides it.
 */
#define FUZZ_GUARD (2ULL << 20)
static inline void fuzz_mem_create(struct mm_mem *m, uint64_t size)
{
	uint8_t *area;

	FUZZ_NEED(mm_mem_create(m, size) == 0, "guest RAM (memfd)");
	area = mmap(NULL, size + 2 * FUZZ_GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	FUZZ_NEED(area != MAP_FAILED, "guard pages around guest RAM");
	FUZZ_NEED(mmap(area + FUZZ_GUARD, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		       m->memfd, 0) != MAP_FAILED,
		  "guest RAM between guard pages");
	munmap(m->hva, size);
	m->hva = area + FUZZ_GUARD;
}

/* Structured inputs: fields taken from the front, zeros once the input runs out. */
struct fuzz_in {
	const uint8_t *p;
	size_t len;
};

static inline bool fuzz_more(const struct fuzz_in *in)
{
	return in->len > 0;
}

static inline uint64_t fuzz_take(struct fuzz_in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && in->len; i++, in->p++, in->len--)
		v |= (uint64_t)in->p[0] << (8 * i);
	return v;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	return (uint8_t)fuzz_take(in, 1);
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
	return (uint16_t)fuzz_take(in, 2);
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
	return (uint32_t)fuzz_take(in, 4);
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
	return fuzz_take(in, 8);
}

/* Up to n bytes in place (fewer at the end of the input); *got says how many. */
static inline const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t n, size_t *got)
{
	const uint8_t *p = in->p;

	*got = n < in->len ? n : in->len;
	in->p += *got;
	in->len -= *got;
	return p;
}

#endif
