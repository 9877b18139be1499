/* pager_glue.c: the pager's command-line options, its host callbacks, SIGUSR1 and --stats */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/dev.h"
#include "vmm/vmm.h"

static struct mm_pager *sig_pager; /* for SIGUSR1 */
static enum mm_swapin_mode sig_mode;

const char *pager_usage =
    "  --pager on|off    userfaultfd pager for guest RAM (default on); off:\n"
    "                    plain shared memory, for comparisons\n"
    "  --mem-limit SIZE  keep at most SIZE of guest RAM resident (>= 4M);\n"
    "                    the rest goes to the swap file\n"
    "  --mem-limit auto[:PERCENT]  proactive: swap out pages idle for a while,\n"
    "                    holding back while refaults take > PERCENT of the\n"
    "                    time (default 1); turns access sampling on\n"
    "  --scan-interval MS|off  access sampling (young pages, idle ages,\n"
    "                    working set) every MS ms (default off; 1000 with\n"
    "                    auto or --api; 50 for --kernel under --mem-limit)\n"
    "  --scan-rate N     pages sampled per interval (default 1/64 of RAM)\n"
    "  --scan-cpu PCT    CPU budget of the sampler, % of one CPU (default 2)\n"
    "  --swap PATH       swap file: a new file (removed at exit), an empty one or a\n"
    "                    block device, never a file with data in it nor one in\n"
    "                    /proc or /sys (default: an unlinked file in $TMPDIR)\n"
    "  --swap memcached://HOST:PORT[,HOST:PORT...][?replicas=N&timeout_ms=T]\n"
    "                    swap to memcached servers (each run with -M), every\n"
    "                    page on N+1 of them (default 0), every request bounded\n"
    "                    by T ms (default 1000): mm/README.md\n"
    "  --swap-direct     swap I/O with O_DIRECT (files only)\n"
    "  --fault-spin US   fault threads watch for the next fault, and reads from\n"
    "                    memcached for their answer, US microseconds before\n"
    "                    sleeping (default 200 when ufvm may use two CPUs per\n"
    "                    vCPU, else 0: with --pin, 0)\n"
    "  --clean-tracking wp|off  wp: pages read back from swap keep their swap\n"
    "                    copy until the guest writes them (write-protect, where the\n"
    "                    kernel has UFFD_FEATURE_WP_ASYNC), so evicting them again\n"
    "                    costs no write; KVM then maps them more slowly (default off)\n"
    "  --chunk SIZE      zero-fill granule on first touch, 4K..2M (default 2M)\n"
    "  --readahead N     pages read per swap-in fault at most, 1..512 (default\n"
    "                    256; 1: none): mm/README.md\n"
    "  --stats[=json]    print the pager's statistics at exit (stderr)\n"
    "  --trace-pages FILE  record every page-state change (time, page, from, to)\n"
    "                    in FILE, up to 16M of them: tools/pagetrace.py reads it\n"
    "  --swapout-at-mark LABEL  at the guest's mark LABEL, pause the vCPUs,\n"
    "                    swap out all guest RAM, and resume\n"
    "  --swapin on-demand|prefetch  after such a swap-out (default on-demand)\n"
    "  SIGUSR1           swaps the whole VM out now, the same way\n";

/* TEST ONLY: --test-swap-fail=write|read:ERRNO[:AFTER_PAGES]; -EINVAL if malformed. */
static int parse_fail(const char *spec, bool *write, int *err, unsigned long long *after)
{
	char kind[8] = "", rest = 0;
	int n = sscanf(spec, "%7[a-z]:%d:%llu%c", kind, err, after, &rest);

	if (n == 2)
		*after = 0;
	if ((n != 2 && n != 3) || (strcmp(kind, "write") && strcmp(kind, "read")) || *err < 1 ||
	    *err > 4095)
		return -EINVAL;
	*write = !strcmp(kind, "write");
	return 0;
}

static int parse_uint(const char *arg, unsigned lo, unsigned hi, unsigned *v, const char **why,
		      const char *expect)
{
	char *end;
	unsigned long n = strtoul(arg, &end, 10);

	if (!*arg || *end || n < lo || n > hi)
		return *why = expect, -EINVAL;
	*v = (unsigned)n;
	return 0;
}

/* --mem-limit auto[:PERCENT]: PERCENT is the refault target (time on swap-in faults). */
static int parse_auto(struct pager_cli *pc, const char *rest, const char **why)
{
	pc->o.mem_auto = true;
	if (!*rest)
		return 0;
	if (*rest != ':')
		return *why = "(use auto or auto:PERCENT)", -EINVAL;
	return parse_uint(rest + 1, 1, 50, &pc->o.auto_target_pct, why,
			  "(auto:PERCENT: a refault target of 1..50 percent)");
}

/* Returns 0, or -EINVAL with *why naming what is expected. */
int pager_parse_opt(struct pager_cli *pc, int opt, const char *arg, const char **why)
{
	switch (opt) {
	case PAGER_OPT_PAGER:
		if (strcmp(arg, "on") && strcmp(arg, "off"))
			return *why = "(use on or off)", -EINVAL;
		pc->off = !strcmp(arg, "off");
		return 0;
	case PAGER_OPT_LIMIT:
		if (!strncmp(arg, "auto", 4)) /* auto[:PERCENT]: proactive reclaim */
			return parse_auto(pc, arg + 4, why);
		if (cli_parse_size(arg, &pc->o.mem_limit) < 0 || pc->o.mem_limit < (4ULL << 20))
			return *why = "(use a size of at least 4M, or auto[:PERCENT])", -EINVAL;
		return 0;
	case PAGER_OPT_SCAN_INTERVAL:
		pc->scan_set = true;
		if (!strcmp(arg, "off"))
			return pc->o.scan_interval_ms = 0, 0;
		return parse_uint(arg, 10, 60000, &pc->o.scan_interval_ms, why,
				  "(use milliseconds, 10..60000, or off)");
	case PAGER_OPT_SCAN_RATE:
		if (cli_parse_size(arg, &pc->o.scan_rate) < 0 || !pc->o.scan_rate)
			return *why = "(use a positive number of pages, like 4096 or 64K)", -EINVAL;
		return 0;
	case PAGER_OPT_SCAN_CPU:
		return parse_uint(arg, 1, 100, &pc->o.scan_cpu_pct, why,
				  "(use a percentage, 1..100)");
	case PAGER_OPT_SWAP:
		pc->o.swap_path = arg;
		return 0;
	case PAGER_OPT_DIRECT:
		pc->o.swap_direct = true;
		return 0;
	case PAGER_OPT_CHUNK:
		if (cli_parse_size(arg, &pc->o.chunk) < 0 || pc->o.chunk < 4096 ||
		    pc->o.chunk > (2ULL << 20) || (pc->o.chunk & (pc->o.chunk - 1)))
			return *why = "(use a power of two from 4K to 2M)", -EINVAL;
		return 0;
	case PAGER_OPT_READAHEAD:
		return parse_uint(arg, 1, 512, &pc->o.readahead_max, why,
				  "(1..512 pages; 1: no readahead)");
	case PAGER_OPT_STATS:
		if (arg && strcmp(arg, "json"))
			return *why = "(use --stats or --stats=json)", -EINVAL;
		pc->stats = arg ? 2 : 1;
		return 0;
	case PAGER_OPT_MARK:
		/* a label no guest can mark would make the option a silent no-op */
		if (!*arg || strlen(arg) > UFVM_MARK_MAX)
			return *why = "(a mark label of 1..64 bytes)", -EINVAL;
		pc->swapout_mark = arg;
		return 0;
	case PAGER_OPT_SPIN:
		pc->spin_set = true;
		return parse_uint(arg, 0, 10000, &pc->o.spin_us, why, "(0..10000 microseconds)");
	case PAGER_OPT_CLEAN:
		if (strcmp(arg, "wp") && strcmp(arg, "off"))
			return *why = "(use wp or off)", -EINVAL;
		pc->o.wp = !strcmp(arg, "wp");
		return 0;
	case PAGER_OPT_SWAPIN:
		if (strcmp(arg, "on-demand") && strcmp(arg, "prefetch"))
			return *why = "(use on-demand or prefetch)", -EINVAL;
		pc->prefetch = !strcmp(arg, "prefetch");
		return 0;
	case PAGER_OPT_TRACE:
		if (!*arg)
			return *why = "(a file name)", -EINVAL;
		pc->trace = arg;
		return 0;
	case PAGER_OPT_TEST_FAIL: {
		unsigned long long after;
		bool write;
		int err;

		if (parse_fail(arg, &write, &err, &after) < 0)
			return *why = "(write|read:ERRNO[:AFTER_PAGES])", -EINVAL;
		pc->test_fail = arg; /* TEST ONLY */
		return 0;
	}
	}
	return *why = "", -EINVAL;
}

int pager_check_opts(const struct pager_cli *pc, const char **why)
{
	if (pc->off && (pc->o.mem_limit || pc->o.swap_path || pc->o.swap_direct || pc->o.chunk ||
			pc->swapout_mark || pc->test_fail || pc->o.mem_auto ||
			pc->o.scan_interval_ms || pc->o.scan_rate || pc->o.scan_cpu_pct ||
			pc->scan_set || pc->spin_set || pc->o.wp || pc->trace)) {
		*why =
		    "--mem-limit, --swap, --swap-direct, --chunk, --swapout-at-mark, --scan-*, "
		    "--fault-spin, --clean-tracking and --trace-pages need the pager (--pager on)";
		return -EINVAL;
	}
	return 0;
}

/*
 * The page a vCPU faulted on cannot be given (a swap read failed): the VM stops. That
 * vCPU stays blocked in its fault; the stop's kick gets it out where KVM waits
 * interruptibly, and the stop deadline (stop.c) ends the process where it does not.
 * Either way the end is the orderly one: --stats, no socket or swap file left behind.
 */
static void on_fatal(void *ctx, const char *msg)
{
	struct vm *vm = ctx;

	fprintf(stderr, "%s\n", msg);
	vm_stop(vm, VMM_EXIT_INTERNAL);
}

static bool on_stopping(void *ctx)
{
	struct vm *vm = ctx;

	return atomic_load(&vm->stopping);
}

static void on_warn(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "%s\n", msg);
}

static int on_pause(void *ctx)
{
	return vm_pause(ctx);
}

static void on_resume(void *ctx)
{
	vm_resume(ctx);
}

static void on_mark(struct vm *vm, unsigned vcpu, const char *label, void *ctx)
{
	struct pager_glue *g = ctx;

	(void)vm;
	(void)vcpu;
	/* on a vCPU thread, which vm_pause must not run on: the pager's thread does it */
	if (g->pager && g->cli->swapout_mark && !strcmp(label, g->cli->swapout_mark))
		mm_pager_request_swapout(g->pager, g->cli->prefetch ? MM_SWAPIN_PREFETCH
								    : MM_SWAPIN_ON_DEMAND);
}

static void on_sigusr1(int sig)
{
	(void)sig;
	if (sig_pager)
		mm_pager_request_swapout(sig_pager, sig_mode);
}

/* TEST ONLY: --test-swap-fail=write|read:ERRNO:AFTER (hidden, for the e2e tests). */
static void inject(struct mm_pager *p, const char *spec)
{
	unsigned long long after = 0;
	bool write;
	int err;

	if (parse_fail(spec, &write, &err, &after) == 0)
		mm_pager_test_inject(p, write, -err, after);
}

/* The guest's writes from KVM's dirty log, for the pager's clean-page tracking. */
static int64_t on_harvest(void *ctx, uint64_t *bitmap)
{
	struct vm *vm = ctx;

	return dirty_harvest_pager(vm->dirty, bitmap);
}

/* The clock passed these pages: the log is to report their next writes (lazy only). */
static void on_reprotect(void *ctx, uint64_t first, uint64_t npages)
{
	static atomic_bool told;
	struct vm *vm = ctx;
	int err = dirty_reprotect(vm->dirty, first, npages);

	if (err && !atomic_exchange(&told, true)) /* they stay writable and age as unwritten */
		fprintf(stderr,
			"ufvm: dirty log: KVM_CLEAR_DIRTY_LOG of pages 0x%" PRIx64 "+%" PRIu64
			" failed: %s; such pages age as if unwritten (said once)\n",
			first, npages, strerror(-err));
}

static struct pager_glue_hooks {
	struct mm_host_ops ops;
} hooks = {{.fatal = on_fatal,
	    .warn = on_warn,
	    .pause_vcpus = on_pause,
	    .resume_vcpus = on_resume,
	    .stopping = on_stopping}};

/* CPUs this process may run on (--pin makes it one). */
static long usable_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		return CPU_COUNT(&set);
	return sysconf(_SC_NPROCESSORS_ONLN);
}

/* The balloon's drop (Linux guests): the pages given away leave the pager's books too. */
static int64_t on_balloon_drop(void *arg, gpa_t gpa, uint64_t len)
{
	return mm_pager_discard(arg, gpa / MM_PAGE, len / MM_PAGE);
}

/* After guest RAM is written (image, page tables) and before vm_run. Prints on error. */
/* Can the trace file be mapped shared and written, as the pager will? (errno if not) */
static bool trace_mappable(int fd)
{
	void *m;

	if (ftruncate(fd, 4096) < 0)
		return false;
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return false;
	munmap(m, 4096);
	return true;
}

int pager_glue_start(struct pager_glue *g, const struct pager_cli *pc, struct vm *vm,
		     struct mm_mem *mem)
{
	struct mm_pager_opts o = pc->o;
	struct mm_host_ops ops;
	struct sigaction sa = {.sa_handler = on_sigusr1, .sa_flags = SA_RESTART};
	bool swap_created; /* --swap names a file that the pager makes */
	struct stat sb;
	int err;

	g->cli = pc;
	g->pager = NULL;
	g->trace_fd = -1;
	if (pc->off)
		return 0;
	if (pc->trace) {
		g->trace_fd = open(pc->trace, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (g->trace_fd == 0) /* stdin was closed: 0 means none to the pager */
			g->trace_fd = fcntl(0, F_DUPFD_CLOEXEC, 3), close(0);
		if (g->trace_fd < 0 || fstat(g->trace_fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			fprintf(stderr, "ufvm: --trace-pages %s: %s\n", pc->trace,
				g->trace_fd < 0 ? strerror(errno) : "not a regular file");
			if (g->trace_fd >= 0)
				close(g->trace_fd);
			g->trace_fd = -1;
			return VMM_EXIT_USAGE;
		}
		if (!trace_mappable(g->trace_fd)) {
			/* the pager maps the trace shared: without this check, a file system
			 * that refuses (9p without a cache, as a lane's /lane-out) surfaced as
			 * "invalid pager options" */
			fprintf(stderr,
				"ufvm: --trace-pages %s: cannot be mapped shared (%s): put it on a "
				"local file system (tmpfs, ext4, ...)\n",
				pc->trace, strerror(errno));
			close(g->trace_fd);
			g->trace_fd = -1;
			return VMM_EXIT_USAGE;
		}
		o.trace_fd = g->trace_fd;
	}
	/* One per vCPU, up to 4: a fault thread never blocks (it defers instead), so
	 * one serves a vCPU alone, and every thread is paid for at start and exit. */
	if (!o.fault_threads)
		o.fault_threads = vm->ncpus > 4 ? 4 : vm->ncpus;
	/* A fault thread that spins a while after each burst saves the wake-up of the
	 * next fault, but only pays with a core to spare for it beside the vCPUs:
	 * random swap-ins ran in 10 s instead of 19 with one vCPU on two cores, while
	 * two vCPUs on two cores went from 2.3 s to 4.0 s (bench/README.md). */
	if (!pc->spin_set)
		o.spin_us = usable_cpus() >= 2L * vm->ncpus ? 200 : 0;
	/* The VMM's own memory in base pages. With THP "always" (Debian's default),
	 * khugepaged fills a thread stack or a malloc arena with a 2 MiB page around
	 * the few KiB in use, and a frozen VM keeps it: the Linux swap demo froze at
	 * 2.2 MiB of RssAnon, 2 MiB of it one huge page, instead of 0.2. Guest RAM is
	 * shmem, which the pager handles in 4 KiB pages anyway. */
	(void)prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	ops = hooks.ops;
	/* Devices of Linux guests (on_io) write guest RAM through pointers, unseen by
	 * KVM's log: there it only tells the clock which pages are in use; for ELF
	 * guests, whose host writes all use mm_copy_to_guest, which pages are clean. */
	if (vm->dirty) {
		ops.harvest_dirty = on_harvest;
		ops.dirty_partial = vm->on_io != NULL;
		/* A partial log only ages pages for the clock: each re-protect costs the
		 * guest a write fault (an exit to KVM), so pages are re-protected as the
		 * hand passes them, not at every harvest (mm/README.md, "dirty log"). */
		if (ops.dirty_partial && dirty_set_lazy(vm->dirty))
			ops.reprotect_dirty = on_reprotect;
	}
	swap_created = pc->o.swap_path && !swap_is_memcached(pc->o.swap_path) &&
		       lstat(pc->o.swap_path, &sb) < 0 && errno == ENOENT;
	err = mm_pager_start(&g->pager, mem, &o, &ops, vm);
	swap_created = swap_created && !err && lstat(pc->o.swap_path, &sb) == 0;
	if (err && mm_pager_start_failed_swap()) { /* a path the user gave: bad input */
		char name[300];
		const char *why = swap_open_why();

		swap_describe(pc->o.swap_path, name, sizeof(name));
		fprintf(stderr, "ufvm: %s: cannot open: %s\n", name,
			*why ? why
			: err == -EEXIST
			    ? "it exists and holds data (ufvm never overwrites a file: "
			      "remove it or name a new one)"
			: err == -EMEDIUMTYPE ? "a /proc or /sys file (never swapped to)"
			: err == -EINVAL ? "neither a regular file nor a block device, or O_DIRECT "
					   "is not supported there"
					 : strerror(-err));
		return err == -ENOMEM ? VMM_EXIT_INTERNAL : VMM_EXIT_USAGE;
	}
	if (err) {
		fprintf(stderr, "ufvm: pager: cannot start: %s\n", mm_pager_strerror(err));
		return VMM_EXIT_INTERNAL;
	}
	if (pc->test_fail)
		inject(g->pager, pc->test_fail);
	/* a swap file ufvm made is removed at the end, even an abandoned one (stop.c) */
	if (swap_created)
		vmm_file_track(pc->o.swap_path);
	vio_balloon_set_drop_hook(on_balloon_drop, g->pager);
	vm->on_mark = on_mark;
	vm->on_mark_ctx = g;
	sig_mode = pc->prefetch ? MM_SWAPIN_PREFETCH : MM_SWAPIN_ON_DEMAND;
	sig_pager = g->pager;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	return 0;
}

static void print_text(FILE *f, const struct mm_pager_stats *s)
{
	fprintf(f,
		"ufvm: pager: %" PRIu64 " pages, %" PRIu64 " resident (max %" PRIu64
		", limit %" PRIu64 "), %" PRIu64 " swapped, memfd %" PRIu64 " KiB\n",
		s->pages, s->resident_pages, s->max_resident_pages, s->limit_pages,
		s->swapped_pages, s->memfd_bytes >> 10);
	fprintf(f,
		"ufvm: pager: faults: %" PRIu64 " missing, %" PRIu64 " minor, %" PRIu64
		" swap-in, %" PRIu64 " deferred; %" PRIu64 " chunks (%" PRIu64 " pages)\n",
		s->faults_missing, s->faults_minor, s->faults_swapin, s->faults_deferred, s->chunks,
		s->chunk_pages);
	fprintf(f,
		"ufvm: pager: swap: %" PRIu64 " pages in (%" PRIu64 " readahead, %" PRIu64
		" used), %" PRIu64 " out, %" PRIu64 " clean drops, %" PRIu64 " zero drops, %" PRIu64
		" write errors, %" PRIu64 " read errors (%" PRIu64 " bad pages); reclaim: %" PRIu64
		" runs, %" PRIu64 " scanned\n",
		s->swapin_pages, s->readahead_pages, s->readahead_hits, s->swapout_pages,
		s->clean_drops, s->zero_drops, s->write_errors, s->read_errors, s->bad_pages,
		s->reclaim_runs, s->reclaim_scanned);
	if (s->swapout_all_runs)
		fprintf(f,
			"ufvm: pager: whole-VM swap-out: %" PRIu64 " runs, %" PRIu64
			" pages in %" PRIu64 " ms, %" PRIu64 " KiB left resident\n",
			s->swapout_all_runs, s->swapout_all_pages, s->swapout_all_ns / 1000000,
			s->swapout_all_resident_bytes >> 10);
	if (s->swapin_all_pages)
		fprintf(f, "ufvm: pager: prefetch swap-in: %" PRIu64 " pages in %" PRIu64 " ms\n",
			s->swapin_all_pages, s->swapin_all_ns / 1000000);
	fprintf(f, "ufvm: pager: fault latency (us):");
	for (unsigned i = 0; i < MM_LAT_BUCKETS; i++)
		if (s->fault_lat_us[i])
			fprintf(f, " <%u:%" PRIu64, 1u << i, s->fault_lat_us[i]);
	fprintf(f, "\n");
}

#define F(x)                                                                                       \
	{                                                                                          \
#x, offsetof(struct mm_pager_stats, x)                                             \
	}
static const struct {
	const char *name;
	size_t off;
} json_fields[] = {
    F(pages),
    F(resident_pages),
    F(swapped_pages),
    F(memfd_bytes),
    F(limit_pages),
    F(swap_slots_used),
    F(faults_missing),
    F(faults_minor),
    F(faults_swapin),
    F(faults_deferred),
    F(remove_events),
    F(chunks),
    F(chunk_pages),
    F(swapin_pages),
    F(swapout_pages),
    F(swapin_bytes),
    F(swapout_bytes),
    F(readahead_pages),
    F(readahead_hits),
    F(readahead_stream_pages),
    F(readahead_eager_pages),
    F(minor_batched),
    F(clean_drops),
    F(zero_drops),
    F(reclaim_runs),
    F(reclaim_scanned),
    F(zapped_pages),
    F(max_resident_pages),
    F(write_errors),
    F(read_errors),
    F(bad_pages),
    F(swapout_all_runs),
    F(swapout_all_pages),
    F(swapout_all_resident_bytes),
    F(swapout_all_ns),
    F(swapin_all_pages),
    F(swapin_all_ns),
    F(host_copies),
    F(scans),
    F(scan_zapped),
    F(scan_cpu_ns),
    F(reclaim_cpu_ns),
    F(scan_dirty_pages),
    F(refault_ns),
    F(sample_ns),
    F(proactive_pages),
    F(proactive_holds),
    F(coldest_pages),
    F(discarded_pages),
    F(stray_pages),
    F(stall_ns),
    F(reclaim_stalled),
};

#define SWAP_SERVERS_MAX 16

/* The swap store's servers (memcached), one line each, or one JSON object. */
static void print_servers(FILE *f, struct mm_pager *p, bool json)
{
	struct swap_server_stats sv[SWAP_SERVERS_MAX];
	const char *backend;
	unsigned n = mm_pager_swap_servers(p, sv, SWAP_SERVERS_MAX, &backend);

	if (n > SWAP_SERVERS_MAX)
		n = SWAP_SERVERS_MAX;
	if (json)
		fprintf(f, "\"swap\": {\"backend\": \"%s\", \"servers\": [",
			backend ? backend : "none");
	for (unsigned i = 0; i < n; i++) {
		const struct swap_server_stats *s = &sv[i];

		if (json)
			fprintf(f,
				"%s{\"name\": \"%s\", \"pages_written\": %" PRIu64
				", \"pages_read\": %" PRIu64 ", \"write_errors\": %" PRIu64
				", \"read_errors\": %" PRIu64 ", \"bad_values\": %" PRIu64
				", \"fallbacks\": %" PRIu64 ", \"down\": %s}",
				i ? ", " : "", s->name, s->pages_written, s->pages_read,
				s->write_errors, s->read_errors, s->bad_values, s->fallbacks,
				s->down ? "true" : "false");
		else
			fprintf(f,
				"ufvm: pager: swap server %s: %" PRIu64 " pages written, %" PRIu64
				" read; %" PRIu64 " write errors, %" PRIu64 " read errors, %" PRIu64
				" bad values, %" PRIu64 " reads from a replica%s\n",
				s->name, s->pages_written, s->pages_read, s->write_errors,
				s->read_errors, s->bad_values, s->fallbacks,
				s->down ? " (down)" : "");
	}
	if (json)
		fprintf(f, "]}");
}

static void print_json(FILE *f, const struct mm_pager_stats *s)
{
	fprintf(f, "{\"pager\": {");
	for (size_t i = 0; i < sizeof(json_fields) / sizeof(json_fields[0]); i++) {
		uint64_t v;

		memcpy(&v, (const char *)s + json_fields[i].off, sizeof(v));
		fprintf(f, "\"%s\": %" PRIu64 ", ", json_fields[i].name, v);
	}
	fprintf(f, "\"fault_lat_us_log2\": [");
	for (unsigned i = 0; i < MM_LAT_BUCKETS; i++)
		fprintf(f, "%s%" PRIu64, i ? ", " : "", s->fault_lat_us[i]);
	fprintf(f, "], \"swapin_lat_us_log2\": [");
	for (unsigned i = 0; i < MM_LAT_BUCKETS; i++)
		fprintf(f, "%s%" PRIu64, i ? ", " : "", s->swapin_lat_us[i]);
	fprintf(f, "]}");
}

void pager_glue_release(struct pager_glue *g)
{
	if (g->pager)
		mm_pager_release(g->pager);
}

/* --stats is printed once, by the orderly end or by the stop deadline's (main.c). */
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static bool stats_done;

void pager_glue_stats(struct pager_glue *g)
{
	struct mm_pager_stats st;

	pthread_mutex_lock(&stats_lock);
	if (!stats_done && g->pager && g->cli->stats) {
		/*
		 * Composed in memory and written at once: stderr is unbuffered, and a message
		 * another thread prints meanwhile (a stop, a swap error) must not land inside
		 * the JSON line that tools parse.
		 */
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);

		if (!f)
			f = stderr; /* out of memory: piece by piece, as best we can */
		mm_pager_get_stats(g->pager, &st); /* never waits on a blocked pager thread */
		if (g->cli->stats == 2) {
			print_json(f, &st);
			fprintf(f, ", ");
			print_servers(f, g->pager, true);
			fprintf(f, "}\n");
		} else {
			print_text(f, &st);
			print_servers(f, g->pager, false);
		}
		if (f != stderr && fclose(f) == 0) {
			fwrite(buf, 1, len, stderr);
			fflush(stderr);
		}
		free(buf);
	}
	stats_done = true;
	pthread_mutex_unlock(&stats_lock);
}

/* After vm_run: print --stats, then stop the pager. */
void pager_glue_stop(struct pager_glue *g)
{
	if (!g->pager)
		return;
	sig_pager = NULL;
	vio_balloon_set_drop_hook(NULL, NULL);
	pager_glue_stats(g);
	mm_pager_stop(g->pager); /* closes the trace's records */
	g->pager = NULL;
	if (g->trace_fd >= 0)
		close(g->trace_fd);
	g->trace_fd = -1;
}
