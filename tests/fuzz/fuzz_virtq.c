/* fuzz_virtq.c: the virtio-mmio transport and its virtqueue walker (devices/virtio_mmio.c)
 * under a hostile driver, with virtio-blk, the balloon or a bare device behind it (no KVM) */
#include <errno.h>
#include <liburing.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "tests/fuzz/fuzz.h"

/*
 * The back-ends compiled in, as tests/test_virtq.c does, for their private structs:
 * every symbol virtio_blk.o and virtio_balloon.o export is defined here first, so
 * the library's copies are never pulled.
 */
#include "devices/virtio_balloon.c"
#include "devices/virtio_blk.c"

#define FUZZ_RAM     (2ULL << 20)
#define DISK_SECTORS 64

enum { DEV_BARE, DEV_BLK, DEV_BALLOON, DEV_KINDS };

static struct mm_mem mem = {.memfd = -1};
static struct vio_chain chain;
static struct vio_dev bare;
static struct vio_dev_ops bare_ops;
static struct vio_blk blk;
static struct vio_balloon balloon;
static uint8_t disk_image[DISK_SECTORS * BLK_SECTOR];

/* A chain as vio_walk promises it: 1..size buffers inside guest RAM, readable first. */
static void check_chain(const struct vio_dev *d, unsigned q, const struct vio_chain *c)
{
	FUZZ_CHECK(c->n >= 1 && c->n <= d->q[q].size && c->nread <= c->n);
	FUZZ_CHECK(c->head < d->q[q].size);
	for (unsigned i = 0; i < c->n; i++) {
		const struct vio_buf *b = &c->b[i];

		FUZZ_CHECK(b->writable == (i >= c->nread));
		FUZZ_CHECK(b->gpa <= mem.size && b->len <= mem.size - b->gpa);
		FUZZ_CHECK(b->hva == mem.hva + b->gpa);
	}
}

/* The bare device: takes every chain, reads what it may read, fills what it may write
 * (a buffer past guest RAM's end hits a guard page), and hands it back. */
static void bare_notify(struct vio_dev *d, unsigned q)
{
	int got;

	while ((got = vio_pop(d, q, &chain)) == 1) {
		uint32_t written = 0;
		uint8_t sum = 0;

		check_chain(d, q, &chain);
		for (unsigned i = 0; i < chain.n; i++) {
			struct vio_buf *b = &chain.b[i];

			if (b->writable) {
				memset(b->hva, 0xee, b->len);
				written += b->len;
			} else {
				for (uint32_t k = 0; k < b->len; k++)
					sum += b->hva[k];
			}
		}
		(void)sum;
		vio_push(d, q, chain.head, written);
	}
	FUZZ_CHECK(got == 0 || (got == -EIO && d->broken));
	vio_notify_used(d, q);
}

static void bare_config_read(struct vio_dev *d, uint64_t off, uint8_t *data, unsigned size)
{
	FUZZ_CHECK(off + size <= d->ops->config_len);
	memset(data, 0x5a, size);
}

void fuzz_init(void)
{
	int fd = memfd_create("fuzz-disk", MFD_CLOEXEC);

	fuzz_mem_create(&mem, FUZZ_RAM);
	bare_ops = (struct vio_dev_ops){.device_id = 42,
					.features = 1ULL << 3,
					.nqueues = 2,
					.config_len = 12,
					.notify = bare_notify,
					.config_read = bare_config_read};
	bare = (struct vio_dev){.ops = &bare_ops, .name = "bare", .mem = &mem, .irq.fd = -1};

	FUZZ_NEED(fd >= 0 && ftruncate(fd, sizeof(disk_image)) == 0, "a memfd disk");
	for (unsigned i = 0; i < sizeof(disk_image); i++)
		disk_image[i] = (uint8_t)(i * 31 + 7);
	blk.fd = fd;
	blk.sectors = DISK_SECTORS;
	blk.can_punch = true; /* a memfd punches holes: DISCARD and WRITE_ZEROES offered */
	FUZZ_NEED(io_uring_queue_init(BLK_QDEPTH, &blk.ring, 0) == 0, "io_uring");
	blk.ring_ok = true;
	blk.ops = (struct vio_dev_ops){
	    .device_id = VIRTIO_ID_BLOCK,
	    .features = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_FLUSH) |
			(1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES),
	    .nqueues = 1,
	    .config_len = sizeof(struct virtio_blk_config),
	    .notify = blk_notify,
	    .config_read = blk_config_read};
	blk.vdev = (struct vio_dev){
	    .ops = &blk.ops, .name = "virtio-blk", .priv = &blk, .mem = &mem, .irq.fd = -1};

	balloon.ops = (struct vio_dev_ops){.device_id = VIRTIO_ID_BALLOON,
					   .features = (1ULL << VIRTIO_BALLOON_F_STATS_VQ) |
						       (1ULL << VIRTIO_BALLOON_F_REPORTING),
					   .nqueues = 4,
					   .config_len = sizeof(struct virtio_balloon_config),
					   .notify = balloon_notify,
					   .config_read = balloon_config_read,
					   .config_write = balloon_config_write,
					   .reset = balloon_reset};
	balloon.vdev = (struct vio_dev){.ops = &balloon.ops,
					.name = "virtio-balloon",
					.priv = &balloon,
					.mem = &mem,
					.irq.fd = -1};
	pthread_mutex_init(&bare.lock, NULL);
	pthread_mutex_init(&blk.vdev.lock, NULL);
	pthread_mutex_init(&balloon.vdev.lock, NULL);
}

/* A device as just set up: transport state cleared, back-end state back to its start. */
static struct vio_dev *fresh(unsigned kind)
{
	struct vio_dev *d = kind == DEV_BLK	  ? &blk.vdev
			    : kind == DEV_BALLOON ? &balloon.vdev
						  : &bare;

	d->status = d->isr = d->config_gen = 0;
	d->dev_feat_sel = d->drv_feat_sel = d->queue_sel = 0;
	d->driver_features = 0;
	memset(d->q, 0, sizeof(d->q));
	d->broken = false;
	d->violations = 0;
	if (kind == DEV_BLK) {
		FUZZ_NEED(pwrite(blk.fd, disk_image, sizeof(disk_image), 0) ==
			      (ssize_t)sizeof(disk_image),
			  "resetting the disk");
		if (!blk.ring_ok) {
			FUZZ_NEED(io_uring_queue_init(BLK_QDEPTH, &blk.ring, 0) == 0, "io_uring");
			blk.ring_ok = true;
		}
	} else if (kind == DEV_BALLOON) {
		memset(&balloon.cfg, 0, sizeof(balloon.cfg));
		memset(&balloon.info, 0, sizeof(balloon.info));
		memset(balloon.info.stats, 0xff, sizeof(balloon.info.stats));
		balloon.stats_held = false;
		balloon.stats_head = 0;
		balloon.stats_q = 0;
	}
	return d;
}

static void reg_write(struct vio_dev *d, uint64_t off, uint32_t v)
{
	uint8_t b[4];

	memcpy(b, &v, 4);
	vio_mmio_io(d, off, b, 4, true);
}

/* What the transport promises after every access: a broken device says so in its
 * status, and a live queue's rings lie whole and aligned in guest RAM. */
static void check_device(const struct vio_dev *d)
{
	if (d->broken)
		FUZZ_CHECK(d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	for (unsigned q = 0; q < VIO_MAX_QUEUES; q++) {
		const struct virtq *v = &d->q[q];
		uint64_t s = v->size;

		if (!v->ready)
			continue;
		FUZZ_CHECK(q < d->ops->nqueues);
		FUZZ_CHECK(s >= 1 && s <= VIO_QUEUE_MAX && !(s & (s - 1)));
		FUZZ_CHECK(!(v->desc & 15) && !(v->avail & 1) && !(v->used & 3));
		FUZZ_CHECK(mm_gpa(&mem, v->desc, 16 * s) && mm_gpa(&mem, v->avail, 6 + 2 * s) &&
			   mm_gpa(&mem, v->used, 6 + 8 * s));
	}
}

/* Driver-side helpers: what a driver writes to a queue it set up (ignored when the
 * queue's rings are not in guest RAM, as a driver's stores would fault). */
static void put_desc(struct vio_dev *d, struct fuzz_in *in)
{
	struct virtq *q = &d->q[fuzz_u8(in) % VIO_MAX_QUEUES];
	uint16_t idx = fuzz_u16(in);
	struct vring_desc desc;

	desc.addr = fuzz_u64(in);
	desc.len = fuzz_u32(in);
	desc.flags = fuzz_u16(in);
	desc.next = fuzz_u16(in);
	if (q->size)
		mm_copy_to_guest(&mem, q->desc + 16ULL * (idx % q->size), &desc, sizeof(desc));
}

static void put_avail(struct vio_dev *d, struct fuzz_in *in)
{
	struct virtq *q = &d->q[fuzz_u8(in) % VIO_MAX_QUEUES];
	uint16_t head = fuzz_u16(in), idx;

	if (!q->size || mm_copy_from_guest(&mem, &idx, q->avail + 2, 2) < 0)
		return;
	mm_copy_to_guest(&mem, q->avail + 4 + 2ULL * (idx % q->size), &head, 2);
	idx++;
	mm_copy_to_guest(&mem, q->avail + 2, &idx, 2);
}

static void setup_queue(struct vio_dev *d, struct fuzz_in *in)
{
	uint32_t sel = fuzz_u8(in) % VIO_MAX_QUEUES, num = fuzz_u16(in);
	uint32_t desc = fuzz_u32(in), avail = fuzz_u32(in), used = fuzz_u32(in);

	reg_write(d, VIRTIO_MMIO_QUEUE_SEL, sel);
	reg_write(d, VIRTIO_MMIO_QUEUE_NUM, num);
	reg_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, desc);
	reg_write(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	reg_write(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail);
	reg_write(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
	reg_write(d, VIRTIO_MMIO_QUEUE_USED_LOW, used);
	reg_write(d, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
	reg_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
}

static void driver_init(struct vio_dev *d, struct fuzz_in *in)
{
	uint64_t features = fuzz_u64(in);

	reg_write(d, VIRTIO_MMIO_STATUS, 0);
	reg_write(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	reg_write(d, VIRTIO_MMIO_STATUS,
		  VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		      VIRTIO_CONFIG_S_FEATURES_OK);
	reg_write(d, VIRTIO_MMIO_STATUS,
		  VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		      VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

/*
 * The first byte picks the device; then a list of steps, each a tag byte and its
 * fields: 0 a 32-bit register write, 1 any access (size 1/2/4/8, read or write) in
 * the window, 2 bytes into guest RAM, 3 a descriptor, 4 an available entry,
 * 5 a queue notify, 6 a whole queue set up, 7 the driver's initialisation.
 */
void fuzz_one(const uint8_t *data, size_t len)
{
	struct fuzz_in in = {data, len};
	unsigned kind = fuzz_u8(&in) % DEV_KINDS;
	struct vio_dev *d = fresh(kind);

	memset(mem.hva, 0, mem.size);
	while (fuzz_more(&in)) {
		switch (fuzz_u8(&in) & 7) {
		case 0: {
			uint64_t off = fuzz_u8(&in) * 4ULL;

			reg_write(d, off, fuzz_u32(&in));
			break;
		}
		case 1: {
			uint64_t off = fuzz_u16(&in) & 0xfff;
			uint8_t how = fuzz_u8(&in), buf[8];
			unsigned size = 1u << (how & 3);
			uint64_t v = fuzz_u64(&in);

			memcpy(buf, &v, 8);
			vio_mmio_io(d, off, buf, size, how & 4);
			break;
		}
		case 2: {
			uint64_t gpa = fuzz_u32(&in) % mem.size;
			size_t n = fuzz_u8(&in) + 1u, got;
			const uint8_t *b = fuzz_bytes(&in, n, &got);

			if (got > mem.size - gpa)
				got = mem.size - gpa;
			memcpy(mem.hva + gpa, b, got);
			break;
		}
		case 3:
			put_desc(d, &in);
			break;
		case 4:
			put_avail(d, &in);
			break;
		case 5:
			reg_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, fuzz_u8(&in) % (VIO_MAX_QUEUES + 1));
			break;
		case 6:
			setup_queue(d, &in);
			break;
		case 7:
			driver_init(d, &in);
			break;
		}
		check_device(d);
	}
}
