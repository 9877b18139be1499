/* linux.h: Linux guests: the x86-64 boot protocol loader and the glue to devices/ */
#ifndef UFVM_LINUX_H
#define UFVM_LINUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/dev.h"
#include "vmm/vmm.h"

/*
 * Guest-physical layout of a Linux guest (see docs/linux.md). RAM is one block
 * from 0; [0x9fc00, 0x100000) is reserved in the e820 map (EBDA, MP table).
 */
#define LINUX_GDT	  0x500ULL
#define LINUX_PVH_INFO	  0x6000ULL /* struct hvm_start_info, module list, memory map */
#define LINUX_ZERO_PAGE	  0x7000ULL /* struct boot_params */
#define LINUX_STACK	  0x8ff0ULL
#define LINUX_PGTABLE	  0x9000ULL /* PML4, PDPT, 4 PDs: [0, 4 GiB) identity, 2 MiB pages */
#define LINUX_CMDLINE	  0x20000ULL
#define LINUX_CMDLINE_MAX 4096ULL /* including the NUL, before the kernel's own limit */
#define LINUX_EBDA	  0x9fc00ULL
#define LINUX_MPTABLE	  0xf0000ULL
#define LINUX_HIGH	  0x100000ULL
#define LINUX_MAX_MEM	  (3ULL << 30)	/* RAM stays below the MMIO hole (devices, IOAPIC, LAPIC) */
#define LINUX_TSS_ADDR	  0xfffbd000ULL /* KVM_SET_TSS_ADDR: 3 pages */
#define LINUX_IDMAP_ADDR  0xfffbc000ULL /* KVM_SET_IDENTITY_MAP_ADDR: 1 page */
#define LINUX_IOAPIC	  0xfec00000ULL
#define LINUX_LAPIC	  0xfee00000ULL

/* The bzImage setup header's magic and boot flag (the zero page carries them too). */
#define LINUX_HDR_MAGIC 0x53726448 /* "HdrS" */
#define LINUX_BOOT_FLAG 0xaa55

enum linux_kind { LINUX_BZIMAGE, LINUX_VMLINUX, LINUX_PVH };

struct linux_image {
	enum linux_kind kind;
	uint16_t protocol;	     /* bzImage boot protocol version, e.g. 0x020f */
	uint64_t entry;		     /* gpa: 64-bit entry (bzImage, vmlinux) or 32-bit PVH entry */
	uint64_t load, load_end;     /* the kernel's range, including its init_size */
	uint64_t initrd, initrd_len; /* 0, 0 without an initrd */
	uint64_t boot_params;	     /* %rsi (zero page) or %ebx (PVH start info) at entry */
	uint32_t cmdline_max;	     /* longest command line the kernel accepts, without NUL */
};

/* ---- linux.c: the kernel image ---- */
/* Pure: the kind of kernel in k[0..len) and its header checks. -ENOEXEC/-EINVAL + *why. */
int linux_parse(const uint8_t *k, size_t len, struct linux_image *out, const char **why);
/* True when /dev/kvm is PVM (guest CPL 0 emulated: stock kernels cannot boot). */
bool linux_host_is_pvm(void);
/* Format a reason into a thread-local buffer (valid until the thread's next call) for
 * *why and return err: the loader's errors, for linux.c and linux_setup.c. */
int linux_fail(const char **why, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- linux_setup.c: guest RAM, the VM and vCPUs set up for the kernel ---- */
/*
 * Place a parsed kernel, the initrd (may be NULL/0) and every boot structure in
 * guest RAM: zero page or PVH start info, e820 map, MP table for `cpus` vCPUs,
 * page tables and GDT. The command line is written by linux_set_cmdline.
 * -EINVAL/-E2BIG + *why when something does not fit.
 */
int linux_load(const struct mm_mem *mem, const uint8_t *k, size_t klen, const uint8_t *initrd,
	       size_t ilen, unsigned cpus, struct linux_image *li, const char **why);
/* Write the NUL-terminated command line; -E2BIG when longer than li->cmdline_max. */
int linux_set_cmdline(const struct mm_mem *mem, const struct linux_image *li, const char *cmdline);

/* Must be called after vm_create and before the first vcpu_create: TSS and identity-map
 * addresses, the in-kernel irqchip and PIT. */
int linux_vm_setup(int vm_fd, const char **why);
/* CPUID (per-vCPU APIC ID, KVM's paravirtual leaves kept) for every vCPU; registers for
 * the boot vCPU only: the others wait for INIT/SIPI in the in-kernel LAPIC. */
int linux_setup_vcpu(int vcpu_fd, const struct kvm *k, unsigned index, unsigned cpus,
		     const struct linux_image *li);

/* ---- linux_boot.c: the top level of a Linux guest's run (prints its own errors) ---- */
struct linux_boot {
	uint8_t *kernel, *initrd;
	size_t kernel_len, initrd_len;
	struct linux_image li;
	struct dev_opts dopts;
	struct dev_ctx dev;
	bool devices_up;
	struct vm *vm;
};

/* Read and check the kernel and initrd files. Returns 0 or an exit status. */
int linux_boot_read(struct linux_boot *lb, const struct vmm_opts *o);
/* Load them into guest RAM (after mm_mem_create). Returns 0 or an exit status. */
int linux_boot_load(struct linux_boot *lb, const struct mm_mem *mem, const struct vmm_opts *o);
/* After vm_create, before the vCPUs: irqchip, devices, command line, I/O hook. */
int linux_boot_vm(struct linux_boot *lb, struct vm *vm, const struct vmm_opts *o);
/* Devices down (before vm_destroy) and files freed; safe to call more than once. */
void linux_boot_end(struct linux_boot *lb);

#endif
