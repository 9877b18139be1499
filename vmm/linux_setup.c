/* linux_setup.c: the VM and vCPU entry state a Linux kernel expects (irqchip, PIT, registers) */
#include <errno.h>
#include <sys/ioctl.h>

#include "vmm/linux.h"

int linux_vm_setup(int vm_fd, const char **why)
{
	uint64_t idmap = LINUX_IDMAP_ADDR;
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};

	if (ioctl(vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LINUX_TSS_ADDR) < 0)
		return linux_fail(why, -errno, "KVM_SET_TSS_ADDR");
	if (ioctl(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		return linux_fail(why, -errno, "KVM_SET_IDENTITY_MAP_ADDR");
	if (ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return linux_fail(why, -errno, "KVM_CREATE_IRQCHIP");
	if (ioctl(vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return linux_fail(why, -errno, "KVM_CREATE_PIT2");
	return 0;
}

static void lx_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool l, bool db)
{
	*s = (struct kvm_segment){.base = 0,
				  .limit = 0xffffffff,
				  .selector = sel,
				  .type = type,
				  .present = 1,
				  .dpl = 0,
				  .db = db,
				  .s = 1,
				  .l = l,
				  .g = 1};
}

int linux_setup_vcpu(int fd, const struct kvm *k, unsigned index, unsigned cpus,
		     const struct linux_image *li)
{
	bool pvh = li->kind == LINUX_PVH;
	struct kvm_sregs sr;
	struct kvm_regs r = {.rflags = 0x2};
	int err = kvm_set_vcpu_cpuid(fd, k, index, cpus);

	if (err || index != 0)
		return err;
	if (ioctl(fd, KVM_GET_SREGS, &sr) < 0)
		return -errno;
	lx_seg(&sr.cs, pvh ? LINUX_SEL_CODE32 : LINUX_SEL_CODE64, 0xb, !pvh, pvh);
	lx_seg(&sr.ds, LINUX_SEL_DATA, 0x3, false, true);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	sr.tr = (struct kvm_segment){
	    .selector = LINUX_SEL_TSS, .limit = 0x67, .type = 0xb, .present = 1};
	sr.gdt.base = LINUX_GDT;
	sr.gdt.limit = 6 * 8 - 1;
	sr.idt.base = 0;
	sr.idt.limit = 0;
	if (pvh) {	       /* 32-bit protected mode, paging off, %ebx = start info */
		sr.cr0 = 0x11; /* PE, ET */
		sr.cr4 = 0;
		sr.efer = 0;
		r.rbx = li->boot_params;
	} else {		     /* 64-bit mode on identity page tables, %rsi = zero page */
		sr.cr0 = 0x80000031; /* PE, ET, NE, PG */
		sr.cr3 = LINUX_PGTABLE;
		sr.cr4 = 0x20;	 /* PAE */
		sr.efer = 0x500; /* LME, LMA */
		r.rsi = li->boot_params;
	}
	if (ioctl(fd, KVM_SET_SREGS, &sr) < 0)
		return -errno;
	r.rip = li->entry;
	r.rsp = LINUX_STACK;
	return ioctl(fd, KVM_SET_REGS, &r) < 0 ? -errno : 0;
}
