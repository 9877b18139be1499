/* dirty.c: KVM dirty tracking of guest RAM: the dirty bitmap or the per-vCPU dirty ring */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/vmm.h"

#ifndef KVM_CAP_DIRTY_LOG_RING_ACQ_REL
#define KVM_CAP_DIRTY_LOG_RING_ACQ_REL 223
#endif
#ifndef KVM_DIRTY_LOG_INITIALLY_SET
#define KVM_DIRTY_LOG_INITIALLY_SET (1 << 1)
#endif

/* 65536 entries per vCPU. Rings are drained when a consumer harvests, or when one
 * fills (KVM_EXIT_DIRTY_RING_FULL): a drain re-protects what it collected, so draining
 * on a timer would only make the guest pay its write faults more often. */
#define RING_BYTES_MAX (1u << 20)

const char *dirty_mode_name(enum dirty_mode m)
{
	static const char *const n[] = {"off", "bitmap", "ring", "auto"};

	return m <= DIRTY_AUTO ? n[m] : "?";
}

int dirty_parse_mode(const char *s, enum dirty_mode *m)
{
	for (int i = DIRTY_OFF; i <= DIRTY_AUTO; i++)
		if (!strcmp(s, dirty_mode_name((enum dirty_mode)i))) {
			*m = (enum dirty_mode)i;
			return 0;
		}
	return -EINVAL;
}

static int enable_cap(int fd, uint32_t cap, uint64_t arg)
{
	struct kvm_enable_cap ec = {.cap = cap, .args = {arg}};

	return ioctl(fd, KVM_ENABLE_CAP, &ec) < 0 ? -errno : 0;
}

static int set_slot_logging(struct vm *vm)
{
	struct kvm_userspace_memory_region r = {
	    .slot = 0,
	    .flags = KVM_MEM_LOG_DIRTY_PAGES,
	    .memory_size = vm->mem->size,
	    .userspace_addr = (uint64_t)(uintptr_t)vm->mem->hva,
	};

	return ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int dirty_init(struct dirty *d, struct vm *vm, enum dirty_mode want, const char **why)
{
	int ring = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	int manual = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	int err;

	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->npages = vm->mem->size / 4096;
	pthread_mutex_init(&d->lock, NULL);
	if (ring <= 0)
		ring = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING),
		d->ring_plain = true;
	/* auto: the bitmap. With manual protect a page is re-protected only when a consumer
	 * harvests; a ring re-protects at every drain, full rings included, and the guest
	 * pays a write fault per page each time (bench/README.md, "ring vs bitmap") */
	d->mode = want == DIRTY_AUTO ? DIRTY_BITMAP : want;
	if (d->mode == DIRTY_OFF)
		return 0;
	d->pending = calloc((d->npages + 63) / 64, 8);
	d->scratch = calloc((d->npages + 63) / 64, 8);
	d->pager_pending = calloc((d->npages + 63) / 64, 8);
	d->host = calloc((d->npages + 63) / 64, 8);
	*why = "out of memory";
	if (!d->pending || !d->scratch || !d->pager_pending || !d->host)
		return -ENOMEM;
	vm->mem->host_dirty = d->host; /* the VMM's own writes, which KVM does not log */
	if (d->mode == DIRTY_RING) {
		*why = "this host's KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING)";
		if (ring <= 0)
			return -ENOTSUP;
		d->ring_bytes = (unsigned)ring < RING_BYTES_MAX ? (unsigned)ring : RING_BYTES_MAX;
		d->ring_n = d->ring_bytes / sizeof(struct kvm_dirty_gfn);
		*why = "enabling the dirty ring";
		err = enable_cap(
		    vm->fd, d->ring_plain ? KVM_CAP_DIRTY_LOG_RING : KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
		    d->ring_bytes);
		if (err)
			return err;
	} else if (manual > 0) {
		/* clear-and-protect on our schedule, and no write-protect storm at start */
		d->manual = enable_cap(vm->fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
				       KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
					   (manual & KVM_DIRTY_LOG_INITIALLY_SET)) == 0;
	}
	*why = "setting KVM_MEM_LOG_DIRTY_PAGES on guest RAM";
	return set_slot_logging(vm);
}

/* Collect every vCPU ring's dirty entries into d->pending (d->lock held). */
static void ring_collect(struct dirty *d)
{
	for (unsigned v = 0; v < d->vm->ncpus; v++) {
		struct kvm_dirty_gfn *r = d->ring[v];

		while (r) {
			struct kvm_dirty_gfn *e = &r[d->fetch[v] % d->ring_n];
			uint64_t pfn;

			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
				break;
			pfn = e->offset;
			if (e->slot == 0 && pfn < d->npages) {
				d->pending[pfn / 64] |= 1ULL << (pfn % 64);
				d->pager_pending[pfn / 64] |= 1ULL << (pfn % 64);
			}
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
			d->fetch[v]++;
		}
	}
	ioctl(d->vm->fd, KVM_RESET_DIRTY_RINGS, 0);
}

void dirty_ring_full(struct dirty *d)
{
	pthread_mutex_lock(&d->lock);
	ring_collect(d);
	pthread_mutex_unlock(&d->lock);
}

int dirty_start(struct dirty *d, const char **why)
{
	if (d->mode != DIRTY_RING)
		return 0;
	*why = "mapping a vCPU's dirty ring";
	for (unsigned v = 0; v < d->vm->ncpus; v++) {
		void *r = mmap(NULL, d->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
			       d->vm->vcpus[v].fd, KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());

		if (r == MAP_FAILED)
			return -errno;
		d->ring[v] = r;
	}
	return 0;
}

/*
 * Fetch what KVM logged into both consumers' pending sets, then drain pend into out.
 * Lazy and not full: only what KVM reported that it had not reported before, and nothing
 * re-protected (d->held keeps what is left writable for dirty_reprotect).
 */
static int64_t harvest(struct dirty *d, uint64_t *pend, uint64_t *out, bool full)
{
	uint64_t words = (d->npages + 63) / 64;
	int64_t n = 0;

	if (d->mode == DIRTY_OFF)
		return -ENOTSUP;
	pthread_mutex_lock(&d->lock);
	if (d->mode == DIRTY_RING) {
		ring_collect(d);
	} else {
		struct kvm_dirty_log log = {.slot = 0, .dirty_bitmap = d->scratch};
		struct kvm_clear_dirty_log clr = {
		    .slot = 0, .num_pages = (uint32_t)d->npages, .dirty_bitmap = d->scratch};

		if (ioctl(d->vm->fd, KVM_GET_DIRTY_LOG, &log) < 0) {
			n = -errno;
			goto out;
		}
		if (d->manual && (full || !d->lazy) &&
		    ioctl(d->vm->fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0) {
			n = -errno;
			goto out;
		}
		if (d->lazy) /* report only what is new; remember what stays writable */
			for (uint64_t i = 0; i < words; i++) {
				uint64_t fresh = d->scratch[i] & ~d->held[i];

				d->held[i] = full ? 0 : d->held[i] | d->scratch[i];
				d->scratch[i] = fresh;
			}
		for (uint64_t i = 0; i < words; i++) {
			d->pending[i] |= d->scratch[i];
			d->pager_pending[i] |= d->scratch[i];
		}
	}
	for (uint64_t i = 0; i < words; i++) {
		/* and what the VMM wrote itself, for both consumers */
		uint64_t h = __atomic_exchange_n(&d->host[i], 0, __ATOMIC_RELAXED);

		d->pending[i] |= h;
		d->pager_pending[i] |= h;
		n += __builtin_popcountll(pend[i]);
		out[i] |= pend[i];
		pend[i] = 0;
	}
out:
	pthread_mutex_unlock(&d->lock);
	return n;
}

int64_t dirty_harvest(struct dirty *d, uint64_t *out)
{
	return harvest(d, d->pending, out, true);
}

int64_t dirty_harvest_pager(struct dirty *d, uint64_t *out)
{
	return harvest(d, d->pager_pending, out, false);
}

bool dirty_set_lazy(struct dirty *d)
{
	if (d->mode != DIRTY_BITMAP || !d->manual)
		return false;
	pthread_mutex_lock(&d->lock);
	if (!d->held)
		d->held = calloc((d->npages + 63) / 64, 8);
	d->lazy = d->held != NULL;
	pthread_mutex_unlock(&d->lock);
	return d->lazy;
}

/*
 * KVM_CLEAR_DIRTY_LOG of the held pages in [first, first+npages): their next write is
 * logged again. first must be a multiple of 64 (the pager passes 2 MiB regions). A page
 * written between the harvest that reported it and this call is not reported again: the
 * pager counted it young at that harvest and has just used that up.
 */
int dirty_reprotect(struct dirty *d, uint64_t first, uint64_t npages)
{
	uint64_t w0 = first / 64, nw, any = 0;
	int err = 0;

	if (first % 64)
		return -EINVAL; /* KVM_CLEAR_DIRTY_LOG wants whole bitmap words */
	if (!d->lazy || first >= d->npages)
		return 0;
	if (npages > d->npages - first)
		npages = d->npages - first; /* KVM allows an odd count only up to the slot's end */
	nw = (npages + 63) / 64;
	pthread_mutex_lock(&d->lock);
	for (uint64_t i = 0; i < nw; i++) {
		uint64_t m = d->held[w0 + i];

		if (i == nw - 1 && npages % 64)
			m &= (1ULL << (npages % 64)) - 1;
		d->scratch[i] = m;
		any |= m;
	}
	if (any) {
		struct kvm_clear_dirty_log clr = {.slot = 0,
						  .first_page = first,
						  .num_pages = (uint32_t)npages,
						  .dirty_bitmap = d->scratch};

		if (ioctl(d->vm->fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
			err = -errno; /* they stay held: writable, their writes unseen */
		else
			for (uint64_t i = 0; i < nw; i++)
				d->held[w0 + i] &= ~d->scratch[i];
	}
	pthread_mutex_unlock(&d->lock);
	return err;
}

void dirty_destroy(struct dirty *d)
{
	if (!d->vm)
		return;
	for (unsigned v = 0; v < UFVM_MAX_CPUS; v++)
		if (d->ring[v])
			munmap(d->ring[v], d->ring_bytes);
	if (d->vm->mem->host_dirty == d->host)
		d->vm->mem->host_dirty = NULL;
	free(d->host);
	free(d->pending);
	free(d->scratch);
	free(d->pager_pending);
	free(d->held);
	pthread_mutex_destroy(&d->lock);
	memset(d, 0, sizeof(*d));
}
