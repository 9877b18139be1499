/* test_virtq.c: hostile virtqueues: every malformed chain breaks the device, nothing escapes RAM
 * (no KVM) */
#include <errno.h>
#include <string.h>

#include <linux/virtio_ring.h>

#include "devices/dev.h"
#include "tests/check.h"

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

	/* the balloon's drop: a punched page reads back as zeros */
	memset(mm_gpa(&mem, BUF, 8192), 0xab, 8192);
	CHECK(vio_balloon_drop(&mem, BUF, 4096) == 0);
	CHECK(*(uint8_t *)mm_gpa(&mem, BUF, 1) == 0 &&
	      *(uint8_t *)mm_gpa(&mem, BUF + 4096, 1) == 0xab);
	CHECK(vio_balloon_drop(&mem, BUF + 1, 4096) == -EINVAL);
	CHECK(vio_balloon_drop(&mem, mem.size, 4096) == -EINVAL);

	mm_mem_destroy(&mem);
	CHECK_DONE();
}
