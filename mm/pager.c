/* pager.c: pager start/stop, page accounting, host copies, whole-VM swap-out and swap-in */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mm/mm.h"

#ifndef UFFD_FEATURE_MINOR_SHMEM
#define UFFD_FEATURE_MINOR_SHMEM (1 << 10)
#endif

uint64_t mm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t mm_thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void mm_wake_faults(struct mm_pager *p)
{
	uint64_t one = 1;

	for (unsigned i = 0; i < p->nft; i++)
		if (write(p->ft[i].efd, &one, sizeof(one)) < 0) {
			/* the counter is saturated: a wake-up is pending anyway */
		}
}

void mm_region_unlock(struct mm_pager *p, uint64_t r)
{
	pthread_mutex_unlock(&p->reg[r].lock);
	if (atomic_exchange(&p->reg[r].want, 0))
		mm_wake_faults(p);
}

void mm_pager_die(struct mm_pager *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (atomic_exchange(&p->dead, true))
		return; /* one fatal message is enough */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->ops.fatal)
		p->ops.fatal(p->ctx, msg);
}

void mm_warn_once(struct mm_pager *p, atomic_bool *flag, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (atomic_exchange(flag, true) || !p->ops.warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->ops.warn(p->ctx, msg);
}

void mm_slot_free(struct mm_pager *p, struct pst_entry *e)
{
	if (!(e->flags & PST_F_SLOT))
		return;
	pthread_mutex_lock(&p->swap_lock);
	swap_discard(p->swap, e->slot, (uint64_t)(e - p->pst.e));
	pthread_mutex_unlock(&p->swap_lock);
	e->flags &= (uint8_t) ~(PST_F_SLOT | PST_F_WP);
}

static bool has_content(enum pst_state s)
{
	return s == PST_RESIDENT || s == PST_UNMAPPED || s == PST_WRITEBACK;
}

bool mm_page_set(struct mm_pager *p, uint64_t pfn, enum pst_state to)
{
	struct pst_entry *e = &p->pst.e[pfn];
	struct mm_region *r = &p->reg[pfn / MM_REGION_PAGES];
	enum pst_state from = (enum pst_state)e->state;
	uint64_t res, max;

	if (to == PST_NEW)
		mm_slot_free(p, e);
	if (pst_set(&p->pst, pfn, to) < 0) {
		mm_pager_die(
		    p, "ufvm: pager: internal error: page 0x%llx: illegal transition %s -> %s",
		    (unsigned long long)(pfn * MM_PAGE), pst_state_name(from), pst_state_name(to));
		return false;
	}
	if (p->trace)
		mm_trace_page(p->trace, pfn, from, to, e->flags);
	if (from == PST_NEW)
		r->nnew--;
	if (to == PST_NEW)
		r->nnew++;
	if (from == PST_SWAPPED)
		p->swapped--;
	if (to == PST_SWAPPED) {
		p->swapped++;
		e->flags &= (uint8_t)~PST_F_WP; /* the content is the slot's alone now */
	}
	if (has_content(from) && !has_content(to)) {
		r->nres--;
		p->resident--;
	} else if (!has_content(from) && has_content(to)) {
		r->nres++;
		res = ++p->resident;
		max = __atomic_load_n(&p->st.max_resident_pages, __ATOMIC_RELAXED);
		while (res > max &&
		       !__atomic_compare_exchange_n(&p->st.max_resident_pages, &max, res, false,
						    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
	}
	return true;
}

bool mm_page_is_zero(const uint8_t *pg)
{
	for (unsigned i = 0; i < MM_PAGE; i += 8)
		if (*(const uint64_t *)(pg + i))
			return false;
	return true;
}

int mm_stray_page(struct mm_pager *p, uint64_t pfn, const uint8_t *copy)
{
	const uint8_t *cur = p->alias + pfn * MM_PAGE; /* present: reading allocates nothing */

	MM_STAT_ADD(p, stray_pages, 1);
	if (!memcmp(cur, copy, MM_PAGE) || mm_page_is_zero(cur))
		return 0;
	mm_pager_die(p,
		     "ufvm: pager: guest page 0x%llx: the memfd holds data that is neither the "
		     "page's swap copy nor zeros; not choosing between them (VM stopped)",
		     (unsigned long long)(pfn * MM_PAGE));
	return -EIO;
}

/*
 * Each io in pieces of HOT_PAGES: tag a piece, then write it at once, so that the
 * kernel's copy reads what the hash just brought into the cache (swap_lock held).
 * Hashing a whole 32 MiB group first and writing it after read it from memory twice:
 * whole-VM swap-out took 1.2x as long as without tags; this way it does not
 * (bench/README.md, "Swap tags"). Backends that batch (memcached) get the pieces
 * in one call all the same: pieces go to the file backend only.
 */
#define HOT_PAGES 32 /* 128 KiB */
static int write_hot(struct mm_pager *p, struct swap_io *ios, unsigned nio)
{
	int first = 0;

	if (strcmp(swap_backend_name(p->swap), "file")) {
		for (unsigned k = 0; k < nio; k++)
			for (uint32_t j = 0; j < ios[k].npages; j++)
				swap_tags_set(&p->tags, ios[k].slot + j, ios[k].pfn + j,
					      (uint8_t *)ios[k].buf + (uint64_t)j * MM_PAGE);
		return swap_write(p->swap, ios, nio);
	}
	for (unsigned k = 0; k < nio; k++) {
		uint64_t pfn = (uint64_t)((uint8_t *)ios[k].buf - p->alias) / MM_PAGE;

		ios[k].res = 0;
		for (uint32_t j = 0; j < ios[k].npages && !ios[k].res; j += HOT_PAGES) {
			uint32_t n = ios[k].npages - j < HOT_PAGES ? ios[k].npages - j : HOT_PAGES;
			struct swap_io io = {.slot = ios[k].slot + j,
					     .npages = n,
					     .buf = (uint8_t *)ios[k].buf + (uint64_t)j * MM_PAGE,
					     .pfn = pfn + j};

			for (uint32_t i = 0; i < n; i++)
				swap_tags_set(&p->tags, io.slot + i, io.pfn + i,
					      (uint8_t *)io.buf + (uint64_t)i * MM_PAGE);
			swap_write(p->swap, &io, 1);
			ios[k].res = io.res;
		}
		if (ios[k].res && !first)
			first = ios[k].res;
	}
	return first;
}

void mm_swap_write(struct mm_pager *p, struct swap_io *ios, unsigned nio)
{
	pthread_mutex_lock(&p->swap_lock);
	if (write_hot(p, ios, nio) < 0) /* why, for write_failed's message */
		snprintf(p->write_why, sizeof(p->write_why), "%s", swap_why(p->swap));
	pthread_mutex_unlock(&p->swap_lock);
}

/* A read of guest page pfn from the store failed (why: the backend's words): stop the VM. */
static int read_failed(struct mm_pager *p, uint64_t pfn, int err, const char *why)
{
	MM_STAT_ADD(p, read_errors, 1);
	mm_pager_die(p, "ufvm: %s: read of guest page 0x%llx failed: %s%s%s (VM stopped)",
		     p->swap_name, (unsigned long long)(pfn * MM_PAGE), strerror(-err),
		     *why ? ": " : "", why);
	return err;
}

/* Page pfn came back from its slot as page: stop the VM unless it is what was written. */
static int check_tag(struct mm_pager *p, uint64_t pfn, uint64_t slot, const uint8_t *page)
{
	if (swap_tags_check(&p->tags, slot, pfn, page))
		return 0;
	MM_STAT_ADD(p, bad_pages, 1);
	MM_STAT_ADD(p, read_errors, 1);
	mm_pager_die(p,
		     "ufvm: %s: guest page 0x%llx read back from offset 0x%llx is not "
		     "what was written there (checksum mismatch; VM stopped)",
		     p->swap_name, (unsigned long long)(pfn * MM_PAGE),
		     (unsigned long long)(slot * MM_PAGE));
	return -EBADMSG;
}

/*
 * Read ios from the store; on failure copy the backend's words into why. Under
 * swap_lock unless the backend serves reads alongside everything else
 * (memcached: a fault's read then never waits behind a reclaim write batch).
 * The slots read are those of SWAPPED pages whose regions the caller holds:
 * nobody writes or frees them meanwhile.
 */
static int store_read(struct mm_pager *p, struct swap_io *ios, unsigned nio, char *why,
		      size_t whylen)
{
	bool lock = !swap_reads_concurrent(p->swap);
	int err;

	if (lock)
		pthread_mutex_lock(&p->swap_lock);
	err = swap_read(p->swap, ios, nio);
	if (err < 0)
		snprintf(why, whylen, "%s", swap_why(p->swap));
	if (lock)
		pthread_mutex_unlock(&p->swap_lock);
	return err;
}

/* Swapped pages of [pfn, pfn+n) that have a page in the memfd all the same (strays):
 * each is checked against its swap copy before the read writes the copy over it. */
static int check_strays(struct mm_pager *p, uint64_t pfn, uint64_t n)
{
	_Alignas(4096) uint8_t copy[MM_PAGE]; /* O_DIRECT reads need an aligned buffer */
	unsigned char vec[MM_REGION_PAGES];
	int err;

	if (n > MM_REGION_PAGES || mincore(p->mem->hva + pfn * MM_PAGE, n * MM_PAGE, vec) < 0)
		return 0; /* cannot tell: the read decides, as before */
	for (uint64_t i = 0; i < n; i++) {
		struct pst_entry *e = &p->pst.e[pfn + i];
		struct swap_io io = {.slot = e->slot, .npages = 1, .buf = copy, .pfn = pfn + i};

		if (e->state != PST_SWAPPED || !(vec[i] & 1))
			continue;
		char why[SWAP_WHY_LEN] = "";

		err = store_read(p, &io, 1, why, sizeof(why));
		if (err < 0)
			return read_failed(p, pfn + i, err, why);
		err = check_tag(p, pfn + i, e->slot, copy);
		if (err < 0)
			return err;
		err = mm_stray_page(p, pfn + i, copy);
		if (err < 0)
			return err;
	}
	return 0;
}

int mm_swapin_range(struct mm_pager *p, struct swap_io *ios, uint64_t pfn, uint64_t n, uint8_t *buf,
		    uint64_t *got)
{
	uint8_t *dst = buf ? buf - pfn * MM_PAGE : p->alias; /* page i goes to dst + i pages */
	unsigned nio = 0;
	uint64_t pages = 0;
	int err;

	for (uint64_t i = pfn; i < pfn + n; i++) {
		struct pst_entry *e = &p->pst.e[i];
		struct swap_io *last = nio ? &ios[nio - 1] : NULL;

		if (e->state != PST_SWAPPED)
			continue;
		if (last && last->slot + last->npages == e->slot &&
		    (uint8_t *)last->buf + last->npages * MM_PAGE == dst + i * MM_PAGE) {
			last->npages++;
		} else {
			ios[nio++] = (struct swap_io){
			    .slot = e->slot, .npages = 1, .buf = dst + i * MM_PAGE, .pfn = i};
		}
		pages++;
	}
	*got = pages;
	if (!nio)
		return 0;
	if (!buf && (err = check_strays(p, pfn, n)) < 0)
		return err;
	char why[SWAP_WHY_LEN] = "";

	err = store_read(p, ios, nio, why, sizeof(why));
	if (err < 0) {
		uint64_t bad = pfn;

		for (unsigned k = 0; k < nio; k++)
			if (ios[k].res < 0) {
				bad = ios[k].pfn;
				break;
			}
		return read_failed(p, bad, err, why);
	}
	for (uint64_t i = pfn; i < pfn + n; i++)
		if (p->pst.e[i].state == PST_SWAPPED &&
		    (err = check_tag(p, i, p->pst.e[i].slot, dst + i * MM_PAGE)) < 0)
			return err;
	if (!buf) /* they are mapped in our view now too, until reclaim trims it */
		atomic_fetch_add(&p->alias_reads, pages);
	MM_STAT_ADD(p, swapin_pages, pages);
	MM_STAT_ADD(p, swapin_bytes, pages * MM_PAGE);
	return 0;
}

/* Count what the VMM already wrote into the memfd before we took over. */
static void account_existing(struct mm_pager *p)
{
	off_t pos = 0, end, size = (off_t)p->mem->size;

	while (pos < size) {
		pos = lseek(p->mem->memfd, pos, SEEK_DATA);
		if (pos < 0)
			break;
		end = lseek(p->mem->memfd, pos, SEEK_HOLE);
		if (end < 0)
			end = size;
		for (uint64_t pfn = (uint64_t)pos / MM_PAGE; pfn * MM_PAGE < (uint64_t)end; pfn++)
			if (mm_page_set(p, pfn, PST_RESIDENT))
				p->pst.e[pfn].flags |= PST_F_DIRTY | PST_F_YOUNG;
		pos = end;
	}
}

/*
 * Open the swap store if it is not yet (swap_lock held). A run that never
 * evicts a page pays for no swap file and no io_uring; an explicit --swap path
 * or --swap-direct is opened at start instead, so a bad one fails there.
 */
static bool tag_ok(void *ctx, uint64_t slot, uint64_t pfn, const void *page)
{
	struct mm_pager *p = ctx;

	return swap_tags_check(&p->tags, slot, pfn, page);
}

int mm_swap_ensure_locked(struct mm_pager *p)
{
	struct swap_opts so = {.path = p->o.swap_path,
			       .direct = p->o.swap_direct,
			       .verify = tag_ok,
			       .verify_ctx = p,
			       .spin_us = p->o.spin_us};
	struct swap_store *s;
	int err;

	if (p->swap)
		return 0;
	err = swap_open(&s, &so, p->npages);
	if (!err) /* published whole: mm_pager_get_stats reads it without swap_lock */
		__atomic_store_n(&p->swap, s, __ATOMIC_RELEASE);
	return err;
}

void mm_pager_release(struct mm_pager *p)
{
	if (atomic_exchange(&p->released, true))
		return;
	atomic_store(&p->dead, true); /* quiet: what fails from now on is no news */
	uffd_unregister(&p->uffd, p->mem->hva, p->mem->size);
}

bool mm_cancelled(const struct mm_pager *p)
{
	return atomic_load(&p->stop) || (p->ops.stopping && p->ops.stopping(p->ctx));
}

static int check_opts(struct mm_pager *p, const struct mm_pager_opts *o)
{
	uint64_t batch;

	p->o = *o;
	if (!p->o.chunk)
		p->o.chunk = MM_REGION_PAGES * MM_PAGE;
	if (p->o.chunk < MM_PAGE || p->o.chunk > MM_REGION_PAGES * MM_PAGE ||
	    (p->o.chunk & (p->o.chunk - 1)))
		return -EINVAL;
	p->chunk_pages = p->o.chunk / MM_PAGE;
	swap_describe(p->o.swap_path, p->swap_name, sizeof(p->swap_name));
	p->ra_max = p->o.readahead_max ? p->o.readahead_max : 256;
	p->ra_cluster = 8;
	if (p->ra_max > MM_REGION_PAGES)
		p->ra_max = MM_REGION_PAGES;
	p->nft = p->o.fault_threads ? p->o.fault_threads : 2;
	if (p->nft > 16)
		return -EINVAL;
	if (p->o.mem_limit) {
		if (p->o.mem_limit < (4ULL << 20))
			return -EINVAL; /* below a few chunks reclaim would only thrash */
		p->limit_pages = p->o.mem_limit / MM_PAGE;
		batch = mm_reclaim_batch(p->limit_pages);
		p->high = p->limit_pages - batch;
		p->low = p->limit_pages - 2 * batch;
	}
	return 0;
}

static int setup_tables(struct mm_pager *p, struct mm_mem *mem)
{
	int err;

	p->mem = mem;
	p->npages = mem->size / MM_PAGE;
	p->nregions = mem->size / (MM_REGION_PAGES * MM_PAGE);
	err = pst_init(&p->pst, p->npages);
	if (err < 0)
		return err;
	err = swap_tags_init(&p->tags, p->npages); /* one slot per page at most */
	if (err < 0)
		return err;
	p->reg = calloc(p->nregions, sizeof(*p->reg));
	/* its own pages: scratch that a frozen VM drops (mm_pager_freeze) */
	if (mm_meta_map(&p->rc_ios_mem, MM_EVICT_REGIONS * MM_REGION_PAGES * sizeof(*p->rc_ios)) ==
	    0)
		p->rc_ios = p->rc_ios_mem.base;
	p->rc_vic = calloc(MM_EVICT_REGIONS * MM_REGION_PAGES + 1, 1);
	if (!p->reg || !p->rc_ios || !p->rc_vic)
		return -ENOMEM;
	for (uint64_t r = 0; r < p->nregions; r++) {
		pthread_mutex_init(&p->reg[r].lock, NULL);
		p->reg[r].nnew = MM_REGION_PAGES;
	}
	pthread_mutex_init(&p->swap_lock, NULL);
	pthread_mutex_init(&p->evict_lock, NULL);
	pthread_mutex_init(&p->rc_lock, NULL);
	p->rc_swapout = -1;
	p->alias = mmap(NULL, mem->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			mem->memfd, 0);
	if (p->alias == MAP_FAILED) {
		p->alias = NULL;
		return -errno;
	}
	if (p->o.trace_fd > 0 && (err = mm_trace_open(p, p->o.trace_fd)) < 0)
		return err;
	account_existing(p);
	return 0;
}

static void teardown(struct mm_pager *p)
{
	mm_wp_stop(p);
	if (p->uffd.fd >= 0) {
		uffd_unregister(&p->uffd, p->mem->hva, p->mem->size);
		uffd_close(&p->uffd);
	}
	if (p->swap && swap_wants_discard(p->swap)) /* copies on other hosts go with the VM */
		for (uint64_t i = 0; i < p->npages; i++)
			if (p->pst.e[i].flags & PST_F_SLOT)
				swap_discard(p->swap, p->pst.e[i].slot, i);
	if (p->swap)
		swap_close(p->swap);
	if (p->alias)
		munmap(p->alias, p->mem->size);
	if (p->rc_efd > 0)
		close(p->rc_efd);
	mm_access_free(p);
	mm_trace_close(p);
	swap_tags_free(&p->tags);
	pst_free(&p->pst);
	free(p->reg);
	mm_meta_unmap(&p->rc_ios_mem);
	free(p->rc_vic);
	free(p);
}

static _Thread_local bool start_failed_swap;

bool mm_pager_start_failed_swap(void)
{
	return start_failed_swap;
}

int mm_pager_start(struct mm_pager **out, struct mm_mem *mem, const struct mm_pager_opts *o,
		   const struct mm_host_ops *ops, void *ctx)
{
	const uint64_t base_features =
	    UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_EVENT_REMOVE;
	struct mm_pager *p = calloc(1, sizeof(*p));
	int err;

	start_failed_swap = false;
	if (!p)
		return -ENOMEM;
	p->uffd.fd = -1;
	p->pagemap_fd = -1;
	p->ops = *ops;
	p->ctx = ctx;
	err = check_opts(p, o);
	if (err < 0)
		goto err_free;
	err = setup_tables(p, mem);
	if (err < 0)
		goto err_free;
	p->rc_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->rc_efd < 0) {
		err = -errno;
		goto err_free;
	}
	if (p->o.swap_path || p->o.swap_direct) {
		err = mm_swap_ensure_locked(p); /* no other thread yet */
		if (err < 0) {
			start_failed_swap = true;
			goto err_free;
		}
	}
	/* with --clean-tracking wp, ask for its features too: a user who asked for it
	 * learns at once that this kernel cannot, rather than from missing clean drops */
	err = uffd_open(&p->uffd, base_features | (p->o.wp ? mm_wp_features() : 0));
	if (err == -ENOTSUP && p->o.wp && uffd_open(&p->uffd, base_features) == 0)
		err = MM_ERR_NO_WP;
	if (err < 0)
		goto err_free;
	mm_wp_start(p); /* sets p->wp; without it, pages read back from swap are dirty at once */
	if (p->o.wp && !p->wp) {
		err = MM_ERR_NO_WP;
		goto err_free;
	}
	err = uffd_register(&p->uffd, mem->hva, mem->size, true, p->wp);
	if (err < 0)
		goto err_free;
	/* Before the fault threads, which record accesses; its first scan is an interval away. */
	err = mm_access_start(p);
	if (err < 0)
		goto err_access;
	err = mm_fault_start(p);
	if (err < 0)
		goto err_access;
	err = mm_reclaim_start(p);
	if (err < 0)
		goto err_faults;
	mem->pager = p;
	*out = p;
	return 0;

err_faults:
	mm_access_stop(p); /* before the fault threads: its zaps need them */
	mm_fault_stop(p);
err_access:
	mm_access_stop(p);
err_free:
	teardown(p);
	return err;
}

void mm_pager_stop(struct mm_pager *p)
{
	if (!p)
		return;
	p->mem->pager = NULL;
	atomic_store(&p->stop, true);
	mm_access_stop(p);
	mm_reclaim_stop(p);
	mm_fault_stop(p);
	teardown(p);
}

const char *mm_pager_strerror(int err)
{
	if (err == -EINVAL)
		return "invalid pager options (chunk: power of two, 4K..2M; mem-limit >= 4M)";
	if (err == MM_ERR_NO_WP)
		return "--clean-tracking wp needs UFFD_FEATURE_WP_ASYNC on shmem and PAGEMAP_SCAN "
		       "(Linux 6.7 or newer), which this kernel lacks: leave it off";
	return uffd_strerror(err);
}

void mm_pager_get_stats(struct mm_pager *p, struct mm_pager_stats *st)
{
	const uint64_t *src = (const uint64_t *)&p->st;
	uint64_t *dst = (uint64_t *)st;
	struct swap_store *swap;
	struct stat sb;

	for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	st->pages = p->npages;
	st->resident_pages = p->resident;
	st->swapped_pages = p->swapped;
	st->limit_pages = p->limit_pages;
	st->reclaim_stalled = p->limit_pages && atomic_load(&p->stalled);
	st->memfd_bytes = fstat(p->mem->memfd, &sb) == 0 ? (uint64_t)sb.st_blocks * 512 : 0;
	/* not under swap_lock: its holder may be waiting for a stalled swap device */
	swap = __atomic_load_n(&p->swap, __ATOMIC_ACQUIRE);
	st->swap_slots_used = swap ? swap_slots_used(swap) : 0;
}

unsigned mm_pager_swap_servers(struct mm_pager *p, struct swap_server_stats *out, unsigned max,
			       const char **backend)
{
	struct swap_store *swap = __atomic_load_n(&p->swap, __ATOMIC_ACQUIRE);
	struct timespec until;
	unsigned n = 0;

	*backend = swap ? swap_backend_name(swap) : NULL;
	/* the servers' counters are the backend's, under swap_lock; a holder that waits
	 * for a stalled device must not hold up the statistics: without them then */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 100 * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	if (!swap || pthread_mutex_timedlock(&p->swap_lock, &until) != 0)
		return 0;
	n = swap_servers(swap, out, max);
	pthread_mutex_unlock(&p->swap_lock);
	return n;
}

void mm_pager_test_inject(struct mm_pager *p, bool write, int err, uint64_t after)
{
	pthread_mutex_lock(&p->swap_lock);
	if (mm_swap_ensure_locked(p) == 0)
		swap_inject_error(p->swap, write, err, after);
	pthread_mutex_unlock(&p->swap_lock);
}
