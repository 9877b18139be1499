/* hypercall.c: guest hypercalls (console, exit, clock, mark, halt) behind the gpa gate */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "devices/dev.h"
#include "vmm/vmm.h"

/* An argument struct outside guest RAM is not a request we can answer: stop. */
static bool hc_bad_arg(struct vcpu *v, const char *name, uint32_t gpa, size_t len)
{
	fprintf(stderr,
		"ufvm: vCPU %u: hypercall %s: argument address 0x%" PRIx32 " (+%zu bytes) "
		"lies outside guest RAM (%" PRIu64 " bytes); stopping the VM\n",
		v->index, name, gpa, len, v->vm->mem->size);
	vm_stop(v->vm, VMM_EXIT_USAGE);
	return false;
}

/*
 * The console is stdout (devices/console.c), written by one vCPU at a time. A
 * reader that stops reading must not hold a vCPU for ever: a vCPU that waits for
 * the console (for its turn, or for room in a full pipe) is parked, so a pause does
 * not wait for it, and its wait ends at the VM's stop.
 */

/* Wait for the console to be ours (parked while another vCPU has it); false at the stop. */
static bool console_take(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool parked = false, ok;

	pthread_mutex_lock(&vm->lock);
	while (!atomic_load(&vm->stopping) &&
	       (vm->console_busy || (parked && atomic_load(&vm->pause_req)))) {
		if (!parked)
			vcpu_park_locked(v);
		parked = true;
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	if (parked)
		vm->paused--;
	ok = !atomic_load(&vm->stopping);
	if (ok)
		vm->console_busy = true;
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

static void console_give(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->console_busy = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

/* dev_console_write's wait: parked while the pipe is full; false at the stop */
static bool console_wait(void *arg, bool start)
{
	if (!start)
		return vcpu_unpark(arg); /* stays parked while a pause is in force */
	vcpu_park(arg);
	return true;
}

static bool hc_write(struct vcpu *v, uint32_t gpa)
{
	const struct mm_mem *mem = v->vm->mem;
	struct ufvm_hc_write a;
	const uint8_t *buf;

	if (mm_copy_from_guest(mem, &a, gpa, sizeof(a)) < 0)
		return hc_bad_arg(v, "write", gpa, sizeof(a));
	/* a is a private copy: the guest cannot change len after the check */
	if (a.len > UFVM_WRITE_MAX) {
		a.ret = -UFVM_EINVAL;
	} else if (!(buf = mm_gpa(mem, a.buf, a.len))) {
		a.ret = -UFVM_EFAULT;
	} else {
		static bool warned;
		int err;

		if (!console_take(v))
			return false; /* stopping: the vCPU leaves */
		err = dev_console_write(buf, a.len, v->vm->stop_efd, console_wait, v);
		if (err < 0 && err != -ESHUTDOWN && !warned) {
			warned = true;
			fprintf(stderr,
				"ufvm: console: write to stdout failed: %s (the guest sees %d)\n",
				strerror(-err), -UFVM_EIO);
		}
		console_give(v->vm);
		if (err == -ESHUTDOWN)
			return false;
		a.ret = err < 0 ? -UFVM_EIO : (int64_t)a.len;
	}
	mm_copy_to_guest(mem, gpa + offsetof(struct ufvm_hc_write, ret), &a.ret, sizeof(a.ret));
	return true;
}

static bool hc_exit(struct vcpu *v, uint32_t gpa)
{
	struct ufvm_hc_exit a;

	if (mm_copy_from_guest(v->vm->mem, &a, gpa, sizeof(a)) < 0)
		return hc_bad_arg(v, "exit", gpa, sizeof(a));
	if (a.status > 255)
		fprintf(stderr, "ufvm: guest exit status %" PRIu64 " truncated to %" PRIu64 "\n",
			a.status, a.status & 255);
	vm_stop(v->vm, (int)(a.status & 255));
	return false;
}

static bool hc_clock(struct vcpu *v, uint32_t gpa)
{
	struct ufvm_hc_clock a = {.ns = vmm_now_ns(), .ret = 0};

	if (!mm_gpa(v->vm->mem, gpa, sizeof(a)))
		return hc_bad_arg(v, "clock", gpa, sizeof(a));
	mm_copy_to_guest(v->vm->mem, gpa, &a, sizeof(a));
	return true;
}

static bool hc_mark(struct vcpu *v, uint32_t gpa)
{
	struct vm *vm = v->vm;
	struct ufvm_hc_mark a;
	char label[UFVM_MARK_MAX + 1];

	if (mm_copy_from_guest(vm->mem, &a, gpa, sizeof(a)) < 0)
		return hc_bad_arg(v, "mark", gpa, sizeof(a));
	if (a.len == 0 || a.len > UFVM_MARK_MAX) {
		a.ret = -UFVM_EINVAL;
	} else if (mm_copy_from_guest(vm->mem, label, a.label, a.len) < 0) {
		a.ret = -UFVM_EFAULT;
	} else {
		uint64_t t = vmm_now_ns() - vm->start_ns;

		label[a.len] = '\0';
		for (uint64_t i = 0; i < a.len; i++)
			if (label[i] < 0x20 || label[i] > 0x7e)
				label[i] = '?';
		if (vm->opts->verbose)
			fprintf(stderr,
				"ufvm: mark '%s' at %" PRIu64 ".%06" PRIu64 " s (vCPU %u)\n", label,
				t / 1000000000, t / 1000 % 1000000, v->index);
		if (vm->on_mark)
			vm->on_mark(vm, v->index, label, vm->on_mark_ctx);
		a.ret = 0;
	}
	mm_copy_to_guest(vm->mem, gpa + offsetof(struct ufvm_hc_mark, ret), &a.ret, sizeof(a.ret));
	return true;
}

static bool hc_halt(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool all;

	pthread_mutex_lock(&vm->lock);
	all = ++vm->halted == vm->ncpus;
	pthread_mutex_unlock(&vm->lock);
	if (all)
		vm_stop(vm, 0);
	return false;
}

bool hc_decode_io(const struct kvm_run *run, uint32_t *gpa)
{
	if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 || run->io.count != 1 ||
	    run->io.port <= UFVM_HC_PORT_BASE || run->io.port >= UFVM_HC_PORT(UFVM_HC_MAX))
		return false;
	memcpy(gpa, (const uint8_t *)run + run->io.data_offset, 4);
	return true;
}

bool hc_dispatch(struct vcpu *v, uint16_t port, uint32_t gpa)
{
	switch (port - UFVM_HC_PORT_BASE) {
	case UFVM_HC_WRITE:
		return hc_write(v, gpa);
	case UFVM_HC_EXIT:
		return hc_exit(v, gpa);
	case UFVM_HC_CLOCK:
		return hc_clock(v, gpa);
	case UFVM_HC_MARK:
		return hc_mark(v, gpa);
	case UFVM_HC_HALT:
		return hc_halt(v);
	default:
		return true; /* unreachable: the caller checked the port range */
	}
}
