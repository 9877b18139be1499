/* main.c: ufvm's command line and top level: the only place that decides to print and exit */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/linux.h"
#include "vmm/vmm.h"

#define UFVM_VERSION  "0.1.0"
#define MAX_IMAGE     (256ULL << 20)
#define LINUX_SCAN_MS 50 /* --kernel under --mem-limit: access sampling every 50 ms */

static void usage(FILE *f)
{
	fprintf(f, "usage: ufvm run [OPTIONS] GUEST.elf\n"
		   "       ufvm --help | --version\n"
		   "\n"
		   "Runs a static ELF64 guest at CPL 3 on a KVM vCPU per --cpus, with guest RAM\n"
		   "managed by ufvm. Exits with the guest's exit status (0..255); 2 on bad input,\n"
		   "3 when the guest crashes, 1 on a host-side failure, 128+N after signal N\n"
		   "(a second one ends ufvm at once).\n"
		   "\n"
		   "options for run:\n"
		   "  --mem SIZE        guest RAM (K/M/G suffixes; default 64M, 16M..64G,\n"
		   "                    rounded up to 2M)\n"
		   "  --cpus N          vCPUs, 1..64 (default 1)\n"
		   "  --cmdline STRING  command line handed to the guest\n"
		   "  --pin CPU         run every ufvm thread on CPU: on nested hosts a fault\n"
		   "                    then costs no cross-CPU wake-up (best for one vCPU)\n"
		   "  -v, --verbose     log marks and set-up details to stderr\n"
		   "  --api PATH        serve the control socket at PATH (mode 0600), for\n"
		   "                    ufvmctl: stats, pause, swap-out, ... (docs/API.md)\n"
		   "  --dirty-track[=MODE]  KVM dirty tracking (default off: it costs the guest a\n"
		   "                    write fault per page and harvest; auto for --kernel under\n"
		   "                    --mem-limit): bitmap, ring, off, or auto (the bitmap; the\n"
		   "                    default without =MODE)\n");
	/* Linux guests (vmm/linux.c, devices/) */
	fprintf(f,
		"\n"
		"       ufvm run --kernel bzImage|vmlinux [--initrd FILE] [--append STRING] ...\n"
		"  --kernel PATH     boot a Linux kernel (bzImage, vmlinux, or its PVH entry)\n"
		"                    instead of GUEST.elf; RAM 16M..3G (docs/linux.md)\n"
		"  --initrd PATH     initramfs handed to the kernel\n"
		"  --append STRING   kernel command line (e.g. \"console=ttyS0\")\n");
	dev_usage_all(f);
	fprintf(f, "\npager options for run:\n%s", pager_usage); /* pager_glue.c */
}

static int bad_arg(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "ufvm: ");
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, "\nTry 'ufvm --help' for more information.\n");
	return VMM_EXIT_USAGE;
}

enum { OPT_MEM = 256, OPT_CPUS, OPT_CMDLINE, OPT_PIN, OPT_API = 300, OPT_DIRTY };
enum { OPT_KERNEL = 400, OPT_INITRD, OPT_APPEND, OPT_DISK, OPT_NO_BALLOON }; /* Linux guests */

/*
 * Did the argument getopt_long just took long option `name` from spell it in
 * full? getopt_long also takes any unambiguous abbreviation (--mem-l for
 * --mem-limit), which would let an option hide from whoever checks a command
 * line by name (the pool refuses a VM's own --mem-limit and --api).
 */
static bool opt_in_full(char **argv, const char *name, const char **tok)
{
	size_t n;

	/* the option's own argument: the one before its value when that came separately */
	*tok = optarg && optind >= 2 && optarg == argv[optind - 1] ? argv[optind - 2]
								   : argv[optind - 1];
	if (strncmp(*tok, "--", 2))
		return true;
	n = strcspn(*tok + 2, "=");
	return n == strlen(name) && !strncmp(*tok + 2, name, n);
}

/* Returns -1 to continue, or an exit status. */
static int parse_run_args(int argc, char **argv, struct vmm_opts *o)
{
	static const struct option longopts[] = {
	    {"mem", required_argument, NULL, OPT_MEM},
	    {"cpus", required_argument, NULL, OPT_CPUS},
	    {"cmdline", required_argument, NULL, OPT_CMDLINE},
	    {"pin", required_argument, NULL, OPT_PIN},
	    {"verbose", no_argument, NULL, 'v'},
	    {"api", required_argument, NULL, OPT_API},
	    {"dirty-track", optional_argument, NULL, OPT_DIRTY},
	    {"kernel", required_argument, NULL, OPT_KERNEL},
	    {"initrd", required_argument, NULL, OPT_INITRD},
	    {"append", required_argument, NULL, OPT_APPEND},
	    {"disk", required_argument, NULL, OPT_DISK},
	    {"no-balloon", no_argument, NULL, OPT_NO_BALLOON},
	    /* the pager (pager_glue.c) */
	    {"pager", required_argument, NULL, PAGER_OPT_PAGER},
	    {"mem-limit", required_argument, NULL, PAGER_OPT_LIMIT},
	    {"swap", required_argument, NULL, PAGER_OPT_SWAP},
	    {"swap-direct", no_argument, NULL, PAGER_OPT_DIRECT},
	    {"chunk", required_argument, NULL, PAGER_OPT_CHUNK},
	    {"readahead", required_argument, NULL, PAGER_OPT_READAHEAD},
	    {"trace-pages", required_argument, NULL, PAGER_OPT_TRACE},
	    {"stats", optional_argument, NULL, PAGER_OPT_STATS},
	    {"swapout-at-mark", required_argument, NULL, PAGER_OPT_MARK},
	    {"swapin", required_argument, NULL, PAGER_OPT_SWAPIN},
	    {"test-swap-fail", required_argument, NULL, PAGER_OPT_TEST_FAIL}, /* TEST ONLY */
	    {"scan-interval", required_argument, NULL, PAGER_OPT_SCAN_INTERVAL},
	    {"scan-rate", required_argument, NULL, PAGER_OPT_SCAN_RATE},
	    {"scan-cpu", required_argument, NULL, PAGER_OPT_SCAN_CPU},
	    {"clean-tracking", required_argument, NULL, PAGER_OPT_CLEAN},
	    {"fault-spin", required_argument, NULL, PAGER_OPT_SPIN},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	bool linux_limited; /* a Linux kernel under --mem-limit: the defaults below */
	int c, li;

	opterr = 0;
	optind = 1;
	while ((li = -1, c = getopt_long(argc, argv, ":+vh", longopts, &li)) != -1) {
		const char *tok;

		if (li >= 0 && !opt_in_full(argv, longopts[li].name, &tok))
			return bad_arg("'%s': write options in full ('--%s')", tok,
				       longopts[li].name);
		switch (c) {
		case OPT_MEM:
			if (cli_parse_size(optarg, &o->mem) < 0 || o->mem < UFVM_MIN_MEM ||
			    o->mem > UFVM_MAX_MEM)
				return bad_arg("--mem: invalid size '%s'%s", optarg,
					       " (use 16M..64G, with a K, M or G suffix)");
			o->mem = (o->mem + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
			break;
		case OPT_CPUS:
			if (cli_parse_uint(optarg, 1, UFVM_MAX_CPUS, &o->cpus) < 0)
				return bad_arg("--cpus: invalid count '%s'%s", optarg,
					       " (use 1..64)");
			break;
		case OPT_CMDLINE:
			if (strlen(optarg) >= UFVM_CMDLINE_MAX)
				return bad_arg("--cmdline: too long%s%s", "",
					       " (at most 4095 bytes)");
			o->cmdline = optarg;
			break;
		case 'v':
			o->verbose++;
			break;
		case OPT_PIN:
			if (cli_parse_uint(optarg, 0, CPU_SETSIZE - 1, &o->pin_cpu) < 0)
				return bad_arg("--pin: invalid CPU '%s'%s", optarg,
					       " (a CPU number, e.g. 0)");
			o->pin = true;
			break;
		case OPT_API:
			if (!*optarg)
				return bad_arg("--api: empty path%s%s", "",
					       " (name the socket file to create)");
			o->api = optarg;
			break;
		case OPT_DIRTY:
			o->dirty = DIRTY_AUTO;
			o->dirty_set = true;
			if (optarg && dirty_parse_mode(optarg, &o->dirty) < 0)
				return bad_arg("--dirty-track: unknown mode '%s'%s", optarg,
					       " (use ring, bitmap, off or auto)");
			break;
		case OPT_KERNEL: /* Linux guests: the options below go to vmm/linux_boot.c */
			o->kernel = optarg;
			break;
		case OPT_INITRD:
			o->initrd = optarg;
			break;
		case OPT_APPEND:
			o->append = optarg;
			break;
		case OPT_DISK: {
			struct dev_opts d;

			if (dev_parse_disk(optarg, &d) < 0)
				return bad_arg("--disk: invalid value '%s'%s", optarg,
					       " (use PATH or PATH,ro)");
			o->disk = d.disk;
			o->disk_ro = d.disk_ro;
			break;
		}
		case OPT_NO_BALLOON:
			o->no_balloon = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			return bad_arg("option '%s' needs an argument%s", argv[optind - 1], "");
		case '?':
			return bad_arg("unknown option '%s'%s", argv[optind - 1], "");
		default: {
			const char *why = "";

			if (c >= PAGER_OPT_PAGER && c < PAGER_OPT_END) { /* pager_glue.c */
				char name[64], val[160];

				if (pager_parse_opt(&o->pager, c, optarg, &why) == 0)
					break;
				/* the option by its name, whether its value came as
				 * --opt=VALUE or as the next argument */
				snprintf(name, sizeof(name), "--%s",
					 li >= 0 ? longopts[li].name : "?");
				snprintf(val, sizeof(val), "'%.100s'%s%s", optarg ? optarg : "",
					 *why ? " " : "", why);
				return bad_arg("%s: invalid value %s", name, val);
			}
			return bad_arg("unknown option '%s'%s", argv[optind - 1], "");
		}
		}
	}
	{
		const char *why;

		if (pager_check_opts(&o->pager, &why) < 0)
			return bad_arg("run: %s%s", why, "");
	}
	if (o->pager.o.mem_limit > o->mem) {
		char lim[32], mem[32];

		snprintf(lim, sizeof(lim), "%llu MiB",
			 (unsigned long long)(o->pager.o.mem_limit >> 20));
		snprintf(mem, sizeof(mem), "%llu MiB", (unsigned long long)(o->mem >> 20));
		return bad_arg("--mem-limit: %s is more than the guest's RAM (--mem %s): it "
			       "would limit nothing",
			       lim, mem);
	}
	/* Access sampling by default (--scan-interval says otherwise) where it pays:
	 * - a Linux kernel under a limit keeps its hot pages (text, page tables, slabs)
	 *   mapped for good, so no fault says they are in use and reclaim's clock would
	 *   evict them at every revolution (bench/linux_bench.py: with sampling, 0.61x the
	 *   pages written and 0.55x the pages read of a run without);
	 * - whoever attaches to the control socket wants idle ages and the working set. */
	linux_limited = !o->pager.off && o->kernel && o->pager.o.mem_limit;
	if (!o->pager.off && !o->pager.scan_set) {
		if (linux_limited)
			o->pager.o.scan_interval_ms = LINUX_SCAN_MS;
		else if (o->api)
			o->pager.o.scan_interval_ms = 1000;
	}
	/* KVM's dirty log by default for a Linux kernel under a limit: its devices write
	 * guest RAM unseen by the log, so it never marks a page clean there, but a page
	 * logged since the clock's last pass stays, as the kernel's own reclaim keeps a
	 * page whose accessed bit KVM reports. bench/linux_bench.py, side by side in the
	 * SVM lane: 0.89x the pages written and 0.77x the pages read, for 1.11x the time;
	 * since pages are re-protected as the clock passes them (mm/README.md), 0.80x
	 * written and 0.67x read for the same time (two pairs, 31.2 against 31.1 s). */
	if (linux_limited && !o->dirty_set)
		o->dirty = DIRTY_AUTO;
	if (o->kernel && optind == argc) /* Linux guests: --kernel replaces GUEST.elf */
		return -1;
	if (o->kernel)
		return bad_arg("run: --kernel and a guest image '%s'%s", argv[optind],
			       " are mutually exclusive");
	if (o->initrd || o->append || o->disk || o->no_balloon)
		return bad_arg("run: --initrd, --append, --disk and --no-balloon need --kernel%s%s",
			       "", "");
	if (optind != argc - 1)
		return bad_arg(optind >= argc ? "run: no guest image given%s%s"
					      : "run: unexpected argument '%s'%s",
			       optind >= argc ? "" : argv[optind + 1], "");
	o->guest = argv[optind];
	return -1;
}

/* One run's pieces, torn down in reverse by run_end whatever was set up. */
struct run {
	const struct vmm_opts *o;
	struct kvm k;
	bool kvm_open, vm_made;
	struct mm_mem mem;
	uint8_t *image; /* the ELF guest's file, until it is in guest RAM */
	size_t image_len;
	struct elf_image img;
	struct vm vm;
	struct dirty dirty;
	struct linux_boot lb; /* Linux guests */
	struct pager_glue pg;
	struct ctl *ctl;
};

/* The guest's files, /dev/kvm, guest RAM with the guest in it. An exit status or 0. */
static int run_load(struct run *r)
{
	const struct vmm_opts *o = r->o;
	const char *why = "";
	int err, status;

	status = o->kernel
		     ? linux_boot_read(&r->lb, o)
		     : vmm_read_file("guest image", o->guest, MAX_IMAGE, &r->image, &r->image_len);
	if (status)
		return status;
	err = kvm_open(&r->k, &why);
	if (err) {
		fprintf(stderr, "ufvm: /dev/kvm: %s: %s (%s)\n", why, strerror(-err),
			err == -ENOENT	 ? "load the kvm module or run on a host with KVM"
			: err == -EACCES ? "run as root or add yourself to the kvm group"
					 : "this host's KVM lacks a feature ufvm needs");
		return VMM_EXIT_USAGE;
	}
	r->kvm_open = true;
	if (r->k.max_vcpus > 0 && o->cpus > (unsigned)r->k.max_vcpus) {
		fprintf(stderr, "ufvm: --cpus %u: this host's KVM takes at most %d vCPUs per VM\n",
			o->cpus, r->k.max_vcpus);
		return VMM_EXIT_USAGE;
	}
	err = mm_mem_create(&r->mem, o->mem);
	if (err) {
		fprintf(stderr, "ufvm: guest RAM (%llu bytes): %s\n", (unsigned long long)o->mem,
			strerror(-err));
		return VMM_EXIT_INTERNAL;
	}
	if (o->kernel)
		return linux_boot_load(&r->lb, &r->mem, o);
	err = elf_load(r->image, r->image_len, &r->mem, &r->img, &why);
	free(r->image); /* the image is in guest RAM now: don't keep a second copy for the run */
	r->image = NULL;
	if (err) {
		fprintf(stderr, "ufvm: guest image %s: %s\n", o->guest, why);
		return VMM_EXIT_USAGE;
	}
	return 0;
}

/* The VM, its devices and dirty log, its vCPUs, and what the VMM writes into guest RAM. */
static int run_build(struct run *r)
{
	const struct vmm_opts *o = r->o;
	const char *why = "";
	int err, status, khz;

	err = vm_create(&r->vm, &r->k, &r->mem, o);
	if (err) {
		fprintf(stderr, "ufvm: cannot create the VM: %s\n", strerror(-err));
		return VMM_EXIT_INTERNAL;
	}
	r->vm_made = true;
	if (o->kernel && (status = linux_boot_vm(&r->lb, &r->vm, o)) != 0)
		return status;
	if (o->dirty != DIRTY_OFF) {
		err = dirty_init(&r->dirty, &r->vm, o->dirty, &why);
		if (!err) {
			r->vm.dirty = &r->dirty;
		} else if (o->dirty_set) {
			fprintf(stderr, "ufvm: dirty tracking (%s): %s: %s\n",
				dirty_mode_name(o->dirty), why, strerror(-err));
			return VMM_EXIT_INTERNAL;
		} else { /* a default: without it the pager works as before */
			if (o->verbose)
				fprintf(stderr, "ufvm: no KVM dirty log for the pager (%s: %s)\n",
					why, strerror(-err));
			dirty_destroy(&r->dirty);
		}
	}
	for (unsigned i = 0; i < o->cpus; i++) {
		err = vcpu_create(&r->vm, i);
		if (!err && o->kernel)
			err = linux_setup_vcpu(r->vm.vcpus[i].fd, &r->k, i, o->cpus, &r->lb.li);
		else if (!err)
			err = x86_setup_vcpu(r->vm.vcpus[i].fd, &r->k, i, r->img.entry);
		if (err) {
			fprintf(stderr, "ufvm: vCPU %u: set-up failed: %s\n", i, strerror(-err));
			return VMM_EXIT_INTERNAL;
		}
	}
	if (o->kernel)
		return 0;
	khz = ioctl(r->vm.vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
	err = x86_setup_guest(&r->mem, &r->k, o->cpus, o->cmdline, &r->img, khz > 0 ? khz : 0);
	if (err) {
		fprintf(stderr, "ufvm: guest set-up failed: %s\n", strerror(-err));
		return VMM_EXIT_INTERNAL;
	}
	if (o->verbose)
		fprintf(stderr, "ufvm: %s: entry 0x%llx, image end 0x%llx, %llu MiB, %u vCPU(s)\n",
			o->guest, (unsigned long long)r->img.entry, (unsigned long long)r->img.end,
			(unsigned long long)(o->mem >> 20), o->cpus);
	return 0;
}

/* What serves the running VM: the dirty rings, the pager (after the VMM's own writes
 * to guest RAM), the control socket. */
static int run_services(struct run *r)
{
	const char *why = "";
	int err, status;

	if (r->vm.dirty && (err = dirty_start(&r->dirty, &why)) != 0) {
		fprintf(stderr, "ufvm: dirty tracking (%s): %s: %s\n",
			dirty_mode_name(r->dirty.mode), why, strerror(-err));
		return VMM_EXIT_INTERNAL;
	}
	status = pager_glue_start(&r->pg, &r->o->pager, &r->vm, &r->mem);
	if (status)
		return status;
	if (r->o->api && (err = ctl_start(&r->ctl, r->o->api, &r->vm, &why)) != 0) {
		fprintf(stderr, "ufvm: control socket %s: %s: %s\n", r->o->api, why,
			strerror(-err));
		/* a path that cannot be used is the user's to fix: bad input */
		return err == -ENOENT || err == -ENOTDIR || err == -EACCES || err == -EPERM ||
			       err == -ENAMETOOLONG || err == -EADDRINUSE || err == -EEXIST ||
			       err == -EROFS || err == -ELOOP || err == -EISDIR
			   ? VMM_EXIT_USAGE
			   : VMM_EXIT_INTERNAL;
	}
	return 0;
}

static void run_end(struct run *r)
{
	ctl_stop(r->ctl);	 /* before the pager goes: requests use it */
	pager_glue_stop(&r->pg); /* --stats, after every vCPU is gone */
	vmm_files_remove_all();
	vmm_stop_end();		/* what is left cannot block: no more deadline */
	linux_boot_end(&r->lb); /* devices go before the VM fd */
	dirty_destroy(&r->dirty);
	if (r->vm_made)
		vm_destroy(&r->vm);
	mm_mem_destroy(&r->mem);
	if (r->kvm_open)
		kvm_close(&r->k);
	free(r->image);
}

static void run_say_signal(void)
{
	if (vmm_stop_signal())
		fprintf(stderr, "ufvm: %s: the VM was stopped\n", strsignal(vmm_stop_signal()));
}

/*
 * The stop thread's way out (stop.c) when the VM has not ended within the grace
 * period after its stop: some thread is blocked in the kernel for good. Do what
 * run_end does that anyone outside can see, and leave without that thread.
 */
static void run_abandon(void *arg)
{
	struct run *r = arg;
	int status;

	pthread_mutex_lock(&r->vm.lock);
	status = r->vm.exit_status;
	pthread_mutex_unlock(&r->vm.lock);
	fprintf(stderr,
		"ufvm: the VM did not end within %d ms of its stop (a thread is blocked in the "
		"kernel, e.g. on swap I/O that does not complete): exiting without it\n",
		VMM_STOP_GRACE_MS);
	run_say_signal();
	pager_glue_stats(&r->pg);
	vmm_files_remove_all();
	_exit(status);
}

static void run_release(void *arg)
{
	struct run *r = arg;

	pager_glue_release(&r->pg);
}

static const struct vmm_stop_ops run_stop_ops = {.release = run_release, .abandon = run_abandon};

static int run(const struct vmm_opts *o)
{
	struct run r = {.o = o, .mem = {.memfd = -1}};
	int status, err;

	if (o->pin) { /* before any thread: they all inherit it */
		cpu_set_t one;

		CPU_ZERO(&one);
		CPU_SET(o->pin_cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one) < 0) {
			fprintf(stderr, "ufvm: --pin %u: %s (this host's CPUs: 0..%ld)\n",
				o->pin_cpu, strerror(errno), sysconf(_SC_NPROCESSORS_ONLN) - 1);
			return VMM_EXIT_USAGE;
		}
	}
	status = run_load(&r);
	if (!status)
		status = run_build(&r);
	if (!status)
		status = run_services(&r);
	if (!status && (err = vmm_stop_start(&r.vm, &run_stop_ops, &r)) != 0) {
		fprintf(stderr, "ufvm: cannot start the stop thread: %s\n", strerror(-err));
		status = VMM_EXIT_INTERNAL;
	}
	if (!status) {
		status = vm_run(&r.vm);
		run_say_signal();
	}
	run_end(&r);
	return status;
}

/*
 * --swap memcached://...: libmemcached has no static library, and the static ufvm
 * starts faster than a dynamic one (bench/README.md), so the memcached backend
 * lives in ufvm-memcached, the same program linked dynamically, installed
 * beside this one. Runs it with the same arguments; returns only on failure.
 */
static int exec_memcached_build(char **argv)
{
	char self[4096], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 32);

	if (n > 0) {
		self[n] = 0;
		slash = strrchr(self, '/');
		strcpy(slash ? slash + 1 : self, "ufvm-memcached");
		execv(self, argv);
	}
	fprintf(stderr,
		"ufvm: --swap memcached://: this ufvm has no memcached backend, and "
		"ufvm-memcached, which has it, cannot be run from beside it: %s\n",
		n > 0 ? strerror(errno) : "no /proc/self/exe");
	return VMM_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	struct vmm_opts o = {.mem = 64ULL << 20, .cpus = 1, .cmdline = ""};
	int status;

	if (argc < 2)
		return bad_arg("no command given%s%s", "",
			       " (expected 'run', --help or --version)");
	/* A closed stdout must not kill the VM (the console reports it, once); SIGUSR1 asks
	 * the pager for a whole-VM swap-out and is ignored until a pager is there to do it. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("ufvm %s (guest ABI %d)\n", UFVM_VERSION, UFVM_ABI_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "run") != 0)
		return bad_arg("unknown command '%s'%s", argv[1], " (expected 'run')");
	status = parse_run_args(argc - 1, argv + 1, &o);
	if (status >= 0)
		return status;
	if (swap_is_memcached(o.pager.o.swap_path) && !swap_backend_for(o.pager.o.swap_path))
		return exec_memcached_build(argv);
	vmm_signals_init(); /* before any thread */
	return run(&o);
}
