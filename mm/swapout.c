/* swapout.c: whole-VM swap-out, pipelined, and the I/O worker of both whole-VM pipelines */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "mm/mm.h"

static void *worker_main(void *arg)
{
	struct mm_worker *w = arg;

	for (;;) {
		while (sem_wait(&w->go) < 0)
			;
		if (!w->fn)
			return NULL;
		w->fn(w->arg);
		sem_post(&w->done);
	}
}

void mm_worker_open(struct mm_worker *w)
{
	*w = (struct mm_worker){0};
	if (sem_init(&w->go, 0, 0) == 0 && sem_init(&w->done, 0, 0) == 0)
		w->threaded = pthread_create(&w->tid, NULL, worker_main, w) == 0;
	if (w->threaded)
		pthread_setname_np(w->tid, "ufvm-swapout");
}

void mm_worker_start(struct mm_worker *w, void (*fn)(void *), void *arg)
{
	if (!w->threaded) {
		fn(arg);
		return;
	}
	w->fn = fn;
	w->arg = arg;
	sem_post(&w->go);
}

void mm_worker_wait(struct mm_worker *w)
{
	if (w->threaded)
		while (sem_wait(&w->done) < 0)
			;
}

void mm_worker_close(struct mm_worker *w)
{
	if (!w->threaded)
		return;
	w->fn = NULL;
	sem_post(&w->go);
	pthread_join(w->tid, NULL);
	sem_destroy(&w->go);
	sem_destroy(&w->done);
}

/*
 * Whole-VM swap-out is pipelined over two groups of MM_EVICT_REGIONS regions:
 * while the worker writes group k, the caller zaps group k+1 and then punches
 * group k-1 out of the memfd. Each group goes through the steps of eviction
 * in order (zap, WRITEBACK, write, punch; mm/README.md), its region locks
 * held by the caller from before the zap until after the punch; the groups
 * are disjoint, and the write only reads the pager's view of its own pages.
 */
struct swapout_group {
	struct mm_pager *p;
	uint64_t r;
	unsigned n, nio;
	bool any, writing;
	uint8_t *vic;
	struct swap_io *ios;
};

static void swapout_write(void *arg)
{
	struct swapout_group *g = arg;

	mm_swap_write(g->p, g->ios, g->nio);
}

/* Step 4 for a group whose write has returned, then unlock it. */
static uint64_t swapout_finish(struct mm_pager *p, struct swapout_group *g, int *err)
{
	uint64_t freed = 0;

	if (g->any)
		freed = mm_evict_finish(p, g->r * MM_REGION_PAGES, g->n * MM_REGION_PAGES, g->vic,
					g->ios, g->nio, err);
	for (unsigned i = 0; i < g->n; i++)
		mm_region_unlock(p, g->r + i);
	return freed;
}

static uint64_t swapout_groups(struct mm_pager *p, struct swapout_group g[2], int *err)
{
	struct swapout_group *prev = NULL; /* zapped and written (or being), not punched */
	struct mm_worker w;
	uint64_t pages = 0;
	unsigned b = 0;

	mm_worker_open(&w);
	for (uint64_t r = 0; r < p->nregions; r += MM_EVICT_REGIONS, b ^= 1) {
		struct swapout_group *cur = &g[b];

		if (mm_cancelled(p)) { /* the VM is ending: what is out stays out */
			*err = -ECANCELED;
			break;
		}
		cur->r = r;
		cur->n = p->nregions - r < MM_EVICT_REGIONS ? (unsigned)(p->nregions - r)
							    : MM_EVICT_REGIONS;
		for (unsigned i = 0; i < cur->n; i++)
			pthread_mutex_lock(&p->reg[r + i].lock);
		cur->any = mm_evict_zap(p, r, cur->n, true, cur->vic);
		if (prev && prev->writing)
			mm_worker_wait(&w); /* the store is ours again */
		cur->nio = cur->any
			       ? mm_evict_prepare(p, r * MM_REGION_PAGES, cur->n * MM_REGION_PAGES,
						  cur->vic, cur->ios, false, err)
			       : 0;
		cur->writing = cur->nio > 0;
		if (cur->writing)
			mm_worker_start(&w, swapout_write, cur);
		if (prev)
			pages += swapout_finish(p, prev, err);
		prev = cur;
	}
	if (prev) {
		if (prev->writing)
			mm_worker_wait(&w);
		pages += swapout_finish(p, prev, err);
	}
	mm_worker_close(&w);
	return pages;
}

int mm_pager_swapout_all(struct mm_pager *p, enum mm_swapin_mode mode)
{
	uint64_t t0 = mm_now_ns(), pages = 0;
	struct swapout_group g[2] = {{.p = p, .vic = p->rc_vic, .ios = p->rc_ios}, {.p = p}};
	struct stat sb;
	int err = 0;

	/* Lift the limit first: a vCPU blocked on a deferred fault must get out to pause. */
	atomic_fetch_add(&p->pausing, 1);
	mm_wake_faults(p);
	if (p->ops.pause_vcpus) {
		err = p->ops.pause_vcpus(p->ctx);
		if (err < 0)
			goto out_resume; /* even a failed pause is matched by a resume */
	}
	/* Several regions per group: one zap, one batch of I/O in flight, one punch;
	 * the second group's buffers are ours, the first's are reclaim's. */
	g[1].vic = calloc(MM_EVICT_REGIONS * MM_REGION_PAGES + 1, 1);
	g[1].ios = calloc(MM_EVICT_REGIONS * MM_REGION_PAGES, sizeof(*g[1].ios));
	pthread_mutex_lock(&p->evict_lock);
	if (g[1].vic && g[1].ios) {
		pages = swapout_groups(p, g, &err);
	} else {
		for (uint64_t r = 0; r < p->nregions && !mm_cancelled(p); r += MM_EVICT_REGIONS) {
			unsigned n =
			    p->nregions - r < MM_EVICT_REGIONS ? p->nregions - r : MM_EVICT_REGIONS;

			for (unsigned i = 0; i < n; i++)
				pthread_mutex_lock(&p->reg[r + i].lock);
			pages += mm_evict_regions(p, r, n, true, &err);
			for (unsigned i = 0; i < n; i++)
				mm_region_unlock(p, r + i);
		}
	}
	pthread_mutex_unlock(&p->evict_lock);
	free(g[1].vic);
	free(g[1].ios);
	MM_STAT_ADD(p, swapout_all_runs, 1);
	MM_STAT_ADD(p, swapout_all_pages, pages);
	MM_STAT_ADD(p, swapout_all_ns, mm_now_ns() - t0);
	if (fstat(p->mem->memfd, &sb) == 0)
		__atomic_store_n(&p->st.swapout_all_resident_bytes, (uint64_t)sb.st_blocks * 512,
				 __ATOMIC_RELAXED);
	if (mode == MM_SWAPIN_PREFETCH) {
		int e = mm_pager_swapin_all(p);

		if (!err)
			err = e;
	}
out_resume:
	if (p->ops.resume_vcpus)
		p->ops.resume_vcpus(p->ctx);
	atomic_fetch_sub(&p->pausing, 1);
	return err;
}

int mm_pager_freeze(struct mm_pager *p)
{
	int err;

	__atomic_store_n(&p->frozen_ns, mm_now_ns(), __ATOMIC_RELAXED);
	atomic_store(&p->frozen, true);
	mm_access_quiesce(p);
	/* Every write to the tables happens under a region lock (fault threads only
	 * trylock, and defer): holding them all keeps the tables still while they move. */
	for (uint64_t r = 0; r < p->nregions; r++)
		pthread_mutex_lock(&p->reg[r].lock);
	pthread_mutex_lock(&p->swap_lock); /* the slot allocator's writers */
	err = mm_meta_to_file(&p->pst.meta);
	if (!err)
		err = mm_meta_to_file(&p->tags.meta);
	if (!err && p->swap)
		err = swap_slots_freeze(p->swap, false);
	pthread_mutex_unlock(&p->swap_lock);
	for (uint64_t r = 0; r < p->nregions; r++)
		mm_region_unlock(p, r);
	if (err == -EFAULT)
		mm_pager_die(p, "ufvm: pager: freeze: the page-state table could not be mapped "
				"back: the VM stops");
	if (err)
		return err;
	/* scratch and free heap go back as they are; the tables once they are on disk
	 * (pages of them touched after this come back from the file by themselves) */
	pthread_mutex_lock(&p->evict_lock);
	madvise(p->rc_ios_mem.base, p->rc_ios_mem.bytes, MADV_DONTNEED);
	pthread_mutex_unlock(&p->evict_lock);
	malloc_trim(0);
	err = mm_meta_drop(&p->pst.meta);
	if (!err)
		err = mm_meta_drop(&p->tags.meta);
	pthread_mutex_lock(&p->swap_lock);
	if (!err && p->swap)
		err = swap_slots_freeze(p->swap, true);
	pthread_mutex_unlock(&p->swap_lock);
	return err;
}
