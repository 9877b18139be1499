/* linux.h: Linux guests: the VM and vCPU set-up and the glue between boot/ and devices/ */
#ifndef UFVM_LINUX_H
#define UFVM_LINUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "boot/boot.h"
#include "devices/dev.h"
#include "vmm/vmm.h"

/* ---- linux_setup.c: the VM and vCPUs set up for the kernel ---- */
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
