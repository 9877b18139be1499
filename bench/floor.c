/* floor.c: the least a KVM process can do (VM, slot, vCPU, one instruction): ufvm floor */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * The vCPU starts at the architectural reset state: real mode, CS base
 * 0xffff0000, IP 0xfff0, so the first instruction is fetched at guest-physical
 * 0xfffffff0. One 4 KiB slot at the top of the 32-bit space holds it and no
 * register needs setting. The instruction is `out %al, $0xf4`, which exits to
 * userspace on any KVM (HLT stays in the kernel once an irqchip exists). On PVM
 * it is emulated, like all CPL 0 code; that single KVM_RUN takes ~75 us here.
 * `floor hlt` runs `hlt` instead: both cost the same on this host.
 */
#define SLOT_GPA  0xfffff000ULL
#define SLOT_SIZE 0x1000ULL
#define RESET_IP  0xff0

static int fail(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	static const unsigned char out_insn[] = {0xe6, 0xf4}; /* out %al, $0xf4 */
	static const unsigned char hlt_insn[] = {0xf4};	      /* hlt */
	int use_hlt = argc > 1 && !strcmp(argv[1], "hlt");
	struct kvm_userspace_memory_region region = {
	    .slot = 0,
	    .guest_phys_addr = SLOT_GPA,
	    .memory_size = SLOT_SIZE,
	};
	struct kvm_run *run;
	unsigned char *mem;
	int kvm, vm, vcpu, run_size;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("open /dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail("KVM_CREATE_VM");
	mem = mmap(NULL, SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return fail("mmap guest page");
	if (use_hlt)
		memcpy(mem + RESET_IP, hlt_insn, sizeof(hlt_insn));
	else
		memcpy(mem + RESET_IP, out_insn, sizeof(out_insn));
	region.userspace_addr = (unsigned long)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return fail("KVM_SET_USER_MEMORY_REGION");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		return fail("KVM_CREATE_VCPU");
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(*run))
		return fail("KVM_GET_VCPU_MMAP_SIZE");
	run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		return fail("mmap kvm_run");
	if (ioctl(vcpu, KVM_RUN, 0) < 0)
		return fail("KVM_RUN");
	if (run->exit_reason != (use_hlt ? KVM_EXIT_HLT : KVM_EXIT_IO) ||
	    (!use_hlt && (run->io.port != 0xf4 || run->io.direction != KVM_EXIT_IO_OUT))) {
		fprintf(stderr, "floor: unexpected exit reason %u\n", run->exit_reason);
		return 1;
	}
	/* the kernel frees the VM when the process exits, as it would for ufvm */
	return 0;
}
