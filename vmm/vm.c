/* vm.c: create the VM and its memory slot, start/stop/pause its vCPUs */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "vmm/vmm.h"

#define VCPU_KICK_SIGNAL SIGUSR2

uint64_t vmm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void vm_kick_handler(int sig)
{
	(void)sig; /* only here to interrupt KVM_RUN (and console writes) with EINTR */
}

int vm_create(struct vm *vm, struct kvm *k, struct mm_mem *mem, const struct vmm_opts *o)
{
	struct kvm_userspace_memory_region region = {
	    .slot = 0,
	    .guest_phys_addr = 0,
	    .memory_size = mem->size,
	    .userspace_addr = (uint64_t)(uintptr_t)mem->hva,
	};
	struct sigaction sa = {.sa_handler = vm_kick_handler};
	int err;

	memset(vm, 0, sizeof(*vm));
	vm->kvm = k;
	vm->mem = mem;
	vm->opts = o;
	vm->ncpus = o->cpus;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL); /* no SA_RESTART: KVM_RUN returns EINTR */

	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0) {
		vm->fd = -1;
		return -errno;
	}
	vm->fd = ioctl(k->fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0) {
		err = -errno;
		goto err_efd;
	}
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		err = -errno;
		goto err_close;
	}
	return 0;

err_close:
	close(vm->fd);
	vm->fd = -1;
err_efd:
	close(vm->stop_efd);
	vm->stop_efd = -1;
	return err;
}

void vm_destroy(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	if (vm->fd >= 0)
		close(vm->fd);
	vm->fd = -1;
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	vm->stop_efd = -1;
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
}

/* Make every vCPU leave KVM_RUN soon: immediate_exit covers a vCPU about to
 * enter, the signal one that is inside (including one blocked in a guest
 * page fault that userfaultfd is holding, which KVM waits for interruptibly). */
static void vm_kick_all(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->run)
			__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (v->started && !pthread_equal(v->thread, pthread_self()))
			pthread_kill(v->thread, VCPU_KICK_SIGNAL);
	}
	pthread_mutex_unlock(&vm->lock);
}

void vm_stop(struct vm *vm, int status)
{
	uint64_t one = 1;
	bool first = false;

	pthread_mutex_lock(&vm->lock);
	if (!atomic_load(&vm->stopping)) {
		vm->exit_status = status;
		atomic_store(&vm->stopping, true);
		first = true;
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	/* once is enough: nobody reads it, so it stays readable */
	if (first && write(vm->stop_efd, &one, sizeof(one)) < 0) {
		/* cannot fail: the counter is far from saturated */
	}
	vm_kick_all(vm);
}

int vm_pause(struct vm *vm)
{
	int err = 0;

	/* pauses nest (a control client and the pager may both pause): the
	 * vCPUs run again only when every pause has been resumed */
	pthread_mutex_lock(&vm->lock);
	atomic_fetch_add(&vm->pause_req, 1);
	pthread_mutex_unlock(&vm->lock);
	vm_kick_all(vm);
	pthread_mutex_lock(&vm->lock);
	while (vm->paused < vm->live && !atomic_load(&vm->stopping)) {
		struct timespec ts;

		/* re-kick now and then: a kick can land just before KVM_RUN clears immediate_exit
		 */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&vm->lock);
			vm_kick_all(vm);
			pthread_mutex_lock(&vm->lock);
		}
	}
	if (atomic_load(&vm->stopping))
		err = -ESHUTDOWN;
	pthread_mutex_unlock(&vm->lock);
	return err;
}

void vcpu_park_locked(struct vcpu *v)
{
	v->vm->paused++;
	pthread_cond_broadcast(&v->vm->cond); /* a vm_pause may be waiting for this one */
}

bool vcpu_unpark_locked(struct vcpu *v)
{
	struct vm *vm = v->vm;

	while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->paused--;
	return !atomic_load(&vm->stopping);
}

void vcpu_park(struct vcpu *v)
{
	pthread_mutex_lock(&v->vm->lock);
	vcpu_park_locked(v);
	pthread_mutex_unlock(&v->vm->lock);
}

bool vcpu_unpark(struct vcpu *v)
{
	bool ok;

	pthread_mutex_lock(&v->vm->lock);
	ok = vcpu_unpark_locked(v);
	pthread_mutex_unlock(&v->vm->lock);
	return ok;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (atomic_load(&vm->pause_req) > 0)
		atomic_fetch_sub(&vm->pause_req, 1);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

/* The last vCPU runs on the calling thread: one thread create/join less at
 * start-up, and the kick protocol already handles the caller's own thread. */
int vm_run(struct vm *vm)
{
	unsigned started = 0, last = vm->ncpus - 1;
	int err = 0;

	vm->start_ns = vmm_now_ns();
	vm->live = vm->ncpus;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		/* started is set under the lock before the thread exists and cleared by the
		 * thread itself under the lock, so a kick never targets a joined thread */
		pthread_mutex_lock(&vm->lock);
		vm->vcpus[i].started = true;
		if (i == last)
			vm->vcpus[i].thread = pthread_self();
		else
			err =
			    pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
		if (err) {
			vm->vcpus[i].started = false;
		} else if (i != last) { /* for top -H and perf; the main thread keeps "ufvm" */
			char name[16];

			snprintf(name, sizeof(name), "ufvm-vcpu%u", i % 100000u);
			pthread_setname_np(vm->vcpus[i].thread, name);
		}
		pthread_mutex_unlock(&vm->lock);
		if (err) {
			fprintf(stderr, "ufvm: vCPU %u: cannot start thread: %s\n", i,
				strerror(err));
			pthread_mutex_lock(&vm->lock);
			vm->live -= vm->ncpus - i;
			pthread_mutex_unlock(&vm->lock);
			vm_stop(vm, VMM_EXIT_INTERNAL);
			break;
		}
		if (i != last)
			started++;
	}
	if (!err)
		vcpu_thread(&vm->vcpus[last]);
	for (unsigned i = 0; i < started; i++)
		pthread_join(vm->vcpus[i].thread, NULL);
	return vm->exit_status;
}
