/* virtio_balloon.c: a virtio balloon with statistics and free page reporting; dropped pages go back
 * to the host */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <linux/virtio_balloon.h>
#include <linux/virtio_ids.h>

#include "devices/dev.h"

#define BALLOON_PAGE 4096ULL
#define Q_INFLATE    0
#define Q_DEFLATE    1

/* Page frames one inflate or deflate chain may carry (Linux sends 256): each is a
 * syscall or two on the notifying vCPU, so a longer one breaks the device rather than
 * keep that vCPU, and the lock the control socket's `balloon` request takes, busy for
 * minutes (found by fuzz_virtq: 2 MiB of frame numbers took seconds). */
#define BALLOON_CHAIN_PFNS 4096

enum balloon_role { ROLE_NONE, ROLE_INFLATE, ROLE_DEFLATE, ROLE_STATS, ROLE_REPORTING };

struct vio_balloon {
	struct vio_dev vdev;
	struct vio_dev_ops ops;
	struct virtio_balloon_config cfg;
	struct vio_balloon_info info;
	bool stats_held; /* the driver's stats buffer, kept until the host wants fresh ones */
	uint16_t stats_head;
	unsigned stats_q;
};

static vio_balloon_drop_fn balloon_drop_hook;
static void *balloon_drop_arg;

void vio_balloon_set_drop_hook(vio_balloon_drop_fn fn, void *arg)
{
	balloon_drop_hook = fn;
	balloon_drop_arg = arg;
}

/*
 * Pages of [hva, hva+len) in memory: mincore() on the shared memfd mapping asks the page
 * cache, mapped or not, as the control socket's pagemap does without the pager. Bounded
 * by the range, where lseek(SEEK_HOLE) walks every page of data up to the next hole,
 * however far past the range: 7 ms for one page of a full 256 MiB memfd (fuzz_virtq).
 */
static uint64_t balloon_resident_pages(uint8_t *hva, uint64_t len)
{
	unsigned char vec[4096];
	uint64_t n = 0;

	for (uint64_t off = 0; off < len; off += sizeof(vec) * BALLOON_PAGE) {
		uint64_t chunk =
		    len - off < sizeof(vec) * BALLOON_PAGE ? len - off : sizeof(vec) * BALLOON_PAGE;

		if (mincore(hva + off, chunk, vec) < 0)
			return len / BALLOON_PAGE; /* cannot tell: count it all as freed */
		for (uint64_t i = 0; i < chunk / BALLOON_PAGE; i++)
			n += vec[i] & 1;
	}
	return n;
}

int64_t vio_balloon_drop(struct mm_mem *mem, gpa_t gpa, uint64_t len)
{
	uint8_t *hva = mm_gpa(mem, gpa, len);
	uint64_t held;

	if (!hva || (gpa | len) & (BALLOON_PAGE - 1))
		return -EINVAL;
	held = balloon_resident_pages(hva, len);
	/* the hole frees the memfd's pages (and unmaps them everywhere); DONTNEED then
	 * drops any PTEs left, so KVM's MMU notifiers zap the guest mappings too */
	if (fallocate(mem->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)gpa,
		      (off_t)len) < 0)
		return -errno;
	if (madvise(hva, len, MADV_DONTNEED) < 0)
		return -errno;
	return (int64_t)held;
}

/* The pages of [gpa, gpa+len) that held memory and were freed (0 if the drop failed: the
 * range was checked by the caller, so a failure only leaves the content). */
static uint64_t balloon_drop(struct vio_balloon *b, gpa_t gpa, uint64_t len)
{
	int64_t freed = balloon_drop_hook ? balloon_drop_hook(balloon_drop_arg, gpa, len)
					  : vio_balloon_drop(b->vdev.mem, gpa, len);

	mm_mark_written(b->vdev.mem, gpa, len); /* now zeros: changed, unseen by KVM's log */
	return freed > 0 ? (uint64_t)freed : 0;
}

/* Queue indexes are compacted: a queue whose feature was not negotiated takes no index. */
static enum balloon_role balloon_role(const struct vio_balloon *b, unsigned q)
{
	bool stats = b->vdev.driver_features & (1ULL << VIRTIO_BALLOON_F_STATS_VQ);
	bool rep = b->vdev.driver_features & (1ULL << VIRTIO_BALLOON_F_REPORTING);

	if (q == Q_INFLATE)
		return ROLE_INFLATE;
	if (q == Q_DEFLATE)
		return ROLE_DEFLATE;
	if (q == 2 && stats)
		return ROLE_STATS;
	if (rep && q == (stats ? 3u : 2u))
		return ROLE_REPORTING;
	return ROLE_NONE;
}

/* Inflate/deflate buffers are arrays of 32-bit page frame numbers. */
static bool balloon_pfns(struct vio_balloon *b, const struct vio_chain *c, bool inflate)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < c->nread; i++)
		n += c->b[i].len / 4;
	if (n > BALLOON_CHAIN_PFNS) {
		vio_broken(&b->vdev, "%s: %" PRIu64 " page frames in one buffer, more than %u",
			   inflate ? "inflate" : "deflate", n, BALLOON_CHAIN_PFNS);
		return false;
	}
	for (unsigned i = 0; i < c->nread; i++) {
		for (uint32_t o = 0; o + 4 <= c->b[i].len; o += 4) {
			uint32_t pfn;

			memcpy(&pfn, c->b[i].hva + o, 4);
			if (!mm_gpa(b->vdev.mem, (uint64_t)pfn * BALLOON_PAGE, BALLOON_PAGE)) {
				vio_broken(&b->vdev,
					   "%s: page frame 0x%" PRIx32 " lies outside "
					   "guest RAM",
					   inflate ? "inflate" : "deflate", pfn);
				return false;
			}
			if (inflate) {
				b->info.inflated_freed_pages +=
				    balloon_drop(b, (uint64_t)pfn * BALLOON_PAGE, BALLOON_PAGE);
				b->info.inflated_pages++;
			} else {
				b->info.deflated_pages++; /* it faults back in as zeros */
			}
		}
	}
	return true;
}

/* Free page reporting: each buffer is a free, page-aligned range of guest RAM. */
static bool balloon_report(struct vio_balloon *b, const struct vio_chain *c)
{
	for (unsigned i = 0; i < c->n; i++) {
		const struct vio_buf *v = &c->b[i];

		if ((v->gpa | v->len) & (BALLOON_PAGE - 1)) {
			vio_broken(&b->vdev,
				   "reported range 0x%" PRIx64 " + %" PRIu32 " is not page-aligned",
				   v->gpa, v->len);
			return false;
		}
		b->info.reported_freed_pages += balloon_drop(b, v->gpa, v->len);
		b->info.reported_bytes += v->len;
	}
	return true;
}

static void balloon_stats(struct vio_balloon *b, const struct vio_chain *c, unsigned q)
{
	struct virtio_balloon_stat s[VIRTIO_BALLOON_S_NR * 2];
	uint32_t len = c->nread ? c->b[0].len : 0;

	if (len > sizeof(s))
		len = sizeof(s);
	if (len)
		memcpy(s, c->b[0].hva, len); /* one fetch */
	for (uint32_t i = 0; i < len / sizeof(s[0]); i++)
		if (s[i].tag < sizeof(b->info.stats) / sizeof(b->info.stats[0]))
			b->info.stats[s[i].tag] = s[i].val;
	b->info.stats_updates++;
	b->stats_held = true;
	b->stats_head = c->head;
	b->stats_q = q;
}

static void balloon_notify(struct vio_dev *d, unsigned q)
{
	struct vio_balloon *b = d->priv;
	enum balloon_role role = balloon_role(b, q);
	struct vio_chain *c = malloc(sizeof(*c)); /* 8 KiB: not on a vCPU thread's stack */
	bool ok = true;
	int got;

	if (!c)
		return;
	while (ok && (got = vio_pop(d, q, c)) == 1) {
		switch (role) {
		case ROLE_INFLATE:
		case ROLE_DEFLATE:
			ok = balloon_pfns(b, c, role == ROLE_INFLATE);
			break;
		case ROLE_REPORTING:
			ok = balloon_report(b, c);
			break;
		case ROLE_STATS:
			if (b->stats_held) {
				vio_broken(d, "statistics: a second buffer while one is held");
				ok = false;
			} else {
				balloon_stats(b, c, q);
			}
			continue; /* held, not returned */
		case ROLE_NONE:
			vio_broken(d, "queue %u has no role with the negotiated features", q);
			ok = false;
			break;
		}
		if (ok)
			vio_push(d, q, c->head, 0);
	}
	vio_notify_used(d, q);
	free(c);
}

static void balloon_config_read(struct vio_dev *d, uint64_t off, uint8_t *data, unsigned size)
{
	struct vio_balloon *b = d->priv;

	memcpy(data, (uint8_t *)&b->cfg + off, size); /* off + size checked by the transport */
}

static void balloon_config_write(struct vio_dev *d, uint64_t off, const uint8_t *data,
				 unsigned size)
{
	struct vio_balloon *b = d->priv;

	if (off >= offsetof(struct virtio_balloon_config, actual) &&
	    off + size <= offsetof(struct virtio_balloon_config, actual) + 4) {
		memcpy((uint8_t *)&b->cfg + off, data, size);
		b->info.actual_pages = b->cfg.actual;
	}
}

static void balloon_reset(struct vio_dev *d)
{
	struct vio_balloon *b = d->priv;

	b->stats_held = false; /* the driver lets go of its buffer: none is held */
	b->cfg.actual = 0;
	b->info.actual_pages = 0; /* the target stays: a new driver inflates to it again */
}

static int balloon_setup(struct dev_ctx *c, void **state, const char **why)
{
	struct vio_balloon *b;
	int err;

	if (c->opts->no_balloon)
		return 0;
	b = calloc(1, sizeof(*b));
	if (!b) {
		*why = "out of memory";
		return -ENOMEM;
	}
	memset(b->info.stats, 0xff, sizeof(b->info.stats));
	b->ops = (struct vio_dev_ops){
	    .device_id = VIRTIO_ID_BALLOON,
	    .features = (1ULL << VIRTIO_BALLOON_F_STATS_VQ) | (1ULL << VIRTIO_BALLOON_F_REPORTING),
	    .nqueues = 4,
	    .config_len = sizeof(struct virtio_balloon_config),
	    .notify = balloon_notify,
	    .config_read = balloon_config_read,
	    .config_write = balloon_config_write,
	    .reset = balloon_reset,
	};
	b->vdev.ops = &b->ops;
	b->vdev.name = "virtio-balloon";
	b->vdev.priv = b;
	err = vio_mmio_register(c, &b->vdev, why);
	if (err) {
		free(b);
		return err;
	}
	*state = b;
	return 0;
}

static void balloon_teardown(void *state)
{
	struct vio_balloon *b = state;

	vio_mmio_unregister(&b->vdev);
	free(b);
}

int vio_balloon_set_target(struct vio_balloon *b, uint32_t pages)
{
	if ((uint64_t)pages * BALLOON_PAGE > b->vdev.mem->size)
		return -EINVAL;
	pthread_mutex_lock(&b->vdev.lock);
	b->cfg.num_pages = pages;
	b->info.target_pages = pages;
	vio_notify_config(&b->vdev);
	pthread_mutex_unlock(&b->vdev.lock);
	return 0;
}

int vio_balloon_request_stats(struct vio_balloon *b)
{
	int err = -EAGAIN;

	pthread_mutex_lock(&b->vdev.lock);
	if (b->stats_held && !b->vdev.broken) {
		b->stats_held = false;
		vio_push(&b->vdev, b->stats_q, b->stats_head, 0);
		vio_notify_used(&b->vdev, b->stats_q);
		err = 0;
	}
	pthread_mutex_unlock(&b->vdev.lock);
	return err;
}

void vio_balloon_get_info(struct vio_balloon *b, struct vio_balloon_info *out)
{
	pthread_mutex_lock(&b->vdev.lock);
	*out = b->info;
	pthread_mutex_unlock(&b->vdev.lock);
}

static void balloon_usage(FILE *f)
{
	fprintf(f,
		"  --no-balloon      no virtio-balloon (Linux guests have one by default: stats\n"
		"                    and free page reporting hand freed memory back)\n");
}

const struct dev_ops vio_balloon_ops = {
    .name = "virtio-balloon",
    .setup = balloon_setup,
    .teardown = balloon_teardown,
    .usage = balloon_usage,
};
