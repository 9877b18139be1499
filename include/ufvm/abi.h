/* abi.h: the guest ABI shared by ufvm (host) and its guests (see docs/ABI.md) */
#ifndef UFVM_ABI_H
#define UFVM_ABI_H

#include <stdint.h>

#define UFVM_ABI_VERSION 1

/*
 * Guest-physical memory layout. Everything below UFVM_IMAGE_BASE belongs to
 * the VMM; guest ELF PT_LOAD segments must lie in [UFVM_IMAGE_BASE, RAM end).
 * All of RAM is identity-mapped (virtual == physical) with the U bit set, and
 * every vCPU starts at CPL 3 in 64-bit mode. Page 0 is not mapped, so a NULL
 * dereference is reported as a page fault.
 */
#define UFVM_PAGE_SIZE	    0x1000ULL
#define UFVM_GDT_BASE	    0x1000ULL  /* GDT: fixed segments, then one TSS per vCPU */
#define UFVM_IDT_BASE	    0x2000ULL  /* IDT: vectors 0..31, CPL 0 handlers */
#define UFVM_EXC_CODE_BASE  0x3000ULL  /* exception stubs (CPL 0, crash path only) */
#define UFVM_BOOTINFO_BASE  0x4000ULL  /* struct ufvm_boot_info[UFVM_MAX_CPUS] */
#define UFVM_CMDLINE_BASE   0x5000ULL  /* NUL-terminated command line */
#define UFVM_CMDLINE_MAX    0x1000ULL  /* including the NUL */
#define UFVM_TSS_BASE	    0x8000ULL  /* TSS + I/O bitmap per vCPU, 512 bytes each */
#define UFVM_EXC_STACKS	    0x10000ULL /* 4 KiB CPL 0 stack per vCPU */
#define UFVM_EXC_STACK_SIZE 0x1000ULL
#define UFVM_PGTABLE_BASE   0x60000ULL	/* PML4, PDPT, PT for the first 2 MiB, PDs */
#define UFVM_STACKS_BASE    0x100000ULL /* CPL 3 stack per vCPU */
#define UFVM_STACK_SIZE	    0x10000ULL
#define UFVM_IMAGE_BASE	    0x800000ULL /* lowest address a guest may load at */
#define UFVM_MAX_CPUS	    64
#define UFVM_MIN_MEM	    (16ULL << 20)
#define UFVM_MAX_MEM	    (64ULL << 30)

/*
 * Boot information: vCPU i starts with %rdi = UFVM_BOOTINFO_BASE + i * 64,
 * %rsp = UFVM_STACKS_BASE + (i + 1) * UFVM_STACK_SIZE.
 */
struct ufvm_boot_info {
	uint64_t mem_size;   /* bytes of guest RAM, identity-mapped from 0 */
	uint64_t heap_start; /* first free byte after the image (2 MiB aligned) */
	uint64_t heap_end;   /* end of free RAM (== mem_size) */
	uint64_t cmdline;    /* gpa of the NUL-terminated command line */
	uint64_t tsc_khz;    /* TSC frequency, 0 if unknown */
	uint32_t cpu_index;  /* this vCPU, 0..cpu_count-1 */
	uint32_t cpu_count;
	uint32_t abi_version;
	uint32_t reserved[3];
};
_Static_assert(sizeof(struct ufvm_boot_info) == 64, "boot info is 64 bytes");

/*
 * Hypercalls: `outl %eax, %dx` with %dx = UFVM_HC_PORT(nr) and %eax the
 * guest-physical address of the argument struct, which must therefore lie
 * below 4 GiB (stacks and the image do). The VMM writes results back into
 * the struct before the vCPU resumes. `ret` is 0 or a negative error code
 * (UFVM_E*). An argument address outside guest RAM stops the VM (status 2).
 */
#define UFVM_HC_PORT_BASE 0x500
#define UFVM_HC_PORT(nr)  (UFVM_HC_PORT_BASE + (nr))
#define UFVM_EXC_PORT	  0x5ff /* used by the VMM's own exception stubs */

enum ufvm_hypercall {
	UFVM_HC_WRITE = 1, /* console write */
	UFVM_HC_EXIT = 2,  /* end the VM with a status */
	UFVM_HC_CLOCK = 3, /* monotonic clock, ns */
	UFVM_HC_MARK = 4,  /* timestamped event with a label */
	UFVM_HC_HALT = 5,  /* park this vCPU; the VM ends (status 0) when all are parked */
	UFVM_HC_MAX
};

#define UFVM_EIO    5  /* the host could not do it (console write: stdout failed) */
#define UFVM_EINVAL 22 /* malformed request */
#define UFVM_EFAULT 14 /* buffer outside guest RAM */
#define UFVM_ENOSYS                                                                                \
	38 /* not answered: the runtime's initial ret (ports beyond HC_MAX are closed) */
#define UFVM_MARK_MAX  64 /* bytes in a mark label */
#define UFVM_WRITE_MAX (1U << 20)

struct ufvm_hc_write {
	uint64_t buf; /* gpa */
	uint64_t len; /* <= UFVM_WRITE_MAX */
	int64_t ret;  /* bytes written or -UFVM_E* */
};

struct ufvm_hc_exit {
	uint64_t status; /* 0..255; larger values are reported and truncated */
};

struct ufvm_hc_clock {
	uint64_t ns; /* CLOCK_MONOTONIC of the host */
	int64_t ret;
};

struct ufvm_hc_mark {
	uint64_t label; /* gpa of the label */
	uint64_t len;	/* 1..UFVM_MARK_MAX */
	int64_t ret;
};

#endif
