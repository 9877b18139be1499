/* vcpu.c: vCPU creation, the run loop and exit dispatch */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/vmm.h"

int vcpu_create(struct vm *vm, unsigned index)
{
	struct vcpu *v = &vm->vcpus[index];
	int err;

	v->vm = vm;
	v->index = index;
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, index);
	if (v->fd < 0)
		return -errno;
	v->run = mmap(NULL, vm->kvm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		err = -errno;
		v->run = NULL;
		goto err_close;
	}
	return 0;

err_close:
	close(v->fd);
	v->fd = -1;
	return err;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, v->vm->kvm->run_size);
	if (v->fd > 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

static void vcpu_print_regs(unsigned index, const struct kvm_regs *r, const struct kvm_sregs *s,
			    const char *note)
{
	fprintf(stderr,
		"ufvm: vCPU %u registers%s:\n"
		"  rip %016llx rsp %016llx rflags %016llx\n"
		"  rax %016llx rbx %016llx rcx %016llx rdx %016llx\n"
		"  rsi %016llx rdi %016llx rbp %016llx\n"
		"  r8  %016llx r9  %016llx r10 %016llx r11 %016llx\n"
		"  r12 %016llx r13 %016llx r14 %016llx r15 %016llx\n"
		"  cs %04x (cpl %u) ss %04x cr0 %016llx cr2 %016llx cr3 %016llx cr4 %016llx "
		"efer %llx\n",
		index, note, r->rip, r->rsp, r->rflags, r->rax, r->rbx, r->rcx, r->rdx, r->rsi,
		r->rdi, r->rbp, r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15,
		s->cs.selector, s->cs.dpl, s->ss.selector, s->cr0, s->cr2, s->cr3, s->cr4, s->efer);
}

void vcpu_dump_regs(const struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		fprintf(stderr, "ufvm: vCPU %u: cannot read registers: %s\n", v->index,
			strerror(errno));
		return;
	}
	vcpu_print_regs(v->index, &r, &s, "");
}

/* The CPL 0 stub pushed: vector, error code, then the CPU's frame rip, cs,
 * rflags, rsp, ss. The frame lives in guest RAM, so read it through the gate.
 * The registers printed are the faulting code's: rip/rsp/rflags/cs/ss come
 * from the frame, the rest are untouched by the stub except rdx. */
static void vcpu_report_exception(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint64_t f[7];

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0 ||
	    mm_copy_from_guest(v->vm->mem, f, r.rsp, sizeof(f)) < 0) {
		fprintf(stderr, "ufvm: vCPU %u: guest exception, but its frame is unreadable\n",
			v->index);
		vcpu_dump_regs(v);
		return;
	}
	fprintf(stderr,
		"ufvm: vCPU %u: guest exception %s (vector %" PRIu64 "), error code 0x%" PRIx64
		", CR2 0x%llx, RIP 0x%" PRIx64 ", RSP 0x%" PRIx64 ", RFLAGS 0x%" PRIx64 "\n",
		v->index, x86_exception_name((unsigned)f[0]), f[0], f[1], s.cr2, f[2], f[5], f[4]);
	r.rip = f[2];
	r.rflags = f[4];
	r.rsp = f[5];
	s.cs.selector = (uint16_t)f[3];
	s.cs.dpl = f[3] & 3;
	s.ss.selector = (uint16_t)f[6];
	vcpu_print_regs(v->index, &r, &s, " at the fault (rdx was used by the exception stub)");
}

/* Only ufvm's CPL 0 exception stubs may report through UFVM_EXC_PORT: with
 * IOPL 3 the guest's own code can reach the port too, and must not forge a
 * crash report (it is then just an unexpected port). */
static bool vcpu_at_cpl0(const struct vcpu *v)
{
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return false;
	return (s.cs.selector & 3) == 0 && s.cs.dpl == 0;
}

static void vcpu_fail(struct vcpu *v, const char *what)
{
	fprintf(stderr, "ufvm: vCPU %u: %s\n", v->index, what);
	vcpu_dump_regs(v);
	vm_stop(v->vm, VMM_EXIT_CRASH);
}

/* Returns false when this vCPU must leave its loop. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char msg[160];

	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint16_t port = run->io.port;
		uint32_t data = 0;
		bool hc = hc_decode_io(run, &data);

		/* Linux guests' devices get every port access but a hypercall's 32-bit OUT */
		if (v->vm->on_io && !hc)
			return v->vm->on_io(v, v->vm->on_io_ctx);
		if (port == UFVM_EXC_PORT && vcpu_at_cpl0(v)) {
			vcpu_report_exception(v);
			vm_stop(v->vm, VMM_EXIT_CRASH);
			return false;
		}
		if (!hc) {
			snprintf(msg, sizeof(msg),
				 "unexpected port I/O: %s port 0x%x size %u count %u",
				 run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", port,
				 run->io.size, run->io.count);
			vcpu_fail(v, msg);
			return false;
		}
		return hc_dispatch(v, port, data);
	}
	case KVM_EXIT_DIRTY_RING_FULL:
		if (v->vm->dirty) {
			dirty_ring_full(v->vm->dirty);
			return true;
		}
		vcpu_fail(v, "dirty ring full, but no dirty tracking is running");
		return false;
	case KVM_EXIT_SHUTDOWN:
		vcpu_fail(v, "guest triple fault (KVM_EXIT_SHUTDOWN): an exception occurred "
			     "while the CPU could not deliver one");
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(msg, sizeof(msg), "KVM internal error, suberror %u%s",
			 run->internal.suberror,
			 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
			     ? " (instruction emulation failed)"
			     : "");
		vcpu_fail(v, msg);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(msg, sizeof(msg), "VM entry failed, hardware reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_fail(v, msg);
		return false;
	case KVM_EXIT_MMIO:
		if (v->vm->on_io)
			return v->vm->on_io(v, v->vm->on_io_ctx); /* Linux guests' devices */
		snprintf(msg, sizeof(msg), "guest accessed unbacked physical address 0x%llx",
			 (unsigned long long)run->mmio.phys_addr);
		vcpu_fail(v, msg);
		return false;
	case KVM_EXIT_HLT:
		vcpu_fail(v, "guest executed HLT at CPL 0 (unexpected)");
		return false;
	default:
		snprintf(msg, sizeof(msg), "unhandled KVM exit reason %u", run->exit_reason);
		vcpu_fail(v, msg);
		return false;
	}
}

/* Park here while a pause is requested; returns false if the VM is stopping. */
static bool vcpu_pause_point(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool ok;

	if (!atomic_load(&vm->pause_req))
		return !atomic_load(&vm->stopping);
	pthread_mutex_lock(&vm->lock);
	vcpu_park_locked(v);
	ok = vcpu_unpark_locked(v);
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

static void vcpu_leave(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool last;

	pthread_mutex_lock(&vm->lock);
	last = --vm->live == 0;
	v->started = false; /* no more kicks for this thread */
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	/* every vCPU leaves by a stop but halted ones, and the last to halt stops the VM:
	 * this one is for a path that forgot, so that the VM ends rather than hang */
	if (last && !atomic_load(&vm->stopping))
		vm_stop(vm, VMM_EXIT_INTERNAL);
}

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;

	for (;;) {
		/* clear before checking the flags: a kick that set it after this
		 * store is seen through the flags it set first */
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		if (!vcpu_pause_point(v))
			break;
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fprintf(stderr, "ufvm: vCPU %u: KVM_RUN failed: %s\n", v->index,
				strerror(errno));
			vm_stop(v->vm, VMM_EXIT_INTERNAL);
			break;
		}
		/* stop means stop: an exit that raced with it is not served (no more output,
		 * no more device work) */
		if (atomic_load(&v->vm->stopping) || !vcpu_handle_exit(v))
			break;
	}
	vcpu_leave(v);
	return NULL;
}
