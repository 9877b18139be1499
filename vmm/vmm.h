/* vmm.h: the VM, its vCPUs, the loader and the hypercall dispatcher */
#ifndef UFVM_VMM_H
#define UFVM_VMM_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "mm/mm.h"
#include "ufvm/abi.h"

/* Exit statuses of the ufvm process (the guest's own status passes through). */
#define VMM_EXIT_INTERNAL 1 /* host-side failure (KVM ioctl, out of memory) */
#define VMM_EXIT_USAGE	  2 /* bad CLI argument, bad guest image, bad guest request */
#define VMM_EXIT_CRASH	  3 /* guest crashed: exception, triple fault, emulation failure */

/* KVM dirty tracking (dirty.c): --dirty-track=MODE */
enum dirty_mode { DIRTY_OFF, DIRTY_BITMAP, DIRTY_RING, DIRTY_AUTO };

/* pager_glue.c: the pager's command-line options (parsed by pager_parse_opt) */
enum {
	PAGER_OPT_PAGER = 500,
	PAGER_OPT_LIMIT,
	PAGER_OPT_SWAP,
	PAGER_OPT_DIRECT,
	PAGER_OPT_CHUNK,
	PAGER_OPT_STATS,
	PAGER_OPT_MARK,
	PAGER_OPT_SWAPIN,
	PAGER_OPT_TEST_FAIL, /* hidden, TEST ONLY */
	PAGER_OPT_SCAN_INTERVAL,
	PAGER_OPT_SCAN_RATE,
	PAGER_OPT_SCAN_CPU,
	PAGER_OPT_CLEAN,
	PAGER_OPT_SPIN,
	PAGER_OPT_READAHEAD,
	PAGER_OPT_TRACE,
	PAGER_OPT_END
};

struct pager_cli {
	struct mm_pager_opts o;
	bool off;		  /* --pager off */
	int stats;		  /* 0, 1 text, 2 json */
	const char *swapout_mark; /* --swapout-at-mark LABEL */
	bool prefetch;		  /* --swapin prefetch */
	const char *test_fail;	  /* --test-swap-fail (TEST ONLY) */
	bool scan_set;		  /* --scan-interval given (MS or off) */
	bool spin_set;		  /* --fault-spin given */
	const char *trace;	  /* --trace-pages FILE */
};

struct vmm_opts {
	uint64_t mem;  /* guest RAM, bytes (rounded up to 2 MiB) */
	unsigned cpus; /* 1..UFVM_MAX_CPUS */
	bool pin;      /* --pin CPU: every thread on pin_cpu */
	unsigned pin_cpu;
	const char *cmdline;   /* guest command line, may be "" */
	const char *guest;     /* path of the guest ELF */
	int verbose;	       /* print marks and set-up details */
	const char *api;       /* control socket path (--api), NULL for none */
	enum dirty_mode dirty; /* --dirty-track (default off) */
	bool dirty_set;	       /* --dirty-track given (else a default, quietly off if KVM cannot) */

	/* Linux guests (vmm/linux.c, devices/): --kernel replaces GUEST.elf */
	const char *kernel; /* bzImage or vmlinux */
	const char *initrd; /* NULL: none */
	const char *append; /* kernel command line, may be NULL */
	const char *disk;   /* --disk PATH[,ro] */
	bool disk_ro;
	bool no_balloon;

	struct pager_cli pager; /* pager_glue.c */
};

/* ---- cli.c: command line (pure functions, unit-tested) ---- */

/* Parse "123", "64K", "512M", "2G" (also lowercase, optional "iB"/"B") into bytes; -EINVAL/-ERANGE.
 */
int cli_parse_size(const char *s, uint64_t *out);
/* Parse a decimal unsigned in [min, max]; -EINVAL/-ERANGE. */
int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);

/* ---- input.c ---- */

/* Read a whole regular file of at most `max` bytes into a malloc'ed buffer (caller frees).
 * Top-level helper: prints one line naming `what`, the path and the reason, and returns
 * VMM_EXIT_USAGE on failure; 0 on success. */
int vmm_read_file(const char *what, const char *path, uint64_t max, uint8_t **buf, size_t *len);

/* ---- kvm.c: the /dev/kvm system fd ---- */

struct kvm {
	int fd;
	int run_size; /* KVM_GET_VCPU_MMAP_SIZE */
	struct kvm_cpuid2 *cpuid;
	bool has_1g_pages;
	int max_vcpus; /* KVM_CAP_MAX_VCPUS, or <= 0 when the host does not say */
};

/* Open /dev/kvm and check the API version and every capability ufvm uses.
 * On failure *why names the reason (static string); returns -errno. */
int kvm_open(struct kvm *k, const char **why);
/* KVM_SET_CPUID2 on vCPU fd: the supported CPUID with this vCPU's APIC ID (leaves 1, 0xb,
 * 0x1f); linux_cpus > 0 (Linux guests) also sets the logical processor count, HTT and
 * the hypervisor bit. -errno. */
int kvm_set_vcpu_cpuid(int fd, const struct kvm *k, unsigned index, unsigned linux_cpus);
void kvm_close(struct kvm *k);

/* ---- cpuid_cache.c: KVM_GET_SUPPORTED_CPUID's answer across runs ---- */

/* The answer kept for this boot and this /dev/kvm node (malloc'ed), or NULL.
 * UFVM_CPUID_CACHE=off disables the cache, UFVM_CPUID_CACHE=PATH moves it;
 * else /run/ufvm/cpuid as root, $XDG_RUNTIME_DIR/ufvm-cpuid otherwise. */
struct kvm_cpuid2 *cpuid_cache_load(int kvm_fd);
/* Keep c for the next run (written whole, then renamed); errors are ignored. */
void cpuid_cache_store(int kvm_fd, const struct kvm_cpuid2 *c);

struct elf_image; /* boot/boot.h */

/* ---- x86.c: page tables, descriptor tables, boot info, initial registers ---- */

/* Write page tables, GDT, TSSs, IDT, exception stubs, command line and boot
 * infos into guest RAM. Must be called after elf_load (heap starts after the image). */
int x86_setup_guest(const struct mm_mem *mem, const struct kvm *k, unsigned cpus,
		    const char *cmdline, const struct elf_image *img, uint64_t tsc_khz);
/* Initial special and general registers of vCPU `index`. */
int x86_setup_vcpu(int vcpu_fd, const struct kvm *k, unsigned index, uint64_t entry);
const char *x86_exception_name(unsigned vector);

/* ---- vm.c / vcpu.c: the VM and its run loop ---- */

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

struct vio_balloon;

struct vm {
	struct kvm *kvm;
	int fd;
	struct mm_mem *mem;
	const struct vmm_opts *opts;
	unsigned ncpus;
	struct vcpu vcpus[UFVM_MAX_CPUS];
	uint64_t start_ns;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool stopping;
	int stop_efd;	       /* eventfd, readable from the first vm_stop on: wakes a poll() */
	int exit_status;       /* valid once stopping */
	unsigned halted;       /* vCPUs parked by the HALT hypercall */
	unsigned live;	       /* vCPUs inside their run loop */
	unsigned paused;       /* vCPUs parked: at their pause point, or waiting (vcpu_park) */
	atomic_uint pause_req; /* pause depth: vCPUs park while it is > 0 */
	bool console_busy;     /* a vCPU is writing to the console (hypercall.c); under lock */

	struct dirty *dirty;	     /* KVM dirty tracking, NULL when off */
	struct vio_balloon *balloon; /* Linux guests' balloon (control socket), NULL if none */

	/* called on a `mark` hypercall (after logging), may be NULL */
	void (*on_mark)(struct vm *vm, unsigned vcpu, const char *label, void *ctx);
	void *on_mark_ctx;

	/* Linux guests: port I/O outside the hypercall ports, and MMIO, go here (the device
	 * bus, vmm/linux_boot.c); false leaves the run loop. NULL for ELF guests. */
	bool (*on_io)(struct vcpu *v, void *ctx);
	void *on_io_ctx;
};

int vm_create(struct vm *vm, struct kvm *k, struct mm_mem *mem, const struct vmm_opts *o);
void vm_destroy(struct vm *vm);
/* Start every vCPU thread and wait until the VM stops; returns the exit status. */
int vm_run(struct vm *vm);
/* End the VM with `status` (first caller wins): kick every vCPU out of KVM_RUN, wake
 * every wait on vm->cond, make vm->stop_efd readable. Safe from any thread, including
 * vCPU threads and the pager. */
void vm_stop(struct vm *vm, int status);
/* Stop all running vCPUs at their next exit and wait until they are parked.
 * Must not be called from a vCPU thread. Returns -ESHUTDOWN if the VM is stopping.
 * Pauses nest: every vm_pause (even a failed one) is matched by one vm_resume,
 * and the vCPUs run again only after the last. */
int vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/*
 * A vCPU about to wait outside the guest for something that may never come (the
 * console's reader) parks itself: a vm_pause does not wait for it meanwhile. Its wait
 * must end when vm->stop_efd becomes readable. vcpu_unpark ends the park, and keeps
 * the vCPU parked while a pause is in force; false when the VM is stopping. Called
 * without vm->lock; with the lock held, the _locked variants.
 */
void vcpu_park(struct vcpu *v);
bool vcpu_unpark(struct vcpu *v);
void vcpu_park_locked(struct vcpu *v);
bool vcpu_unpark_locked(struct vcpu *v);
uint64_t vmm_now_ns(void);

/* ---- stop.c: the stop signals, the stop deadline, the files removed at the end ---- */

/*
 * SIGINT, SIGTERM and SIGHUP stop the VM the orderly way (statistics printed, the
 * control socket removed, exit status 128 + signal). vmm_signals_init blocks them in
 * the calling thread, so that every thread it creates inherits the mask; the stop
 * thread (vmm_stop_start) takes them from a signalfd and calls vm_stop, so a signal
 * acts whatever the vCPUs are doing (halted, paused, blocked on the console). Must be
 * called before any thread is created.
 */
void vmm_signals_init(void);
/*
 * What the stop thread calls when the VM does not end by itself (stop.c):
 * release: vCPUs are still in the VM VMM_STOP_RELEASE_MS after its stop, blocked in
 *   faults that will not be served: let them go (the pager's mm_pager_release). Called
 *   with vm->lock held, while at least one vCPU is live. May be NULL.
 * abandon: the process has not ended VMM_STOP_GRACE_MS after the stop (a thread blocked
 *   in the kernel: swap I/O on a stalled device), or a second stop signal came: end the
 *   process as an orderly stop would (statistics, files removed, status); never returns.
 */
struct vmm_stop_ops {
	void (*release)(void *ctx);
	void (*abandon)(void *ctx);
};
#define VMM_STOP_RELEASE_MS 50
#define VMM_STOP_GRACE_MS   500
/* Start the stop thread for vm (before vm_run); -errno. */
int vmm_stop_start(struct vm *vm, const struct vmm_stop_ops *ops, void *ctx);
/* The orderly end is done as far as anyone can see (statistics, files): from now on the
 * stop thread leaves the VM alone, so it may be destroyed. The thread is not joined (its
 * wake-up and join would cost start-up time); the process's exit ends it. */
void vmm_stop_end(void);
/* The stop signal that stopped the VM, or 0. */
int vmm_stop_signal(void);
/*
 * Files ufvm created and removes when it ends (the control socket, a swap file):
 * vmm_file_track records path's device and inode now and returns a handle (or -errno);
 * vmm_file_remove unlinks the path only if it still names that file, so another VM's
 * socket that replaced ours stays. Idempotent and thread-safe; a handle < 0 is a no-op.
 */
int vmm_file_track(const char *path);
void vmm_file_remove(int handle);
void vmm_files_remove_all(void);

/* vcpu.c */
int vcpu_create(struct vm *vm, unsigned index);
void vcpu_destroy(struct vcpu *v);
void *vcpu_thread(void *arg);
void vcpu_dump_regs(const struct vcpu *v);

/* ---- api/control.c, api/control_req.c: the control socket (docs/API.md) ---- */

struct ctl;

/* What requests act on; owned by the control thread. */
struct ctl_ctx {
	struct vm *vm;
	atomic_bool paused; /* paused by a `pause` request, until `resume` */
};

/*
 * Listen on a UNIX socket at path (mode 0600, a stale socket there is
 * replaced) and serve requests on a thread until ctl_stop. Must be called
 * after vm_create; the pager, if any, is found through vm->mem->pager at each
 * request, so it must be started before and stopped after. -errno, *why names the step.
 */
int ctl_start(struct ctl **out, const char *path, struct vm *vm, const char **why);
/* Stop serving, resume a VM paused by a request, remove the socket. NULL is a no-op. */
void ctl_stop(struct ctl *c);
/* Answer one request line (len bytes, no newline) with a malloc'd JSON object
 * line ending in '\n' (*outlen bytes); NULL only when out of memory. */
char *ctl_answer(struct ctl_ctx *c, const char *line, size_t len, size_t *outlen);
/* Whether the request may take long or wait for the vCPUs or the pager's locks (pause,
 * resume, swapout, swapin, reclaim, pagemap): the server runs those on a thread of their
 * own, one at a time, and keeps answering the others (stop above all) meanwhile. */
bool ctl_request_slow(const char *line, size_t len);
/* api/control_map.c: the `pagemap` request (a jansson json_t in and out) */
struct json_t *ctl_pagemap(struct ctl_ctx *c, struct json_t *req);
struct json_t *ctl_dirty(struct ctl_ctx *c, struct json_t *req); /* the `dirty` request */
/* api/control_balloon.c: the `balloon` request (vm->balloon) */
struct json_t *ctl_balloon(struct ctl_ctx *c, struct json_t *req);

/* ---- dirty.c: KVM dirty tracking ---- */

struct dirty {
	enum dirty_mode mode; /* what runs: never DIRTY_AUTO after dirty_init */
	bool manual;	      /* bitmap with KVM_CLEAR_DIRTY_LOG (manual protect) */
	bool ring_plain;      /* the ring without the acquire/release variant */
	struct vm *vm;
	uint64_t npages;
	uint64_t *pending;	 /* dirty since the last dirty_harvest, one bit per page */
	uint64_t *scratch;	 /* KVM_GET_DIRTY_LOG's buffer */
	uint64_t *pager_pending; /* the same for the pager's consumer (dirty_harvest_pager) */
	uint64_t *host;		 /* the VMM's own writes (mm_mem.host_dirty), atomic words */
	uint64_t *held;		 /* lazy: reported by KVM, not yet cleared (still writable) */
	bool lazy;		 /* the pager re-protects pages itself (dirty_set_lazy) */
	struct kvm_dirty_gfn *ring[UFVM_MAX_CPUS];
	uint32_t fetch[UFVM_MAX_CPUS];
	unsigned ring_bytes, ring_n;
	pthread_mutex_t lock;
};

/* A vCPU left KVM_RUN with KVM_EXIT_DIRTY_RING_FULL: drain every ring now; the vCPU
 * may then re-enter. Rings are otherwise drained only by a harvest. */
void dirty_ring_full(struct dirty *d);
const char *dirty_mode_name(enum dirty_mode m);
int dirty_parse_mode(const char *s, enum dirty_mode *m); /* off|bitmap|ring|auto; -EINVAL */
/*
 * Turn on dirty logging for guest RAM: must be called after vm_create and
 * before vcpu_create (the ring is a VM capability set before any vCPU). AUTO
 * picks the ring when offered, else the bitmap (with manual protect when
 * offered). -errno, *why names the step.
 */
int dirty_init(struct dirty *d, struct vm *vm, enum dirty_mode want, const char **why);
/* After every vcpu_create: map the rings and start their harvester. */
int dirty_start(struct dirty *d, const char **why);
/*
 * OR into out (one bit per 4 KiB page, npages bits in uint64_t words) every
 * page written since the previous harvest, and return how many were: the pages
 * KVM saw written (host writes through mm_copy_to_guest are not included yet).
 * Thread-safe; -ENOTSUP when off, else -errno from KVM.
 */
int64_t dirty_harvest(struct dirty *d, uint64_t *out);
/* The same for the pager (mm_host_ops.harvest_dirty): a consumer of its own, so
 * the control socket's `dirty` request never takes bits the pager needs. */
int64_t dirty_harvest_pager(struct dirty *d, uint64_t *out);
/*
 * Lazy re-protect (the bitmap with manual protect only; false otherwise): from now on a
 * harvest for the pager leaves the pages it reports writable and reports only pages not
 * reported before; dirty_reprotect re-protects a range (the pager: when its clock hand has
 * passed it). dirty_harvest (the `dirty` request) still re-protects everything, so it
 * reports exactly the pages written since its previous call.
 */
bool dirty_set_lazy(struct dirty *d);
int dirty_reprotect(struct dirty *d, uint64_t first, uint64_t npages); /* 0 or -errno */
void dirty_destroy(struct dirty *d); /* after vm_run; a zeroed struct is a no-op */

/* ---- hypercall.c ---- */

/* Is this KVM_EXIT_IO a hypercall (a 32-bit OUT, no rep, to a hypercall port)? Then
 * *gpa is its argument. Pure: the guest picks every field but data_offset (KVM's). */
bool hc_decode_io(const struct kvm_run *run, uint32_t *gpa);
/* Handle an OUT to a hypercall port. Returns true to keep running; on a fatal
 * condition it has already called vm_stop with the right status and a message. */
bool hc_dispatch(struct vcpu *v, uint16_t port, uint32_t gpa);

/* ---- pager_glue.c: the pager's options, host callbacks, SIGUSR1, --stats ---- */

struct pager_glue {
	const struct pager_cli *cli;
	struct mm_pager *pager; /* NULL with --pager off */
	int trace_fd;		/* --trace-pages, or -1 */
};

extern const char *pager_usage;
int pager_parse_opt(struct pager_cli *pc, int opt, const char *arg, const char **why);
int pager_check_opts(const struct pager_cli *pc, const char **why);
/* After guest RAM is written and before vm_run; prints and returns an exit status on failure. */
int pager_glue_start(struct pager_glue *g, const struct pager_cli *pc, struct vm *vm,
		     struct mm_mem *mem);
/* After vm_run (and after the control socket stopped): print --stats, stop the pager. */
void pager_glue_stop(struct pager_glue *g);
/* The VM's stop waits for vCPUs blocked in faults: let them go (mm_pager_release). */
void pager_glue_release(struct pager_glue *g);
/* Print --stats if asked for and not printed yet; safe beside pager_glue_stop, from the
 * stop thread (the process then ends without stopping the pager). */
void pager_glue_stats(struct pager_glue *g);

#endif
