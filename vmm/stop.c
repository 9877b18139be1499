/* stop.c: the stop signals, the stop deadline, and the files ufvm removes when it ends */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/vmm.h"

/*
 * Stop means stop. Every way a VM ends goes through vm_stop, which kicks the
 * vCPUs out of KVM_RUN, wakes every wait on vm->cond and makes vm->stop_efd
 * readable; each blocking point of a vCPU wakes on one of those (console
 * writes poll stop_efd). The signals are no exception: one thread takes them
 * from a signalfd and calls vm_stop, so a signal acts even when no vCPU can
 * (all halted, paused, blocked). What no signal can end is a thread blocked in
 * the kernel on something that will not come (a read from a stalled swap
 * device, a vCPU in a fault that waits for that read, or for one that failed).
 * From the first vm_stop on, the same thread watches the clock: vCPUs still in
 * the VM VMM_STOP_RELEASE_MS later are let out of their faults (ops.release);
 * a process still there VMM_STOP_GRACE_MS later is ended by the top level's
 * ops.abandon, which does what the orderly end would (statistics, files
 * removed, status) without waiting for the blocked threads.
 */

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};

static struct {
	struct vm *vm;
	struct vmm_stop_ops ops;
	void *ctx;
	int sfd;
	pthread_t tid;
	atomic_int signal; /* the first stop signal */
	/* The orderly end took over (vmm_stop_end): the thread must not touch the VM
	 * again. It is never joined: a wake-up and a join cost more than it does. */
	pthread_mutex_t mu;
	bool started, ended;
} st = {.sfd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static void stop_signal_set(sigset_t *set)
{
	sigemptyset(set);
	for (unsigned i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaddset(set, stop_signals[i]);
}

void vmm_signals_init(void)
{
	sigset_t set;

	stop_signal_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int vmm_stop_signal(void)
{
	return atomic_load(&st.signal);
}

/* A stop signal arrived: the first stops the VM, a second one abandons it at once. */
static bool stop_take_signal(void)
{
	struct signalfd_siginfo si;

	if (read(st.sfd, &si, sizeof(si)) != sizeof(si))
		return false;
	if (atomic_load(&st.signal))
		return true;
	atomic_store(&st.signal, (int)si.ssi_signo);
	vm_stop(st.vm, 128 + (int)si.ssi_signo);
	return false;
}

/* vCPUs still in the VM a while after the stop wait in faults nobody will serve. */
static void stop_release(void)
{
	struct vm *vm = st.vm;

	pthread_mutex_lock(&vm->lock);
	if (vm->live && st.ops.release) /* the pager is there while a vCPU is */
		st.ops.release(st.ctx);
	pthread_mutex_unlock(&vm->lock);
}

static void *stop_main(void *arg)
{
	uint64_t stopped = 0, release = 0, deadline = 0;
	bool signalled = false;

	(void)arg;
	for (;;) {
		struct pollfd pf[2] = {{.fd = st.sfd, .events = POLLIN},
				       {.fd = st.vm->stop_efd, .events = POLLIN}};
		uint64_t now = vmm_now_ns(), next;
		bool insist = false;
		int timeout = -1;

		pthread_mutex_lock(&st.mu);
		if (st.ended) /* the VM may be gone */
			break;
		if (signalled)
			insist = stop_take_signal(); /* a second signal: the user insists */
		if (!stopped && atomic_load(&st.vm->stopping)) {
			stopped = now;
			release = stopped + VMM_STOP_RELEASE_MS * 1000000ULL;
			deadline = stopped + VMM_STOP_GRACE_MS * 1000000ULL;
		}
		if (release && now >= release) {
			stop_release();
			release = 0;
		}
		if (insist || (deadline && now >= deadline))
			st.ops.abandon(st.ctx); /* does not return */
		pthread_mutex_unlock(&st.mu);
		next = release ? release : deadline;
		if (next)
			timeout = (int)((next - now) / 1000000) + 1;
		/* stop_efd stays readable once stopping: watch it only until then */
		if (poll(pf, stopped ? 1 : 2, timeout) < 0 && errno != EINTR)
			timeout = 10; /* cannot happen; do not spin */
		signalled = pf[0].revents != 0;
	}
	pthread_mutex_unlock(&st.mu);
	return NULL;
}

int vmm_stop_start(struct vm *vm, const struct vmm_stop_ops *ops, void *ctx)
{
	sigset_t set;
	int err;

	st.vm = vm;
	st.ops = *ops;
	st.ctx = ctx;
	stop_signal_set(&set);
	st.sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (st.sfd < 0)
		return -errno;
	err = -pthread_create(&st.tid, NULL, stop_main, NULL);
	if (err) {
		close(st.sfd);
		st.sfd = -1;
		return err;
	}
	pthread_setname_np(st.tid, "ufvm-stop");
	pthread_detach(st.tid);
	st.started = true;
	return 0;
}

void vmm_stop_end(void)
{
	pthread_mutex_lock(&st.mu);
	st.ended = true;
	pthread_mutex_unlock(&st.mu);
}

/* ---- files removed at the end ---- */

#define STOP_FILES 4

static struct {
	char *path;
	dev_t dev;
	ino_t ino;
} files[STOP_FILES];
static pthread_mutex_t files_lock = PTHREAD_MUTEX_INITIALIZER;

int vmm_file_track(const char *path)
{
	struct stat sb;
	int h = -ENOSPC;

	if (lstat(path, &sb) < 0)
		return -errno;
	pthread_mutex_lock(&files_lock);
	for (int i = 0; i < STOP_FILES; i++) {
		if (files[i].path)
			continue;
		files[i].path = strdup(path);
		files[i].dev = sb.st_dev;
		files[i].ino = sb.st_ino;
		h = files[i].path ? i : -ENOMEM;
		break;
	}
	pthread_mutex_unlock(&files_lock);
	return h;
}

static void file_remove_locked(int h)
{
	struct stat sb;

	if (!files[h].path)
		return;
	/* only the file we made: a path may have been taken over since (another VM's
	 * socket there after ours was removed by hand) */
	if (lstat(files[h].path, &sb) == 0 && sb.st_dev == files[h].dev &&
	    sb.st_ino == files[h].ino)
		unlink(files[h].path);
	free(files[h].path);
	files[h].path = NULL;
}

void vmm_file_remove(int h)
{
	if (h < 0 || h >= STOP_FILES)
		return;
	pthread_mutex_lock(&files_lock);
	file_remove_locked(h);
	pthread_mutex_unlock(&files_lock);
}

void vmm_files_remove_all(void)
{
	pthread_mutex_lock(&files_lock);
	/* newest first: the socket before a swap file, which may sit on a stalled device */
	for (int i = STOP_FILES - 1; i >= 0; i--)
		file_remove_locked(i);
	pthread_mutex_unlock(&files_lock);
}
