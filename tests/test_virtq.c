/* test_virtq.c: hostile virtqueues: every malformed chain breaks the device, nothing escapes RAM;
 * virtio-blk's request checks and a failing io_uring (no KVM) */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/virtio_ring.h>

#include "devices/dev.h"
#include "tests/check.h"

/*
 * virtio_blk.c compiled in, to drive blk_notify() without KVM, with one seam:
 * io_uring_submit_and_wait() submits and then fails when submit_fail is set. The only
 * symbol virtio_blk.o exports, vio_blk_ops, is then defined here first, so the linker
 * never pulls the library's copy.
 */
static int submit_fail;
static int test_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
#define io_uring_submit_and_wait(ring, n) test_submit_and_wait(ring, n)
#include "devices/virtio_blk.c"
#undef io_uring_submit_and_wait
/* virtio_balloon.c likewise, to drive balloon_notify(): every symbol it exports is
 * defined here first */
#include "devices/virtio_balloon.c"

static int test_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
	int err = submit_fail;

	if (!err)
		return io_uring_submit_and_wait(ring, wait_nr);
	submit_fail = 0;
	io_uring_submit(ring); /* the requests are in flight, and then the ring "fails" */
	return err;
}

#define QS    8
#define DESC  0x1000ULL
#define AVAIL 0x2000ULL
#define USED  0x3000ULL
#define BUF   0x10000ULL

static struct mm_mem mem;
static struct vio_dev_ops ops = {.device_id = 2, .nqueues = 1};
static struct vio_dev dev;
static struct vio_chain chain;

static void set_desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc d = {addr, len, flags, next};

	mm_copy_to_guest(&mem, DESC + 16ULL * i, &d, sizeof(d));
}

/* Fresh device and queue; one chain head 0 published at avail index 1. */
static void fresh(uint16_t avail_idx)
{
	uint16_t head = 0;

	memset(&dev, 0, sizeof(dev));
	dev.ops = &ops;
	dev.name = "test-dev";
	dev.mem = &mem;
	dev.irq.fd = -1;
	pthread_mutex_init(&dev.lock, NULL);
	dev.q[0] =
	    (struct virtq){.size = QS, .ready = true, .desc = DESC, .avail = AVAIL, .used = USED};
	memset(mm_gpa(&mem, 0, 0x4000), 0, 0x4000);
	mm_copy_to_guest(&mem, AVAIL + 4, &head, 2);
	mm_copy_to_guest(&mem, AVAIL + 2, &avail_idx, 2);
}

static bool breaks(void)
{
	return vio_pop(&dev, 0, &chain) == -EIO && dev.broken &&
	       (dev.status & 0x40) /* DEVICE_NEEDS_RESET */ && vio_pop(&dev, 0, &chain) == -EIO;
}

/* A virtio-blk device over fd with `sectors` of capacity, its queue 0 as fresh() sets it. */
static struct vio_blk *blk_new(int fd, uint64_t sectors)
{
	struct vio_blk *b = calloc(1, sizeof(*b));

	if (!b || io_uring_queue_init(BLK_QDEPTH, &b->ring, 0) < 0)
		abort();
	fresh(1);
	b->ring_ok = true;
	b->fd = fd;
	b->sectors = sectors;
	b->ops = (struct vio_dev_ops){.device_id = 2, .nqueues = 1, .notify = blk_notify};
	b->vdev = dev;
	b->vdev.ops = &b->ops;
	b->vdev.name = "test-blk";
	b->vdev.priv = b;
	pthread_mutex_init(&b->vdev.lock, NULL);
	return b;
}

/* One IN request for `sector`: header at BUF, then data buffers (lens), the last one
 * writable with the status in its last byte. */
static void blk_in(uint64_t sector, const uint32_t *lens, unsigned n)
{
	struct virtio_blk_outhdr h = {.type = VIRTIO_BLK_T_IN, .sector = sector};
	uint64_t at = BUF + 4096;

	mm_copy_to_guest(&mem, BUF, &h, sizeof(h));
	set_desc(0, BUF, sizeof(h), VRING_DESC_F_NEXT, 1);
	for (unsigned i = 0; i < n; i++) {
		set_desc(1 + i, at, lens[i],
			 VRING_DESC_F_WRITE | (i + 1 < n ? VRING_DESC_F_NEXT : 0),
			 (uint16_t)(2 + i));
		at += lens[i];
	}
}

static struct vring_used_elem used_elem(unsigned i, uint16_t *idx)
{
	struct vring_used_elem e;

	mm_copy_from_guest(&mem, idx, USED + 2, 2);
	mm_copy_from_guest(&mem, &e, USED + 4 + 8ULL * i, sizeof(e));
	return e;
}

static bool guest_bytes(uint64_t gpa, uint64_t len, uint8_t v)
{
	const uint8_t *p = mm_gpa(&mem, gpa, len);

	for (uint64_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* A read's status buffer may carry data before the status byte: those bytes count toward
 * the whole-sector and capacity checks, so the file's partial last sector stays unseen. */
static void test_blk_status_framing(void)
{
	char path[] = "/tmp/ufvm-test-virtq-XXXXXX";
	uint8_t disk[8 * 512 + 100];
	int fd = mkstemp(path);
	struct vio_blk *b;
	struct vring_used_elem e;
	uint16_t idx;

	for (unsigned i = 0; i < sizeof(disk); i++)
		disk[i] = (uint8_t)(i * 13 + 1);
	CHECK(fd >= 0 && write(fd, disk, sizeof(disk)) == (ssize_t)sizeof(disk));
	unlink(path);

	b = blk_new(fd, sizeof(disk) / 512); /* 8 sectors, as blk_setup would say */
	blk_in(0, (uint32_t[]){513}, 1);     /* sector 0 and the status in one buffer */
	blk_notify(&b->vdev, 0);
	e = used_elem(0, &idx);
	CHECK(idx == 1 && e.len == 513 && !b->vdev.broken);
	CHECK(!memcmp(mm_gpa(&mem, BUF + 4096, 512), disk, 512));
	CHECK(*(uint8_t *)mm_gpa(&mem, BUF + 4096 + 512, 1) == VIRTIO_BLK_S_OK);

	b->vdev.q[0].last_avail = b->vdev.q[0].used_idx = 0;
	memset(mm_gpa(&mem, BUF + 4096, 8192), 0xa5, 8192);
	blk_in(8, (uint32_t[]){4097}, 1); /* at the capacity: 4096 bytes of data, then status */
	blk_notify(&b->vdev, 0);
	e = used_elem(0, &idx);
	CHECK(e.len == 1 && guest_bytes(BUF + 4096, 4096, 0xa5));
	CHECK(*(uint8_t *)mm_gpa(&mem, BUF + 4096 + 4096, 1) == VIRTIO_BLK_S_IOERR);

	b->vdev.q[0].last_avail = b->vdev.q[0].used_idx = 0;
	memset(mm_gpa(&mem, BUF + 4096, 8192), 0xa5, 8192);
	blk_in(7, (uint32_t[]){512, 513}, 2); /* the last sector, and one more in the status */
	blk_notify(&b->vdev, 0);
	e = used_elem(0, &idx);
	CHECK(e.len == 1 && guest_bytes(BUF + 4096, 1024, 0xa5));
	CHECK(*(uint8_t *)mm_gpa(&mem, BUF + 4096 + 1024, 1) == VIRTIO_BLK_S_IOERR);

	b->vdev.q[0].last_avail = b->vdev.q[0].used_idx = 0;
	blk_in(0, (uint32_t[]){101}, 1); /* 100 data bytes: not a whole sector */
	blk_notify(&b->vdev, 0);
	e = used_elem(0, &idx);
	CHECK(e.len == 1 && *(uint8_t *)mm_gpa(&mem, BUF + 4096 + 100, 1) == VIRTIO_BLK_S_IOERR);
	CHECK(!b->vdev.broken);
	blk_teardown(b);
}

/* One DISCARD or WRITE_ZEROES request: header, the 16-byte segment (len bytes of it), status. */
static uint8_t blk_zero_req(struct vio_blk *b, uint32_t type, uint64_t sector, uint32_t n,
			    uint32_t flags, uint32_t len)
{
	struct virtio_blk_outhdr h = {.type = type};
	struct virtio_blk_discard_write_zeroes seg = {sector, n, flags};
	uint16_t idx;

	b->vdev.q[0].last_avail = b->vdev.q[0].used_idx = 0;
	mm_copy_to_guest(&mem, BUF, &h, sizeof(h));
	mm_copy_to_guest(&mem, BUF + 64, &seg, sizeof(seg));
	set_desc(0, BUF, sizeof(h), VRING_DESC_F_NEXT, 1);
	set_desc(1, BUF + 64, len, VRING_DESC_F_NEXT, 2);
	set_desc(2, BUF + 128, 1, VRING_DESC_F_WRITE, 0);
	blk_notify(&b->vdev, 0);
	CHECK(used_elem(0, &idx).len == 1 && idx == 1);
	return *(uint8_t *)mm_gpa(&mem, BUF + 128, 1);
}

/* Discard and write zeroes: the range reads as zeros (a hole, or zeroed in place when the
 * driver does not allow unmapping), nothing else changes, bad requests fail. */
static void test_blk_discard(void)
{
	char path[] = "/tmp/ufvm-test-virtq-XXXXXX";
	static uint8_t disk[64 * 512], back[64 * 512];
	int fd = mkstemp(path);
	struct vio_blk *b;
	struct stat st;

	memset(disk, 0x5a, sizeof(disk));
	CHECK(fd >= 0 && write(fd, disk, sizeof(disk)) == (ssize_t)sizeof(disk));
	unlink(path);
	b = blk_new(fd, 64);
	b->can_punch =
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, sizeof(disk), 4096) == 0;
	if (!b->can_punch) {
		printf("test_virtq: discard not tested: /tmp cannot punch holes\n");
		blk_teardown(b);
		return;
	}
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_DISCARD, 8, 8, 0, 16) == VIRTIO_BLK_S_OK);
	memset(disk + 8 * 512, 0, 8 * 512);
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_WRITE_ZEROES, 24, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
			   16) == VIRTIO_BLK_S_OK);
	memset(disk + 24 * 512, 0, 8 * 512);
	CHECK(fstat(fd, &st) == 0 && st.st_blocks * 512 == (off_t)sizeof(disk) - 8192);
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_WRITE_ZEROES, 40, 3, 0, 16) == VIRTIO_BLK_S_OK);
	memset(disk + 40 * 512, 0, 3 * 512);
	CHECK(fstat(fd, &st) == 0 && st.st_blocks * 512 == (off_t)sizeof(disk) - 8192);
	CHECK(pread(fd, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	CHECK(!memcmp(back, disk, sizeof(disk)));
	/* past the capacity, a short or long segment, a flag on a discard, unknown flags */
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_DISCARD, 60, 5, 0, 16) == VIRTIO_BLK_S_IOERR);
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_DISCARD, 65, 0, 0, 16) == VIRTIO_BLK_S_IOERR);
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_DISCARD, 0, 8, 0, 12) == VIRTIO_BLK_S_IOERR);
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_DISCARD, 0, 8, 0, 32) == VIRTIO_BLK_S_IOERR);
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_DISCARD, 0, 8, 1, 16) == VIRTIO_BLK_S_UNSUPP);
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 2, 16) == VIRTIO_BLK_S_UNSUPP);
	/* a read-only disk refuses both; one that cannot punch does not know them */
	b->ro = true;
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_DISCARD, 0, 8, 0, 16) == VIRTIO_BLK_S_IOERR);
	b->ro = false;
	b->can_punch = false;
	CHECK(blk_zero_req(b, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0, 16) == VIRTIO_BLK_S_UNSUPP);
	CHECK(pread(fd, back, sizeof(back), 0) == (ssize_t)sizeof(back));
	CHECK(!memcmp(back, disk, sizeof(disk)) && !b->vdev.broken);
	blk_teardown(b);
}

/*
 * io_uring_enter fails hard with a read in flight (from an empty pipe, so it stays in
 * flight): the device breaks, hands nothing back, and gets a new ring. The old read must
 * never complete: no completion on the new ring, no byte taken from the pipe, none
 * written into the guest's buffer. Without a ring the device breaks again after a reset.
 */
static void test_blk_ring_failure(void)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = {.tv_nsec = 200 * 1000 * 1000};
	uint8_t data[512], back[600];
	int p[2];
	struct vio_blk *b;
	uint16_t idx;

	CHECK(pipe(p) == 0);
	b = blk_new(p[0], 1 << 20);
	memset(mm_gpa(&mem, BUF + 4096, 513), 0xa5, 513);
	blk_in(0, (uint32_t[]){512, 1}, 2);
	submit_fail = -EIO;
	blk_notify(&b->vdev, 0);
	used_elem(0, &idx);
	CHECK(b->vdev.broken && idx == 0 && b->ring_ok);

	memset(data, 0x3c, sizeof(data));
	CHECK(write(p[1], data, sizeof(data)) == (ssize_t)sizeof(data));
	CHECK(io_uring_wait_cqe_timeout(&b->ring, &cqe, &ts) == -ETIME);
	CHECK(guest_bytes(BUF + 4096, 513, 0xa5));
	close(p[1]);
	CHECK(read(p[0], back, sizeof(back)) == (ssize_t)sizeof(data));

	/* a ring that could not be re-created is never touched again */
	io_uring_queue_exit(&b->ring);
	b->ring_ok = false;
	b->vdev.broken = false; /* as after the driver's reset */
	b->vdev.q[0].last_avail = b->vdev.q[0].used_idx = 0;
	blk_notify(&b->vdev, 0);
	used_elem(0, &idx);
	CHECK(b->vdev.broken && idx == 0);
	blk_teardown(b); /* closes p[0], skips the ring */
}

/* An inflate chain of more frames than BALLOON_CHAIN_PFNS breaks the balloon before it
 * drops any (found by fuzz_virtq: megabytes of frame numbers kept a vCPU for seconds);
 * one of exactly that many is served. */
static void test_balloon_chain_cap(void)
{
	static struct vio_balloon b;
	uint32_t pfns[BALLOON_CHAIN_PFNS + 1];
	uint16_t idx;

	for (unsigned i = 0; i < BALLOON_CHAIN_PFNS + 1; i++)
		pfns[i] = (uint32_t)(BUF / 4096 + 16 + i % 64);
	for (unsigned n = BALLOON_CHAIN_PFNS; n <= BALLOON_CHAIN_PFNS + 1; n++) {
		fresh(1);
		memset(&b, 0, sizeof(b));
		b.ops =
		    (struct vio_dev_ops){.device_id = 5, .nqueues = 2, .notify = balloon_notify};
		b.vdev = dev;
		b.vdev.ops = &b.ops;
		b.vdev.priv = &b;
		b.vdev.name = "test-balloon";
		memset(mm_gpa(&mem, BUF + 16 * 4096, 64 * 4096), 0xab, 64 * 4096);
		mm_copy_to_guest(&mem, BUF, pfns, 4ULL * n);
		set_desc(0, BUF, 4 * n, 0, 0);
		balloon_notify(&b.vdev, 0);
		used_elem(0, &idx);
		if (n == BALLOON_CHAIN_PFNS) {
			CHECK(!b.vdev.broken && idx == 1 && b.info.inflated_pages == n);
			CHECK(b.info.inflated_freed_pages == 64);
		} else {
			CHECK(b.vdev.broken && idx == 0 && b.info.inflated_pages == 0);
			CHECK(*(uint8_t *)mm_gpa(&mem, BUF + 16 * 4096, 1) == 0xab);
		}
	}
}

int main(void)
{
	uint16_t used_idx;

	if (mm_mem_create(&mem, 16ULL << 20) < 0)
		return 1;

	/* a good chain: readable header, writable data, writable status */
	fresh(1);
	set_desc(0, BUF, 16, VRING_DESC_F_NEXT, 1);
	set_desc(1, BUF + 512, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	set_desc(2, BUF + 1024, 1, VRING_DESC_F_WRITE, 0);
	CHECK(vio_pop(&dev, 0, &chain) == 1);
	CHECK(chain.n == 3 && chain.nread == 1 && chain.head == 0);
	CHECK(chain.b[1].hva == mm_gpa(&mem, BUF + 512, 512) && chain.b[1].writable);
	CHECK(vio_pop(&dev, 0, &chain) == 0); /* empty now */
	vio_push(&dev, 0, 0, 513);
	mm_copy_from_guest(&mem, &used_idx, USED + 2, 2);
	CHECK(used_idx == 1 && !dev.broken);

	/* the last byte of RAM is fine, one more is not */
	fresh(1);
	set_desc(0, mem.size - 4096, 4096, 0, 0);
	CHECK(vio_pop(&dev, 0, &chain) == 1);
	fresh(1);
	set_desc(0, mem.size - 4096, 4097, 0, 0);
	CHECK(breaks());

	fresh(1); /* next index out of range */
	set_desc(0, BUF, 16, VRING_DESC_F_NEXT, QS);
	CHECK(breaks());

	fresh(1); /* head index out of range */
	{
		uint16_t head = 300;

		mm_copy_to_guest(&mem, AVAIL + 4, &head, 2);
	}
	CHECK(breaks());

	fresh(1); /* a loop: 0 -> 1 -> 0 */
	set_desc(0, BUF, 16, VRING_DESC_F_NEXT, 1);
	set_desc(1, BUF, 16, VRING_DESC_F_NEXT, 0);
	CHECK(breaks());

	fresh(1); /* address + length wraps around */
	set_desc(0, ~0ULL - 8, 64, 0, 0);
	CHECK(breaks());

	fresh(QS + 1); /* avail index more than a queue ahead */
	CHECK(breaks());

	fresh(1); /* indirect, never negotiated */
	set_desc(0, BUF, 16, VRING_DESC_F_INDIRECT, 0);
	CHECK(breaks());

	fresh(1); /* readable after writable */
	set_desc(0, BUF, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(1, BUF, 16, 0, 0);
	CHECK(breaks());

	/* reported once: the first violation of this device instance only */
	fresh(1);
	set_desc(0, BUF, 16, VRING_DESC_F_NEXT, QS);
	CHECK(breaks() && dev.violations == 1);
	CHECK(vio_pop(&dev, 0, &chain) == -EIO && dev.violations == 1);

	/* the balloon's drop: a punched page reads back as zeros; it counts the pages that
	 * held memory, not those never touched (or dropped already) */
	memset(mm_gpa(&mem, BUF, 8192), 0xab, 8192);
	CHECK(vio_balloon_drop(&mem, BUF, 4096) == 1);
	CHECK(*(uint8_t *)mm_gpa(&mem, BUF, 1) == 0 &&
	      *(uint8_t *)mm_gpa(&mem, BUF + 4096, 1) == 0xab);
	/* reading the hole through the shared mapping gave it a (zero) page again */
	CHECK(vio_balloon_drop(&mem, BUF, 2 * 4096) == 2);
	CHECK(vio_balloon_drop(&mem, BUF, 2 * 4096) == 0);
	CHECK(vio_balloon_drop(&mem, BUF + 1, 4096) == -EINVAL);
	CHECK(vio_balloon_drop(&mem, mem.size, 4096) == -EINVAL);

	/* a page of data well inside a populated memfd is counted on its own */
	memset(mm_gpa(&mem, 0, 4 << 20), 0x11, 4 << 20);
	CHECK(vio_balloon_drop(&mem, 1 << 20, 4096) == 1);
	CHECK(vio_balloon_drop(&mem, (1 << 20) - 4096, 3 * 4096) == 2);
	CHECK(vio_balloon_drop(&mem, (1 << 20) - 4096, 3 * 4096) == 0);

	test_balloon_chain_cap();
	test_blk_status_framing();
	test_blk_discard();
	test_blk_ring_failure();

	mm_mem_destroy(&mem);
	CHECK_DONE();
}
