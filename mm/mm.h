/* mm.h: guest memory, the gpa gate and (later) the pager; library code, returns -errno */
#ifndef UFVM_MM_H
#define UFVM_MM_H

#include <linux/userfaultfd.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/batch.h"

typedef uint64_t gpa_t; /* a guest-physical address: never dereference it directly */

struct mm_pager;

struct mm_mem {
	int memfd;		/* backing shmem file; guest RAM content lives here */
	uint8_t *hva;		/* MAP_SHARED mapping of the whole memfd */
	uint64_t size;		/* bytes, a multiple of 2 MiB */
	struct mm_pager *pager; /* set while a pager serves hva; host copies go through it */
	/* Optional, set by KVM dirty tracking (vmm/dirty.c): one bit per page, set (atomically)
	 * for every write by the VMM itself, which KVM's log does not see. */
	uint64_t *host_dirty;
};

/* Create a memfd of `size` bytes and map it shared. size must be a multiple of 2 MiB. */
int mm_mem_create(struct mm_mem *m, uint64_t size);
void mm_mem_destroy(struct mm_mem *m);

/*
 * The one gate from guest-physical addresses to host pointers: returns a
 * pointer to [gpa, gpa+len) if the whole range lies inside guest RAM, NULL
 * otherwise (including on arithmetic overflow). len 0 is valid for gpa <= size.
 */
void *mm_gpa(const struct mm_mem *m, gpa_t gpa, uint64_t len);

/*
 * Checked copies between guest RAM and the host; -EFAULT when out of range.
 * With a pager they never take a userfault: they go through the pager's own
 * unregistered view of the memfd, so they are safe on any thread, pager
 * threads and the fault path included.
 */
int mm_copy_from_guest(const struct mm_mem *m, void *dst, gpa_t src, uint64_t len);
int mm_copy_to_guest(const struct mm_mem *m, gpa_t dst, const void *src, uint64_t len);
/* The VMM wrote [gpa, gpa+len) through a pointer from mm_gpa (a device): tell the dirty
 * log's consumers (mm_copy_to_guest does it itself). The range must have passed mm_gpa. */
void mm_mark_written(const struct mm_mem *m, gpa_t gpa, uint64_t len);

/* ---- page-state table (pst.c) --------------------------------------------
 * One 8-byte entry per 4 KiB guest page: the secondary-MMU bookkeeping. The
 * state machine, and the notifier operation each transition mirrors, is drawn
 * in mm/README.md. Entries are changed only under the lock of the 2 MiB
 * region that holds them (see struct mm_pager); the table itself has no lock.
 */
enum pst_state {
	PST_NEW = 0,   /* never touched: no content anywhere, reads as zeros */
	PST_RESIDENT,  /* content in the memfd, mapped in the VMM (and so KVM) */
	PST_UNMAPPED,  /* content in the memfd, VMM PTE zapped: a young test */
	PST_WRITEBACK, /* zapped, content being written to the swap slot */
	PST_SWAPPED,   /* content only in swap slot `slot`; memfd page freed */
	PST_NSTATES
};

#define PST_F_YOUNG 0x01 /* accessed since the last clear_young (zap) */
#define PST_F_DIRTY 0x02 /* may differ from its swap copy (or has none) */
#define PST_F_SLOT  0x04 /* `slot` holds a valid copy of the page */
#define PST_F_SEEN  0x08 /* access sampling: touched since its sample's zap (access.c) */
#define PST_F_RA    0x10 /* read ahead from swap, not touched yet (resolve.c) */
#define PST_F_WP                                                                                   \
	0x20 /* with SLOT: mapped write-protected since the copy was made,                         \
	      * so the page's PTE tells whether it was written (wp.c) */
#define PST_F_WRITTEN                                                                              \
	0x40 /* a lazily re-protected dirty log reported a write since the clock (or the           \
	      * sampler) last re-protected its region: used, without a zap to tell (access.c) */

struct pst_entry {
	uint32_t slot; /* swap slot, valid with PST_F_SLOT */
	uint8_t state; /* enum pst_state */
	uint8_t flags; /* PST_F_* */
	uint8_t age;   /* idle age in scan periods (access tracking, issue 4) */
	uint8_t rsvd;
};
_Static_assert(sizeof(struct pst_entry) == 8, "pst entries stay compact");

/* ---- the pager's own tables (meta.c) ------------------------------------------
 * Zeroed memory for per-page tables, which a frozen VM can give back to the host.
 */
struct mm_meta {
	void *base;
	size_t bytes; /* rounded up to whole pages */
	int fd;	      /* -1: anonymous; else the file it is a shared mapping of */
};
int mm_meta_map(struct mm_meta *m, size_t bytes); /* anonymous; 0 or -ENOMEM */
void mm_meta_unmap(struct mm_meta *m);
/*
 * Move the table, at the same address, into a shared mapping of an unlinked,
 * fully allocated file in swap_default_dir(). Nobody may write to it meanwhile
 * (the caller holds every writer off). 0 (also when it is a file already);
 * -ENOTSUP on tmpfs (it stays anonymous); -errno when the file could not be
 * made or written (it stays anonymous); -EFAULT: the table is lost.
 */
int mm_meta_to_file(struct mm_meta *m);
/* Write a file-backed table out and drop it from memory (the next access reads it
 * back). -ENOTSUP when anonymous; -errno when the write failed: nothing dropped. */
int mm_meta_drop(struct mm_meta *m);

struct pst {
	struct pst_entry *e;
	uint64_t npages;
	struct mm_meta meta;
};

int pst_init(struct pst *t, uint64_t npages); /* all pages PST_NEW */
void pst_free(struct pst *t);
bool pst_transition_legal(enum pst_state from, enum pst_state to);
const char *pst_state_name(enum pst_state s);
/*
 * Move page pfn to state `to`: -EINVAL (and no change) when the transition
 * is illegal or pfn out of range. Keeps flags coherent: entering SWAPPED
 * requires PST_F_SLOT; entering NEW clears everything.
 */
int pst_set(struct pst *t, uint64_t pfn, enum pst_state to);
static inline enum pst_state pst_get(const struct pst *t, uint64_t pfn)
{
	return (enum pst_state)t->e[pfn].state;
}

/* ---- userfaultfd wrapper (uffd.c) ------------------------------------------
 * Thin: every call maps errno to a result the caller can act on.
 */
enum uffd_result {
	UFFD_OK = 0,
	UFFD_EXISTS = 1, /* EEXIST: already resolved by someone else, a benign race */
	UFFD_RETRY = 2,	 /* EAGAIN: the mm is changing: read events, then retry */
	UFFD_GONE = 3,	 /* ESRCH: the uffd or its mm is gone; stop serving */
	UFFD_NOPAGE = 4, /* EFAULT/ENOENT on CONTINUE: no page in the page cache */
};

struct uffd {
	int fd;
	uint64_t features; /* granted UFFD_FEATURE_* */
};

/*
 * Open a userfaultfd (via /dev/userfaultfd, else the syscall), non-blocking,
 * handling kernel-mode faults too (KVM's accesses are kernel-mode, so never
 * UFFD_USER_MODE_ONLY). `want` features must all be available: -ENOTSUP
 * otherwise. -EPERM/-ENOSYS: see uffd_strerror().
 */
int uffd_open(struct uffd *u, uint64_t want);
/* The features this kernel offers (probed on a throwaway uffd), or -errno. */
int64_t uffd_probe(void);
void uffd_close(struct uffd *u);
/* Why open failed, with what to do: for a user-facing message. */
const char *uffd_strerror(int err);
/* MISSING, and MINOR and WP (write-protect, for clean tracking: mm/wp.c) as asked. */
int uffd_register(struct uffd *u, void *addr, uint64_t len, bool minor, bool wp);
int uffd_unregister(struct uffd *u, void *addr, uint64_t len);
/*
 * Resolve [dst, dst+len) by copying from src; *done gets bytes installed.
 * Neither this nor uffd_continue wakes the faulting threads: the caller
 * finishes its bookkeeping first, then calls uffd_wake.
 */
int uffd_copy(struct uffd *u, void *dst, const void *src, uint64_t len, bool wp, uint64_t *done);
/* Map pages already in the page cache (minor faults); *done as above. wp: map them
 * write-protected (UFFDIO_*_MODE_WP), so the first write shows in the pagemap. */
int uffd_continue(struct uffd *u, void *addr, uint64_t len, bool wp, uint64_t *done);
int uffd_wake(struct uffd *u, void *addr, uint64_t len);
/* Read up to max pending events: the count (0 if none), or -errno (-ESRCH: uffd gone). */
int uffd_read(struct uffd *u, void *msgs, int max);

/* ---- swap store (swap_store.c, swap_slots.c; backends swap_file.c, swap_memcached.c)
 * Page-sized slots, written and read by runs, kept by a backend chosen once at
 * open: the io_uring file, or a memcached cluster. Library code: never prints,
 * returns -errno. Not thread-safe: one owner thread (the pager) drives it, and
 * no call returns with I/O still in flight; except that where
 * swap_reads_concurrent() says so, swap_read may be called by any number of
 * threads at once, and alongside the owner's other calls, for slots none of
 * those calls writes or frees meanwhile.
 */
struct swap_store;

struct swap_opts {
	/* NULL: an unlinked temporary file under $TMPDIR (or /tmp); a path: that file
	 * (a new one, an empty one or a block device; one with data is -EEXIST, one in
	 * /proc or /sys -EMEDIUMTYPE);
	 * memcached://HOST:PORT[,HOST:PORT...][?replicas=N&timeout_ms=T]: a cluster */
	const char *path;
	bool direct;	 /* open with O_DIRECT (buffers must then be 4 KiB aligned); file only */
	unsigned qdepth; /* io_uring queue depth / max requests in flight; 0 = 64, max 4096 */
	/* memcached: tells keys of this VM from others'; 0 = a random one */
	uint64_t vm_id;
	/* memcached: whether page, fetched for page pfn from slot, is what was written
	 * (the pager's tags); a server whose copy fails it is skipped for a replica's.
	 * NULL: only the value's header is checked. */
	bool (*verify)(void *ctx, uint64_t slot, uint64_t pfn, const void *page);
	void *verify_ctx;
	/* memcached: a read watches its socket this long for the answer before it sleeps
	 * (the fault threads' spin, mm_pager_opts.spin_us: it pays only with a core to spare) */
	unsigned spin_us;
};

int swap_open(struct swap_store **out, const struct swap_opts *o, uint64_t max_pages);
/* Close, and remove the file if swap_open created it (and it is still that file). NULL
 * is a no-op. */
void swap_close(struct swap_store *s);

/*
 * Slot allocator: freed slots are reused (most recently freed first) before
 * new ones; the lowest free slot is not guaranteed. Single-slot alloc and
 * free are O(1). Freeing a slot that is not allocated is ignored.
 */
int64_t swap_slot_alloc(struct swap_store *s); /* slot number, or -ENOSPC */
/*
 * Allocate n consecutive slots (for batch writes); returns the first, or
 * -ENOSPC when no n free slots are consecutive (-EINVAL for n == 0). Runs
 * come from never-used slots when they fit, else first fit among freed ones
 * (a scan of one bit per slot). Free them one slot at a time.
 */
int64_t swap_slot_alloc_run(struct swap_store *s, uint32_t n);
void swap_slot_free(struct swap_store *s, uint64_t slot);
uint64_t swap_slots_used(const struct swap_store *s); /* lock-free: any thread, any time */
/* The allocator's tables into a file (drop false; writers held off by the caller), then
 * out of memory (drop true): as mm_meta_to_file and mm_meta_drop, for a frozen VM. */
int swap_slots_freeze(struct swap_store *s, bool drop);
bool swap_slot_in_use(const struct swap_store *s, uint64_t slot); /* for consistency checks */

struct swap_io {
	uint64_t slot;	 /* first slot */
	uint32_t npages; /* consecutive slots <-> consecutive 4 KiB pages at buf */
	void *buf;
	int res;      /* out: 0 or -errno (short I/O is retried internally) */
	uint64_t pfn; /* the guest page of the first slot (backends that key by page) */
};

/*
 * Submit all n requests (batched, at most qdepth in flight, -EAGAIN resubmitted,
 * short transfers advanced and requeued) and wait for all of them. Fills each
 * io->res. Returns 0 if every request succeeded, else the first error.
 * One request per io, however long the run: write a run of consecutive slots
 * as one io. A failing io never affects the others. Per-io errors: -EINVAL
 * (npages 0, NULL buf, slots beyond max_pages, buf not 4 KiB aligned with
 * O_DIRECT), -EIO (the file ended early), else what the kernel returned
 * (-ENOSPC, -EIO, ...). A failed write may have written part of the run;
 * a failed read leaves buf partly filled. Slots never written read as zeros.
 * If io_uring itself fails (not an io), every io fails with that error and
 * the store stays unusable: close it.
 */
/* Where a swap file without a path goes: $TMPDIR, else /tmp. */
const char *swap_default_dir(void);
/* The store as messages name it: "swap file PATH", "swap file (an unlinked file in DIR)",
 * "swap memcached://...". */
void swap_describe(const char *path, char *buf, size_t len);
int swap_write(struct swap_store *s, struct swap_io *ios, unsigned n);
int swap_read(struct swap_store *s, struct swap_io *ios, unsigned n);

struct swap_stats {
	uint64_t pages_written, pages_read; /* pages of ios that succeeded */
	uint64_t write_errors, read_errors; /* ios that failed */
	uint64_t submits;  /* io_uring_enter calls (each submits a batch and reaps) */
	uint64_t requeues; /* resubmissions after -EAGAIN or a short transfer */
};
void swap_get_stats(const struct swap_store *s, struct swap_stats *st);

/* One server of a backend that has several (memcached). */
struct swap_server_stats {
	char name[64]; /* HOST:PORT */
	uint64_t pages_written, pages_read;
	uint64_t write_errors, read_errors; /* failed sets, failed or missed gets */
	uint64_t bad_values;		    /* values that were not this VM's page */
	uint64_t fallbacks;		    /* reads served by a replica instead */
	bool down;			    /* marked dead after failures (retried later) */
};
/* Up to max servers' figures; how many the backend has (0: a file). */
unsigned swap_servers(const struct swap_store *s, struct swap_server_stats *out, unsigned max);
const char *swap_backend_name(const struct swap_store *s); /* "file", "memcached" */
/* Whether path names a memcached cluster (memcached://...). */
bool swap_is_memcached(const char *path);

/*
 * A backend: the ops the store calls, chosen once at open by the path's form.
 * write stores every io (each a run of consecutive slots holding the pages at
 * buf; pfn the first page's guest page), sets each io->res, returns 0 or the
 * first error; a failed io leaves the others alone. read fetches one io (a
 * fault's page and its readahead), read_many several at once (whole-VM
 * swap-in: batched), with the same contract. discard: the copy of page pfn in
 * slot is no longer wanted (may be NULL). servers and inject may be NULL.
 */
struct swap_backend {
	const char *name;
	/* read and read_many may run in several threads at once and alongside write and
	 * discard (for slots those do not touch): the pager then reads without its lock */
	bool concurrent_reads;
	int (*open)(void **impl, const struct swap_opts *o, uint64_t max_pages);
	int (*write)(void *impl, struct swap_io *ios, unsigned n);
	int (*read)(void *impl, struct swap_io *io);
	int (*read_many)(void *impl, struct swap_io *ios, unsigned n);
	void (*discard)(void *impl, uint64_t slot, uint64_t pfn);
	void (*close)(void *impl);
	void (*get_stats)(void *impl, struct swap_stats *st);
	unsigned (*servers)(void *impl, struct swap_server_stats *out, unsigned max);
	void (*inject)(void *impl, bool write, int err, uint64_t after);
	/* The last failure in words, naming the server ("; " joined), or NULL. */
	const char *(*why)(void *impl);
};
extern const struct swap_backend swap_file_backend;
/* Only in builds linked with libmemcached (ufvm-memcached): NULL elsewhere. */
extern const struct swap_backend swap_memcached_backend __attribute__((weak));
/* The backend a path selects; NULL for memcached:// in a build without it. */
const struct swap_backend *swap_backend_for(const char *path);
/* What the backend knows of its last failure (which servers, why); "" when nothing. */
const char *swap_why(const struct swap_store *s);
/* The last failed swap_open's reason in words (this thread's buffer of SWAP_WHY_LEN), or "". */
#define SWAP_WHY_LEN 256
char *swap_open_why(void);
/* Whether swap_read may be called without the store's owner lock (see above). */
bool swap_reads_concurrent(const struct swap_store *s);
/* Whether the backend wants discards (a file does not: its slots are just reused). */
bool swap_wants_discard(const struct swap_store *s);
/* Free slot (as swap_slot_free) and tell the backend page pfn's copy there is gone. */
void swap_discard(struct swap_store *s, uint64_t slot, uint64_t pfn);

/* Test-only failure injection: after `after` more pages, fail every op of kind
 * `write` (true) or read (false) with -err until cleared with err == 0.
 * err is a positive errno. Pages are counted as they are submitted, so an io
 * that crosses the limit transfers its first pages, then fails. Injected
 * errors arrive as completions, like real ones (an injected EAGAIN is retried
 * until the retry cap, then fails). */
void swap_inject_error(struct swap_store *s, bool write, int err, uint64_t after);

/* The allocator behind swap_slot_*() (swap_slots.c); a swap_store owns one.
 * Usable alone, for tests. n = 1 takes from the free list in O(1). */
struct swap_slots;
int swap_slots_create(struct swap_slots **out, uint64_t max_pages); /* as swap_open */
void swap_slots_destroy(struct swap_slots *sl);
int64_t swap_slots_get(struct swap_slots *sl, uint32_t n); /* first of n slots, or -errno */
void swap_slots_put(struct swap_slots *sl, uint64_t slot);
bool swap_slots_test(const struct swap_slots *sl, uint64_t slot);
uint64_t swap_slots_count(const struct swap_slots *sl); /* lock-free, see swap_slots_used */
int swap_slots_to_file(struct swap_slots *sl);		/* mm_meta_to_file of its tables */
int swap_slots_drop(struct swap_slots *sl);		/* mm_meta_drop of its tables */

/* ---- swap tags (swap_tag.c) --------------------------------------------------
 * What went out to swap is what comes back: every page written gets a 32-bit
 * tag, a hash of its content keyed by a per-VM random key and its page number,
 * kept in memory by slot (4 bytes per slot in use); every page read back is
 * checked against it. Zeros from a hole, another page's data, a stale or
 * foreign copy, a flipped bit: each fails the check (but for a 2^-32 chance).
 * Writers of distinct slots need no lock; a slot's tag is read under the region
 * lock of the page that owns the slot, as the slot itself is.
 */
struct swap_tags {
	uint32_t *tag; /* one per slot, sparse: untouched slots cost nothing */
	struct mm_meta meta;
	uint64_t nslots, key;
	uint64_t (*hash)(const void *page, uint64_t seed);
};
int swap_tags_init(struct swap_tags *t, uint64_t nslots); /* -ENOMEM */
void swap_tags_free(struct swap_tags *t);
uint32_t swap_tag(const struct swap_tags *t, uint64_t pfn, const void *page);
/* Record the tag of page pfn's content, about to be written to slot. */
void swap_tags_set(struct swap_tags *t, uint64_t slot, uint64_t pfn, const void *page);
/* Whether page, read from slot for page pfn, is what was written there. */
bool swap_tags_check(const struct swap_tags *t, uint64_t slot, uint64_t pfn, const void *page);
uint64_t swap_tag_hash_avx2(const void *page, uint64_t seed); /* swap_tag_avx2.c */

/* ---- pager (pager.c, fault.c, reclaim.c) -----------------------------------
 * Guest RAM served through userfaultfd: never-touched memory is zero-filled
 * in aligned chunks, a memory limit is kept by a clock reclaim that writes
 * cold pages to the swap store, and the whole VM can be swapped out. Library
 * code: never prints; problems reach the VMM through mm_host_ops.
 */
struct mm_host_ops {
	/*
	 * Stop the VM with msg (a full user-facing line without newline). Called
	 * on a pager thread when a fault can never be resolved (swap read error,
	 * uffd gone). The faulting vCPU stays blocked: fatal must end the VM.
	 */
	void (*fatal)(void *ctx, const char *msg);
	/* A non-fatal problem, reported once per kind (swap write errors). May be NULL. */
	void (*warn)(void *ctx, const char *msg);
	/*
	 * Bring every vCPU out of KVM_RUN and hold it; 0 or -errno. The pager
	 * keeps serving faults (and lifts the memory limit) while this waits,
	 * so a vCPU blocked in a userfault always gets out. May be NULL.
	 */
	int (*pause_vcpus)(void *ctx);
	void (*resume_vcpus)(void *ctx);
	/*
	 * OR into bitmap (one bit per guest page) the pages the guest wrote since
	 * the previous call (KVM's dirty log); the count, or -errno. May be NULL.
	 * Setting it is a promise that every other write into guest RAM goes
	 * through mm_copy_to_guest: then a page read back from swap keeps its
	 * slot until it is written, and is dropped without a write when clean.
	 */
	int64_t (*harvest_dirty)(void *ctx, uint64_t *bitmap);
	/*
	 * The log above misses writes (a Linux guest's devices write guest RAM
	 * through pointers, unseen by KVM): then it only tells which pages are in
	 * use (a logged page is young for the clock), never which are clean.
	 */
	bool dirty_partial;
	/*
	 * With a partial log only: the clock hand has passed [first, first+npages)
	 * and used up what the log said of it, so have KVM report those pages'
	 * next writes (re-protect them). Until then a page the log reported stays
	 * writable and is not reported again: a page written all the time costs
	 * one write fault per revolution of the clock, not one per harvest (and
	 * the sampler calls it instead while the clock has not run for a second).
	 * NULL: every harvest re-protects what it reports. (Region locks held.)
	 */
	void (*reprotect_dirty)(void *ctx, uint64_t first, uint64_t npages);
	/*
	 * Whether the VM is ending: long operations (whole-VM swap-out and swap-in,
	 * reclaim requests) then give up at their next step with -ECANCELED, so that a
	 * stop never waits for them to finish. May be NULL.
	 */
	bool (*stopping)(void *ctx);
};

struct mm_pager_opts {
	uint64_t chunk;		/* bytes zero-filled per fault on never-touched memory:
				   a power of two, 4 KiB..2 MiB; 0 = 2 MiB */
	uint64_t mem_limit;	/* max resident bytes of guest RAM; 0 = no limit */
	const char *swap_path;	/* NULL = unlinked temporary file */
	bool swap_direct;	/* O_DIRECT swap I/O */
	unsigned fault_threads; /* 0 = 2 */
	unsigned readahead_max; /* pages read per swap-in fault at most; 0 = 256 */
	/* Access sampling (access.c): off unless scan_interval_ms or mem_auto. */
	unsigned scan_interval_ms; /* one scan per interval; 0 = off (1000 with mem_auto) */
	uint64_t scan_rate;	   /* pages sampled per interval; 0 = 1/64 of guest RAM */
	unsigned scan_cpu_pct;	   /* CPU budget of the scanner, % of one CPU; 0 = 2 */
	bool mem_auto;		   /* --mem-limit auto: proactive reclaim of idle pages */
	unsigned auto_target_pct;  /* max % of time spent on refaults (swap-in); 0 = 1 */
	unsigned auto_min_age;	   /* reclaim pages idle >= this many intervals; 0 = 8 */
	bool wp;	  /* clean tracking by write-protect where the host has it (wp.c) */
	unsigned spin_us; /* fault threads watch for more faults this long before sleeping */
	int trace_fd;	  /* > 0: record every page-state transition there (trace.c) */
};

enum mm_swapin_mode { MM_SWAPIN_ON_DEMAND, MM_SWAPIN_PREFETCH };

#define MM_LAT_BUCKETS 16 /* bucket 0: < 1 us; bucket i: [2^(i-1), 2^i) us; last: more */

/* All fields are uint64_t (mm_pager_get_stats relies on it). */
struct mm_pager_stats {
	uint64_t pages, resident_pages, swapped_pages;
	uint64_t memfd_bytes; /* what the memfd really holds (fstat st_blocks) */
	uint64_t limit_pages, swap_slots_used;
	uint64_t faults_missing, faults_minor, faults_swapin, faults_deferred, remove_events;
	uint64_t chunks, chunk_pages;
	uint64_t swapin_pages, swapout_pages, swapin_bytes, swapout_bytes;
	uint64_t readahead_pages, readahead_hits, clean_drops;
	uint64_t readahead_stream_pages; /* of readahead_pages, mapped by sequential windows */
	uint64_t readahead_eager_pages;	 /* ... mapped with the cluster they came in (resolve.c) */
	uint64_t zero_drops;	/* evicted pages that were all zeros: back to NEW, never written */
	uint64_t minor_batched; /* minor faults resolved in runs of waiting neighbours */
	uint64_t reclaim_runs, reclaim_scanned, zapped_pages, max_resident_pages;
	uint64_t reclaim_cpu_ns; /* the reclaim thread's CPU time in its runs */
	uint64_t write_errors, read_errors;
	uint64_t bad_pages; /* read back from swap and not what was written (swap tags) */
	uint64_t swapout_all_runs, swapout_all_pages, swapout_all_resident_bytes;
	uint64_t swapout_all_ns, swapin_all_pages, swapin_all_ns;
	uint64_t host_copies;
	/* access sampling and proactive reclaim (access.c, proactive.c) */
	uint64_t scans, scan_zapped, scan_young, scan_cpu_ns, scan_dirty_pages;
	uint64_t refault_ns; /* time spent serving swap-in faults */
	uint64_t sample_ns;  /* time spent serving faults on sampled (zapped) pages */
	uint64_t proactive_pages, proactive_holds, coldest_pages;
	uint64_t discarded_pages; /* given away by the guest (balloon): back to NEW (discard.c) */
	uint64_t stray_pages;	  /* found in the memfd where the table had a hole, holding
				   * zeros or the swap copy (mm_stray_page) */
	/* Time faults waited for memory, summed over waiting faults (one per blocked vCPU):
	 * swap-in service plus time deferred (no room under the limit, region busy). The
	 * pool's pressure signal, as PSI's memory stall time is senpai's. */
	uint64_t stall_ns;
	uint64_t reclaim_stalled; /* 1 while reclaim cannot shrink (swap full or failing)
				   * and the limit is lifted; a gauge, not a counter */
	uint64_t fault_lat_us[MM_LAT_BUCKETS];	/* service time: event read to resolved */
	uint64_t swapin_lat_us[MM_LAT_BUCKETS]; /* the same, for swap-in faults alone */
};

/* mm_pager_start: --clean-tracking wp was asked for, but this kernel cannot track by
 * write-protect (a missing host feature, not bad input) */
#define MM_ERR_NO_WP (-ENOPROTOOPT)

/*
 * Take over guest RAM: must be called after the VMM wrote its own pages (ELF,
 * page tables) into mem and before any vCPU runs. Those pages are found with
 * SEEK_DATA on the memfd and accounted resident. On -EPERM/-ENOSYS/-ENOTSUP
 * mm_pager_strerror() says why and what to do.
 */
int mm_pager_start(struct mm_pager **out, struct mm_mem *mem, const struct mm_pager_opts *o,
		   const struct mm_host_ops *ops, void *ctx);
/* Stop serving (vCPUs must be gone): swapped-out content is discarded. */
void mm_pager_stop(struct mm_pager *p);
/* After mm_pager_start failed: whether opening --swap's file (or --swap-direct's) did. */
bool mm_pager_start_failed_swap(void);
const char *mm_pager_strerror(int err);
/* The counters now. Never waits for a lock a pager thread may hold across swap I/O,
 * so it answers even while a swap device stalls. */
void mm_pager_get_stats(struct mm_pager *p, struct mm_pager_stats *st);
/*
 * The VM is ending and vCPUs are still blocked in faults the pager will not serve (a
 * failed swap read, a stalled swap device): let every blocked fault go. Guest RAM leaves
 * the userfaultfd, so each fault retries as a plain fault on the memfd (a page not in
 * it reads as zeros); the vCPUs, kicked by the stop already, leave KVM_RUN before the
 * guest runs again, so no guest sees those zeros. The pager serves nothing from then
 * on. Any thread; idempotent.
 */
void mm_pager_release(struct mm_pager *p);

/*
 * Pause the vCPUs (ops), write every resident page out, record the memfd's
 * size (stats.swapout_all_resident_bytes), then with MM_SWAPIN_PREFETCH read
 * everything back, and resume. Pages whose write failed stay resident. Not
 * to be called on a pager thread. Returns 0, or the first -errno.
 */
int mm_pager_swapout_all(struct mm_pager *p, enum mm_swapin_mode mode);
/* Read every swapped page back and map it (prefetch); any thread but a pager one. */
int mm_pager_swapin_all(struct mm_pager *p);
/*
 * The VM is paused and swapped out, and stays so for a while (a client froze it):
 * write the page-state table and swap tags out and drop them from memory, and
 * hold the access sampler (a paused guest touches nothing) until the next guest
 * fault, which ends the freeze. 0; -ENOTSUP when the tables are anonymous memory
 * (tmpfs) and stay; -errno when writing them failed (they stay too).
 */
int mm_pager_freeze(struct mm_pager *p);
/*
 * Async-signal-safe: ask the pager's own reclaim thread to run
 * mm_pager_swapout_all(p, mode) (for SIGUSR1); a fault thread starts that
 * thread first if it does not run yet.
 */
void mm_pager_request_swapout(struct mm_pager *p, enum mm_swapin_mode mode);
/* Host copies in and out of guest RAM (used by mm_copy_*_guest). */
int mm_pager_copy(struct mm_pager *p, gpa_t gpa, void *buf, uint64_t len, bool to_guest);
/*
 * Set the memory limit while the VM runs: 0 = none; -EINVAL above guest RAM or
 * below 4 MiB. Lowering it wakes reclaim (which runs on its own thread).
 */
int mm_pager_set_limit(struct mm_pager *p, uint64_t bytes);
/*
 * Reclaim up to npages now, longest-idle first (then any resident page), and
 * wait for it; *reclaimed gets how many left memory. Any thread but a pager one.
 */
int mm_pager_reclaim(struct mm_pager *p, uint64_t npages, uint64_t *reclaimed);
/*
 * The guest gave pages [first_page, first_page+npages) away (balloon inflate,
 * free page reporting): under their region locks, free their swap slots, punch
 * the memfd hole (which zaps every mapping, so KVM's too) and move them to
 * NEW; the next guest access reads zeros through the normal fault path. No
 * other page is touched. Any thread but a pager one. Returns how many of the pages
 * held content (resident or swapped: they were freed; the others were never
 * touched, or given away before), -EINVAL out of range, -errno.
 */
int64_t mm_pager_discard(struct mm_pager *p, uint64_t first_page, uint64_t npages);

#define MM_WSS_WINDOWS	3 /* 1 s, 10 s, 60 s */
#define MM_IDLE_BUCKETS 8 /* idle >= 1, 2, 4, ... 128 intervals */
struct mm_wss {
	uint64_t interval_ms; /* the scan interval in effect (stretched by the CPU budget) */
	uint64_t scans;	      /* scans done so far */
	uint64_t window_s[MM_WSS_WINDOWS];
	uint64_t window_pages[MM_WSS_WINDOWS];	    /* pages touched within the window */
	uint64_t window_covered_ms[MM_WSS_WINDOWS]; /* what the sample really covered */
	uint64_t idle_hist[MM_IDLE_BUCKETS];	    /* pages in memory idle >= 2^i intervals */
	uint64_t sample_pages;			    /* pages per sample */
	uint64_t write_pages_per_s;		    /* from KVM's dirty log; 0 without */
	bool dirty_tracked;
	uint64_t scan_cpu_permille; /* the scanner's CPU use, 1/1000 of one CPU */
	uint64_t refault_permille;  /* time spent on swap-in faults, 1/1000 */
	uint64_t auto_min_age;	    /* --mem-limit auto's idle threshold now; 0 = off */
};
/* The latest working-set report; -ENOTSUP when access sampling is off. */
int mm_pager_wss(struct mm_pager *p, struct mm_wss *w);
#define MM_PAGEMAP_YOUNG 0x10
#define MM_PAGEMAP_DIRTY 0x20
/*
 * Pages [first, first+n): state[i] = enum pst_state | MM_PAGEMAP_YOUNG |
 * MM_PAGEMAP_DIRTY, age[i] = idle age in scan intervals (255 = or more);
 * age may be NULL. -EINVAL when the range leaves guest RAM.
 */
int mm_pager_pagemap(struct mm_pager *p, uint64_t first, uint64_t n, uint8_t *state, uint8_t *age);
/* The swap store's backend ("file", "memcached"; NULL before the store opens) and up to
 * max of its servers' figures; returns how many servers it has (0 for a file, and 0
 * when swap I/O held the store for more than 100 ms: never blocks on a stalled device). */
unsigned mm_pager_swap_servers(struct mm_pager *p, struct swap_server_stats *out, unsigned max,
			       const char **backend);
/* TEST ONLY: make the swap store fail (see swap_inject_error). */
void mm_pager_test_inject(struct mm_pager *p, bool write, int err, uint64_t after);

/* ---- pager internals (mm/ only) -------------------------------------------- */
#define MM_PAGE		 4096ULL
#define MM_REGION_PAGES	 512 /* 2 MiB: unit of locking and of the largest chunk */
#define MM_EVICT_REGIONS 16  /* whole-VM swap-out and swap-in work on 32 MiB at a time */

/*
 * One per 2 MiB of guest RAM, all written at start: 48 bytes (32 768 of them,
 * 1.5 MiB, at 64 GiB), hence the 16-bit counters.
 */
struct mm_region {
	pthread_mutex_t lock;  /* guards the pst entries of this region */
	_Atomic uint16_t nres; /* pages with content in the memfd */
	_Atomic uint16_t nnew;
	atomic_bool want; /* a fault thread failed trylock: wake it on unlock */
};
_Static_assert(MM_REGION_PAGES <= UINT16_MAX, "struct mm_region counts pages in 16 bits");

struct mm_fault_thread {
	struct mm_pager *p;
	pthread_t tid;
	int efd; /* wake-up: a region it waits for was unlocked, or memory was freed */
	struct uffd_msg *deferred;
	unsigned ndeferred, capdeferred;
	uint64_t ra_next, ra_win; /* readahead: expected next pfn, window in pages */
	struct swap_io *ios;
	uint64_t stall_t; /* when ndeferred was last added to stall_ns */
};

struct mm_pager {
	struct mm_mem *mem;
	uint8_t *alias; /* a second, unregistered mapping of the memfd: the pager's view */
	_Atomic uint64_t alias_reads;	/* pages swapped in through it since its last trim */
	_Atomic uint64_t alias_trim_ns; /* when (fault.c) */
	struct mm_trace *trace;		/* --trace-pages (trace.c), or NULL */
	bool wp;			/* clean tracking by write-protect (wp.c) is on */
	int pagemap_fd;			/* /proc/self/pagemap, for PAGEMAP_SCAN; -1 without wp */
	struct pst pst;
	struct mm_region *reg;
	uint64_t nregions, npages;
	struct uffd uffd;
	struct swap_store *swap;   /* NULL until the first eviction (mm_swap_ensure_locked) */
	pthread_mutex_t swap_lock; /* the swap store has one owner at a time */
	struct swap_tags tags;	   /* every page in swap, checked when read back */
	struct mm_pager_opts o;
	struct mm_host_ops ops;
	void *ctx;
	uint64_t chunk_pages, ra_max, limit_pages, high, low;
	unsigned ra_cluster;	     /* readahead cluster for non-sequential swap-ins */
	bool ra_eager;		     /* ... mapped at once, but for every fourth (resolve.c) */
	_Atomic unsigned ra_seq;     /* clusters read, to pick the ones left to measure */
	uint64_t ra_hits, ra_misses; /* feedback since the last adjustment */
	_Atomic uint64_t resident, swapped;
	/* pages fault threads are about to map (resolve.c, budget_take): with several
	 * threads, each checking the limit alone would let each overshoot it by a chunk */
	_Atomic uint64_t reserved;
	atomic_bool frozen; /* mm_pager_freeze: tables dropped, sampler held until a fault */
	uint64_t frozen_ns; /* ... since when */
	atomic_bool stop, dead, stalled, warned_write, warned_open, warned_full, warned_rc;
	atomic_bool warned_trace;
	atomic_bool released;	      /* mm_pager_release: guest RAM left the uffd */
	char swap_name[300];	      /* for messages: "swap file PATH", "swap memcached://..." */
	char write_why[SWAP_WHY_LEN]; /* the backend's words on the last failed write */
	/* whole-VM swap-outs pausing the vCPUs (a count: the control socket and the
	 * reclaim thread may run one each); while any does, the limit is lifted */
	atomic_int pausing;
	/* the fault threads' own stop, set only once every thread that zaps (scanner,
	 * reclaim) is joined: a zap's madvise waits for a fault thread to read its REMOVE */
	atomic_bool fstop;
	struct mm_fault_thread *ft;
	unsigned nft;
	pthread_t reclaim_tid;
	atomic_bool reclaim_started;
	pthread_mutex_t rc_lock;    /* starting the reclaim thread (mm_reclaim_ensure) */
	int rc_swapout;		    /* -1 none, else enum mm_swapin_mode requested by signal */
	int rc_efd;		    /* written by mm_pager_request_swapout */
	pthread_mutex_t evict_lock; /* one evictor at a time: reclaim or swapout_all */
	uint64_t hand;		    /* clock hand, a region index */
	struct swap_io *rc_ios;	    /* MM_EVICT_REGIONS * MM_REGION_PAGES, under evict_lock */
	struct mm_meta rc_ios_mem;  /* ... its mapping */
	uint8_t *rc_vic;
	struct mm_pager_stats st; /* counters, updated with MM_STAT_ADD */
	struct mm_access *acc;	  /* sampling and dirty state, NULL when neither (access.c) */
	bool sampling;		  /* the access scanner runs: it owns the pst ages */
};

#define MM_STAT_ADD(p, f, n) __atomic_fetch_add(&(p)->st.f, (uint64_t)(n), __ATOMIC_RELAXED)

/* pager.c */
uint64_t mm_now_ns(void);
uint64_t mm_thread_cpu_ns(void); /* the calling thread's CPU time */
/* A long operation should give up now: the pager or the VM is stopping. */
bool mm_cancelled(const struct mm_pager *p);
void mm_region_unlock(struct mm_pager *p, uint64_t r);
/* Move a page (region lock held), keeping counters and swap slots right; false on a bug. */
bool mm_page_set(struct mm_pager *p, uint64_t pfn, enum pst_state to);
void mm_slot_free(struct mm_pager *p, struct pst_entry *e);
/* Tag every page of ios (all from the pager's view) and write them (takes swap_lock). */
void mm_swap_write(struct mm_pager *p, struct swap_io *ios, unsigned nio);
/* Open the swap store at its first use (swap_lock held); -errno if it cannot be. */
int mm_swap_ensure_locked(struct mm_pager *p);
void mm_wake_faults(struct mm_pager *p);
void mm_pager_die(struct mm_pager *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mm_warn_once(struct mm_pager *p, atomic_bool *flag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The page-event trace (trace.c): open on an fd (the caller's), record, close. */
struct mm_trace;
int mm_trace_open(struct mm_pager *p, int fd);
void mm_trace_page(struct mm_trace *t, uint64_t pfn, unsigned from, unsigned to, unsigned flags);
void mm_trace_close(struct mm_pager *p);
/*
 * Read the swapped pages among [pfn, pfn+n) (their region locks held) into the
 * memfd through the pager's view, or with buf into buf (page pfn at buf); -errno.
 */
int mm_swapin_range(struct mm_pager *p, struct swap_io *ios, uint64_t pfn, uint64_t n, uint8_t *buf,
		    uint64_t *got);
/*
 * A page found in the memfd at a SWAPPED entry (region lock held), about to be
 * overwritten with its swap copy `copy`: 0 if it holds zeros or that copy already,
 * so nothing is lost; else the VM is stopped (mm_pager_die) and -EIO returned,
 * rather than silently pick one of two contents. Counts stray_pages.
 */
int mm_stray_page(struct mm_pager *p, uint64_t pfn, const uint8_t *copy);
/* wp.c: which clean pages the guest wrote, from write-protected PTEs */
/* The uffd features clean tracking needs (asked for with --clean-tracking wp). */
uint64_t mm_wp_features(void);
/* After the uffd is open, before guest RAM is registered: p->wp says whether clean pages
 * are tracked by write-protect (asked for, UFFD_FEATURE_WP_ASYNC on shmem and
 * PAGEMAP_SCAN there); opens the pagemap if so. */
void mm_wp_start(struct mm_pager *p);
void mm_wp_stop(struct mm_pager *p);
/*
 * Pages of [pfn, pfn+n) (their region locks held) that carry a slot and PST_F_WP
 * and whose PTE says written since (present and writable, or zapped after a write)
 * lose the slot and become DIRTY. Call it after a zap and before deciding which
 * pages are clean, and before re-mapping a page that may have been written.
 * With clean tracking off, a no-op.
 */
void mm_wp_sync(struct mm_pager *p, uint64_t pfn, uint64_t n);
/* Whether clean pages keep their slot while mapped (KVM's dirty log or wp tracks them). */
static inline bool mm_clean_tracked(const struct mm_pager *p)
{
	return p->wp || (p->ops.harvest_dirty && !p->ops.dirty_partial);
}
/* fault.c */
/* Start the p->nft fault threads on the registered uffd; -errno. */
int mm_fault_start(struct mm_pager *p);
void mm_fault_stop(struct mm_pager *p);
/* resolve.c: one fault resolved by its page's state (the table: fault.c) */
enum mm_resolved {
	MM_DONE, /* resolved and woken, or the VM stopped (mm_pager_die): forget it */
	MM_DEFER /* retry later: no room under the limit (reclaim kicked), or EAGAIN */
};
/* Map the zeros that zero-fill copies from; must be called before the first
 * mm_resolve_new (mm_fault_start does). Idempotent; -errno. */
int mm_resolve_init(void);
/*
 * Resolve a fault on page pfn of guest RAM, its region lock held: new for a NEW
 * page, minor for RESIDENT or UNMAPPED, swapin for SWAPPED (with ft's readahead
 * window and ios). The pages mapped are accounted resident before being woken.
 */
enum mm_resolved mm_resolve_new(struct mm_pager *p, uint64_t pfn);
enum mm_resolved mm_resolve_minor(struct mm_pager *p, uint64_t pfn);
enum mm_resolved mm_resolve_swapin(struct mm_fault_thread *ft, uint64_t pfn);
/* Page pfn was just mapped (region lock held): RESIDENT, YOUNG, age 0, and DIRTY
 * (slot freed) unless its clean copy stays tracked; an access is recorded only
 * for pfn == touched, the page the guest faulted on (neighbours are not SEEN). */
void mm_set_resident(struct mm_pager *p, uint64_t pfn, uint64_t touched);
/* Readahead feedback: hits (an RA page touched), misses (one evicted untouched). */
void mm_ra_feedback(struct mm_pager *p, uint64_t hits, uint64_t misses);
/*
 * Map pages [pfn, pfn+n) whose content is in the memfd (UFFDIO_CONTINUE, no
 * wake-up); *mapped gets how many from pfn on are mapped, also on error.
 * -EAGAIN: an event must be read first (defer); -ENOENT: no page in the memfd.
 */
int mm_map_run(struct mm_pager *p, uint64_t pfn, uint64_t n, uint64_t *mapped);
/* reclaim.c */
int mm_reclaim_start(struct mm_pager *p); /* only with a limit: see mm_reclaim_ensure */
int mm_reclaim_ensure(struct mm_pager *p);
void mm_reclaim_stop(struct mm_pager *p);
void mm_reclaim_kick(struct mm_pager *p);
/*
 * Evict the pages of regions [r0, r0+nreg) chosen by the clock, or all with
 * force. The caller holds evict_lock and the regions' locks; nreg <= MM_EVICT_REGIONS.
 */
uint64_t mm_evict_regions(struct mm_pager *p, uint64_t r0, unsigned nreg, bool force, int *err);
/* Steps 2-4 of eviction for the victims vic[] of pages [base, base+npg): all
 * zapped and UNMAPPED, evict_lock and the region locks held. Returns pages freed. */
uint64_t mm_evict(struct mm_pager *p, uint64_t base, unsigned npg, uint8_t *vic, int *err);
/*
 * The same eviction in steps, so that whole-VM swap-out can overlap one
 * group's write with the next group's zap and the previous group's punch
 * (swapout.c); all with evict_lock and the regions' locks held:
 * mm_evict_zap: step 1, chooses the victims into vic (npg + 1 bytes) and zaps
 *   them; false if there is none;
 * mm_evict_prepare: step 2, with drop_zero sets aside the dirty victims that hold only
 *   zeros (MM_VIC_ZERO), marks the others WRITEBACK and gives the dirty ones slots
 *   (whole-VM swap-out keeps zero pages: its prefetch brings everything back without a
 *   fault, which a page back to NEW would need);
 *   returns how many writes it built into ios (none if the store cannot open:
 *   *err); the caller then runs swap_write(p->swap, ios, n) under swap_lock;
 * mm_evict_finish: step 4 once that write has returned, zero pages punched back to
 *   NEW: pages freed.
 */
bool mm_evict_zap(struct mm_pager *p, uint64_t r0, unsigned nreg, bool force, uint8_t *vic);
/* vic[] values: not a victim, a victim to write (or drop clean), a victim found all zeros
 * by mm_evict_prepare (mm_evict_finish punches it back to NEW: no write, no slot). */
enum { MM_VIC_NONE, MM_VIC_EVICT, MM_VIC_ZERO };
/* True when the 4 KiB at pg are all zeros. */
bool mm_page_is_zero(const uint8_t *pg);
unsigned mm_evict_prepare(struct mm_pager *p, uint64_t base, unsigned npg, uint8_t *vic,
			  struct swap_io *ios, bool drop_zero, int *err);
uint64_t mm_evict_finish(struct mm_pager *p, uint64_t base, unsigned npg, const uint8_t *vic,
			 struct swap_io *ios, unsigned nio, int *err);
/* swapout.c: the worker of the whole-VM pipelines (swapout.c, swapin.c)
 * A helper thread: it runs one I/O job at a time while the caller does the CPU
 * side (zap, punch, install) of another group. Without the thread a job simply
 * runs in line when started. */
struct mm_worker {
	void (*fn)(void *arg);
	void *arg;
	sem_t go, done;
	pthread_t tid;
	bool threaded;
};
/* Never fails: if the thread cannot be had, jobs run in line in mm_worker_start. */
void mm_worker_open(struct mm_worker *w);
/* Run fn(arg) on the thread; the job started before must have been waited for. */
void mm_worker_start(struct mm_worker *w, void (*fn)(void *), void *arg);
/* Wait for the job started last (one must have been started). */
void mm_worker_wait(struct mm_worker *w);
/* Stop the thread, after mm_worker_wait for the last job. */
void mm_worker_close(struct mm_worker *w);
/* access.c */
int mm_access_start(struct mm_pager *p); /* after the fault and reclaim threads */
void mm_access_stop(struct mm_pager *p);
/* Wait until no scan is under way (scans after it see p->frozen and skip). */
void mm_access_quiesce(struct mm_pager *p);
void mm_access_free(struct mm_pager *p); /* after every pager thread is gone */
/* A page becomes RESIDENT by a fault (region lock held): record the access. */
void mm_access_touch(struct mm_pager *p, uint64_t pfn);
/*
 * Before deciding which of pages [base, base+npg) are clean (locks held,
 * victims zapped): fetch the dirty log and apply what it says about them.
 */
void mm_access_sync_dirty(struct mm_pager *p, uint64_t base, uint64_t npg);
/* Fetch KVM's log now (reclaim, before the hand moves), and apply what is pending for
 * [base, base+npg) (region locks held; before deciding victims): a page logged since
 * the last harvest is young. No-ops without the log. */
void mm_access_harvest(struct mm_pager *p);
void mm_access_apply_dirty(struct mm_pager *p, uint64_t base, uint64_t npg);
bool mm_access_page_dirty(struct mm_pager *p, uint64_t pfn); /* a pending dirty bit */
/* A lazily re-protected log (mm_host_ops.reprotect_dirty): re-protect [base, base+npg)
 * (region locks held) and forget its write reports (PST_F_WRITTEN). No-op without it. */
void mm_access_reprotect(struct mm_pager *p, uint64_t base, uint64_t npg);
/* proactive.c */
/*
 * Evict up to want pages, longest-idle first among the zapped, untouched
 * pages idle >= min_age; with force then any resident page. evict_lock held.
 */
uint64_t mm_reclaim_coldest(struct mm_pager *p, uint64_t want, unsigned min_age, bool force,
			    int *err);
/* --mem-limit auto: one step of proactive reclaim, at each scan (scanner thread);
 * age is the idle threshold in intervals; returns the next one. */
unsigned mm_proactive_step(struct mm_pager *p, uint64_t refault_permille, unsigned age);

#endif
