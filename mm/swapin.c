/* swapin.c: whole-VM swap-in, pipelined: read into bounce buffers, install with UFFDIO_COPY */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mm/mm.h"

/*
 * UFFDIO_COPY found a page in the memfd at a SWAPPED entry (region locked): a
 * stray (mm_stray_page). If it holds zeros or the swap copy already, write the
 * copy over it through our view and map it; else the VM stops. Returns UFFD_OK,
 * or the CONTINUE's result.
 */
static int swapin_install_over(struct mm_pager *p, uint64_t pfn, const uint8_t *content)
{
	uint64_t mapped;
	int err;

	if (mm_stray_page(p, pfn, content) < 0)
		return -EIO;
	memcpy(p->alias + pfn * MM_PAGE, content, MM_PAGE);
	err = mm_map_run(p, pfn, 1, &mapped);
	return err == 0 ? UFFD_OK : err == -EAGAIN ? UFFD_RETRY : err;
}

/*
 * Map the swapped pages of regions [r, r+n) from bounce, where they were read
 * (locks held). The read filled a reused bounce buffer instead of the memfd
 * (reading straight into the memfd through our view would fault in, and
 * zero, every page before the read overwrites it); UFFDIO_COPY then fills
 * whole new pages and maps them. The pages' slots are not freed here but
 * listed in slots: freeing takes swap_lock, which the reader holds for a
 * whole read (of a file; memcached reads without it). The page no longer refers to its slot (it is
 * dirty), so the slot is merely leaked until swapin_free_slots.
 */
static int swapin_install(struct mm_pager *p, uint64_t r, unsigned n, uint8_t *bounce,
			  uint64_t *slots, uint64_t *nslots)
{
	uint64_t base = r * MM_REGION_PAGES, npg = n * MM_REGION_PAGES;
	int err = 0;

	for (uint64_t i = 0, run = 0; i <= npg && !err; i++) {
		uint64_t first = base + i - run;

		if (i < npg && p->pst.e[base + i].state == PST_SWAPPED) {
			run++;
			continue;
		}
		if (!run)
			continue;
		{
			uint64_t done = 0, k = 0;
			/* clean copies of their slots: write-protected when wp.c tracks them */
			int rc =
			    uffd_copy(&p->uffd, p->mem->hva + first * MM_PAGE,
				      bounce + (i - run) * MM_PAGE, run * MM_PAGE, p->wp, &done);

			k = done / MM_PAGE;
			/* EEXIST: a page appeared in the memfd where the table has a hole */
			while (rc == UFFD_EXISTS && k < run) {
				rc = swapin_install_over(p, first + k,
							 bounce + (i - run + k) * MM_PAGE);
				k += rc == UFFD_OK;
				if (rc == UFFD_OK && k < run) {
					rc =
					    uffd_copy(&p->uffd, p->mem->hva + (first + k) * MM_PAGE,
						      bounce + (i - run + k) * MM_PAGE,
						      (run - k) * MM_PAGE, p->wp, &done);
					k += done / MM_PAGE;
				}
			}
			for (uint64_t j = first; j < first + k; j++) {
				struct pst_entry *e = &p->pst.e[j];

				mm_page_set(p, j, PST_RESIDENT);
				if (!mm_clean_tracked(p)) { /* else clean until a write shows */
					if (e->flags & PST_F_SLOT) /* freed after the next read */
						slots[(*nslots)++] = (uint64_t)e->slot << 32 | j;
					e->flags =
					    (uint8_t)((e->flags & ~PST_F_SLOT) | PST_F_DIRTY);
				} else if (p->wp) {
					e->flags |= PST_F_WP; /* mapped protected, above */
				}
			}
			if (rc != UFFD_OK && rc != UFFD_RETRY)
				err = rc < 0 ? rc : -EIO;
		}
		uffd_wake(&p->uffd, p->mem->hva + first * MM_PAGE, run * MM_PAGE);
		run = 0;
	}
	return err;
}

/*
 * Swap-in is pipelined over two bounce buffers: a reader thread reads group
 * k+1 while the caller installs group k. Both groups' region locks are held by
 * the caller throughout, so the reader only reads their page-state entries
 * (nothing changes them) and the swap store (under swap_lock, unless the
 * backend has concurrent_reads); the
 * groups, and their buffers, are disjoint.
 */
#ifndef SWAPIN_REGIONS
#define SWAPIN_REGIONS 16 /* a pipeline stage: 32 MiB */
#endif

struct swapin_group {
	struct swapin_pipe *sp;
	uint64_t r, got;
	unsigned n, buf;
	int err;
};

struct swapin_pipe {
	struct mm_pager *p;
	uint64_t *slots,
	    nslots; /* slot << 32 | pfn, of the group installed last, freed after the next read */
	struct swap_io *ios[2];
	uint8_t *bounce[2];
	struct mm_worker w;
};

static void swapin_free_slots(struct swapin_pipe *sp)
{
	if (!sp->nslots)
		return;
	pthread_mutex_lock(&sp->p->swap_lock);
	for (uint64_t i = 0; i < sp->nslots; i++)
		swap_discard(sp->p->swap, sp->slots[i] >> 32, sp->slots[i] & UINT32_MAX);
	pthread_mutex_unlock(&sp->p->swap_lock);
	sp->nslots = 0;
}

static void swapin_read(void *arg)
{
	struct swapin_group *g = arg;
	struct swapin_pipe *sp = g->sp;

	g->err = mm_swapin_range(sp->p, sp->ios[g->buf], g->r * MM_REGION_PAGES,
				 g->n * MM_REGION_PAGES, sp->bounce[g->buf], &g->got);
}

static int swapin_wait(struct swapin_pipe *sp, struct swapin_group *g)
{
	mm_worker_wait(&sp->w);
	if (g->err < 0)
		mm_pager_die(sp->p, "ufvm: %s: swap-in of guest memory at 0x%llx failed: %s",
			     sp->p->swap_name,
			     (unsigned long long)(g->r * MM_REGION_PAGES * MM_PAGE),
			     strerror(-g->err));
	return g->err;
}

/*
 * The next run of up to SWAPIN_REGIONS regions from *r that hold swapped
 * pages, leaving room under the limit for the `pending` regions not yet
 * installed; 0 when there is none (or no room).
 */
static unsigned next_group(struct mm_pager *p, uint64_t *r, unsigned pending)
{
	unsigned n = 0;

	while (*r < p->nregions && p->reg[*r].nres + p->reg[*r].nnew == MM_REGION_PAGES)
		(*r)++;
	while (*r + n < p->nregions && n < SWAPIN_REGIONS &&
	       p->reg[*r + n].nres + p->reg[*r + n].nnew < MM_REGION_PAGES)
		n++;
	if (n && p->limit_pages) { /* prefetching more would only be reclaimed again */
		uint64_t room = p->resident < p->high ? p->high - p->resident : 0;
		uint64_t fit = room / MM_REGION_PAGES;

		fit = fit > pending ? fit - pending : 0;
		if (n > fit)
			n = (unsigned)fit;
	}
	return n;
}

static void lock_group(struct mm_pager *p, const struct swapin_group *g)
{
	for (unsigned i = 0; i < g->n; i++)
		pthread_mutex_lock(&p->reg[g->r + i].lock);
}

static void unlock_group(struct mm_pager *p, const struct swapin_group *g)
{
	for (unsigned i = 0; i < g->n; i++)
		mm_region_unlock(p, g->r + i);
}

static int swapin_pipe_open(struct swapin_pipe *sp, struct mm_pager *p)
{
	const size_t blen = SWAPIN_REGIONS * MM_REGION_PAGES * MM_PAGE;

	*sp = (struct swapin_pipe){.p = p};
	mm_worker_open(&sp->w);
	sp->slots = calloc(SWAPIN_REGIONS * MM_REGION_PAGES, sizeof(*sp->slots));
	if (!sp->slots)
		return -ENOMEM;
	for (int b = 0; b < 2; b++) {
		sp->ios[b] = calloc(SWAPIN_REGIONS * MM_REGION_PAGES, sizeof(struct swap_io));
		sp->bounce[b] =
		    mmap(NULL, blen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (sp->bounce[b] == MAP_FAILED)
			sp->bounce[b] = NULL;
		if (!sp->ios[b] || !sp->bounce[b])
			return -ENOMEM;
	}
	return 0;
}

static void swapin_pipe_close(struct swapin_pipe *sp)
{
	const size_t blen = SWAPIN_REGIONS * MM_REGION_PAGES * MM_PAGE;

	swapin_free_slots(sp);
	free(sp->slots);
	mm_worker_close(&sp->w);
	for (int b = 0; b < 2; b++) {
		free(sp->ios[b]);
		if (sp->bounce[b])
			munmap(sp->bounce[b], blen);
	}
}

int mm_pager_swapin_all(struct mm_pager *p)
{
	struct swapin_group g[2];
	struct swapin_group *cur = NULL; /* read, locked, not installed yet */
	struct swapin_pipe sp;
	uint64_t t0 = mm_now_ns(), pages = 0, r = 0;
	int err = swapin_pipe_open(&sp, p);
	bool cancelled = false;

	if (err < 0)
		goto out;
	for (unsigned b = 0; !err; b ^= 1) {
		struct swapin_group *nx = &g[b];

		nx->r = r;
		nx->n = next_group(p, &nx->r, cur ? cur->n : 0);
		if (nx->n && mm_cancelled(p)) { /* the VM is ending: no more reads */
			nx->n = 0;
			cancelled = true;
		}
		nx->buf = b;
		nx->sp = &sp;
		if (nx->n) {
			lock_group(p, nx);
			mm_worker_start(&sp.w, swapin_read, nx);
			r = nx->r + nx->n;
		}
		if (cur) { /* install the previous group while the next one is read */
			err = swapin_install(p, cur->r, cur->n, sp.bounce[cur->buf], sp.slots,
					     &sp.nslots);
			unlock_group(p, cur);
			cur = NULL;
		}
		if (!nx->n)
			break;
		if (swapin_wait(&sp, nx) < 0 && !err)
			err = nx->err;
		swapin_free_slots(&sp); /* no read in flight now */
		pages += nx->got;
		if (err) {
			unlock_group(p, nx);
			break;
		}
		cur = nx;
	}
out:
	swapin_pipe_close(&sp);
	MM_STAT_ADD(p, swapin_all_pages, pages);
	MM_STAT_ADD(p, swapin_all_ns, mm_now_ns() - t0);
	return err ? err : cancelled ? -ECANCELED : 0;
}
