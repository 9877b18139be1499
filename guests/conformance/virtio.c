/* virtio.c: drive each virtio-mmio device from the command line as a driver would, good and
 * malformed */
#include <linux/virtio_balloon.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "conf.h"

#define QSZ	    16
#define SCRATCH	    0x2000000ULL /* 2 MiB of RAM the balloon tests give away */
#define SCRATCH_LEN 0x200000ULL
#define SCRATCH2    0x2200000ULL /* 64 pages: given away between live neighbours */
#define POOL	    0x2400000ULL /* pages the host may ask for (conf.balloon_ctl) */
#define POOL_PAGES  256
#define UNTOUCHED   0x2800000ULL /* 1 MiB the guest never touches, reported free */

struct vq_mem {
	struct vring_desc desc[QSZ];
	struct {
		uint16_t flags, idx, ring[QSZ], used_event;
	} avail;
	uint8_t pad[4096 - 16 * QSZ - 6 - 2 * QSZ];
	struct {
		uint16_t flags, idx;
		struct vring_used_elem ring[QSZ];
		uint16_t avail_event;
	} used;
} __attribute__((aligned(4096)));

struct vdrv {
	uint64_t base;
	unsigned irq;
	uint16_t avail_idx[4], used_seen[4];
};

static struct vq_mem queues[4];
static uint8_t buf[3][4096] __attribute__((aligned(4096)));
#define BUF12 ((uint8_t *)buf + 4096) /* buf[1] and buf[2] as one 8 KiB buffer */

static uint32_t rd(const struct vdrv *d, uint32_t off)
{
	return mmio_read32(d->base + off);
}

static void wr(const struct vdrv *d, uint32_t off, uint32_t v)
{
	mmio_write32(d->base + off, v);
}

/* The initialisation sequence of the virtio 1.x spec (3.1.1) up to live queues, without
 * DRIVER_OK; false if the device refuses. */
static bool vd_setup(struct vdrv *d, uint64_t features, unsigned nq)
{
	uint64_t offered;

	wr(d, VIRTIO_MMIO_STATUS, 0);
	wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	offered = (uint64_t)rd(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	offered |= rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
	features = (features & offered) | (1ULL << VIRTIO_F_VERSION_1);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	wr(d, VIRTIO_MMIO_STATUS, 0x0b);
	if (!(rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK))
		return false;
	for (unsigned q = 0; q < nq; q++) {
		struct vq_mem *m = &queues[q];

		memset(m, 0, sizeof(*m));
		d->avail_idx[q] = d->used_seen[q] = 0;
		wr(d, VIRTIO_MMIO_QUEUE_SEL, q);
		if (rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX) < QSZ)
			return false;
		wr(d, VIRTIO_MMIO_QUEUE_NUM, QSZ);
		wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)(uint64_t)m->desc);
		wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
		wr(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)(uint64_t)&m->avail);
		wr(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
		wr(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(uint64_t)&m->used);
		wr(d, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
		wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	return true;
}

static bool vd_ready(struct vdrv *d)
{
	wr(d, VIRTIO_MMIO_STATUS, 0x0f);
	return rd(d, VIRTIO_MMIO_STATUS) == 0x0f;
}

static bool vd_init(struct vdrv *d, uint64_t features, unsigned nq)
{
	return vd_setup(d, features, nq) && vd_ready(d);
}

/* Put descriptors 0..n-1 (already filled) on the avail ring as one chain and notify. */
static void vd_kick(struct vdrv *d, unsigned q)
{
	struct vq_mem *m = &queues[q];

	m->avail.ring[d->avail_idx[q] % QSZ] = 0;
	barrier();
	m->avail.idx = ++d->avail_idx[q];
	barrier();
	wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

static void vd_desc(unsigned q, unsigned i, const void *addr, uint32_t len, uint16_t flags,
		    uint16_t next)
{
	queues[q].desc[i] = (struct vring_desc){(uint64_t)addr, len, flags, next};
}

/* Wait for the device to return a chain; the used length, or -1. The bound
 * is in TSC cycles, not loop turns: this code runs emulated at CPL 0 on PVM
 * hosts, where a loaded machine makes a fixed spin count far too short. */
static int64_t vd_wait(struct vdrv *d, unsigned q)
{
	volatile uint16_t *idx = &queues[q].used.idx;
	uint64_t deadline = __builtin_ia32_rdtsc() + 20000000000ULL; /* >= 5 s up to 4 GHz */

	while (__builtin_ia32_rdtsc() < deadline) {
		if (*idx != d->used_seen[q]) {
			barrier();
			return queues[q].used.ring[d->used_seen[q]++ % QSZ].len;
		}
	}
	return -1;
}

static bool vd_broken(const struct vdrv *d)
{
	return rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET;
}

/* Route the device's GSI to a vector on the boot LAPIC, masked by IF=0: it stays in IRR. */
static unsigned irq_route(unsigned irq)
{
	unsigned vec = 0x30 + irq;

	mmio_write32(0xfee000f0, 0x1ff); /* LAPIC software enable */
	mmio_write32(0xfec00000, 0x10 + 2 * irq);
	mmio_write32(0xfec00010, vec); /* fixed, physical, edge, high, unmasked */
	mmio_write32(0xfec00000, 0x11 + 2 * irq);
	mmio_write32(0xfec00010, 0);
	return vec;
}

/* Whether vec reaches the LAPIC's IRR. The device returns the chain first and signals its
 * irqfd after; KVM injects an IOAPIC-routed irqfd from a kernel worker, so the bit may land a
 * little after the used ring moves, as on real hardware: wait for it, bounded in TSC cycles. */
static bool irq_pending(unsigned vec)
{
	uint64_t deadline = __builtin_ia32_rdtsc() + 8000000000ULL; /* >= 2 s up to 4 GHz */

	do {
		if (mmio_read32(0xfee00200 + (vec / 32) * 0x10) & (1u << (vec % 32)))
			return true;
	} while (__builtin_ia32_rdtsc() < deadline);
	return false;
}

/* ---- virtio-blk ---- */

static uint8_t disk_byte(uint64_t off)
{
	return (uint8_t)((off >> 9) * 17 + off); /* the pattern tests/ writes into the disk */
}

/*
 * One request: header, `n` data buffers of 512 bytes (buf[1..]), then the status: a byte
 * of its own when stlen is 1, else the last byte of a writable buffer of stlen bytes right
 * after the data (the device fills the bytes before it: data and status in one buffer).
 * The status, or -1.
 */
static int blk_req_st(struct vdrv *d, uint32_t type, uint64_t sector, unsigned n, uint32_t stlen,
		      uint32_t *used)
{
	static struct virtio_blk_outhdr h;
	static volatile uint8_t status;
	uint16_t dflag = type == VIRTIO_BLK_T_OUT ? 0 : VRING_DESC_F_WRITE;
	volatile uint8_t *st = stlen == 1 ? &status : BUF12 + 512 * n + stlen - 1;
	int64_t len;

	h = (struct virtio_blk_outhdr){.type = type, .sector = sector};
	*st = 0xee;
	vd_desc(0, 0, &h, sizeof(h), VRING_DESC_F_NEXT, 1);
	for (unsigned i = 0; i < n; i++)
		vd_desc(0, 1 + i, buf[1] + 512 * i, type == VIRTIO_BLK_T_GET_ID ? 20 : 512,
			dflag | VRING_DESC_F_NEXT, (uint16_t)(2 + i));
	vd_desc(0, 1 + n, (const void *)(st + 1 - stlen), stlen, VRING_DESC_F_WRITE, 0);
	vd_kick(d, 0);
	len = vd_wait(d, 0);
	if (used)
		*used = (uint32_t)len;
	return len < 0 ? -1 : *st;
}

static int blk_req(struct vdrv *d, uint32_t type, uint64_t sector, unsigned n, uint32_t *used)
{
	return blk_req_st(d, type, sector, n, 1, used);
}

/* Whether buf[1..] holds `fill` from byte `from` to byte `to` (the device wrote nothing). */
static bool buf_untouched(unsigned from, unsigned to, uint8_t fill)
{
	bool same = true;

	for (unsigned i = from; i < to; i++)
		same &= BUF12[i] == fill;
	return same;
}

/*
 * A read's status may share its buffer with data (virtio 1.x lets the driver frame a
 * request freely): the bytes before the status byte are data like any other, so they
 * count toward the size checks and the capacity. The disk file tests/ writes ends in a
 * partial sector, past the capacity: a read that reaches it must fail and copy nothing.
 */
static void blk_status_framing(struct vdrv *d, uint64_t sectors)
{
	uint32_t used = 0;
	bool ok = true;

	memset(buf[1], 0, 1024);
	check(blk_req_st(d, VIRTIO_BLK_T_IN, 4, 0, 513, &used) == VIRTIO_BLK_S_OK && used == 513,
	      "virtio-blk: data and status in one 513-byte buffer read a sector, used length "
	      "513");
	for (unsigned i = 0; i < 512; i++)
		ok &= buf[1][i] == disk_byte(4 * 512 + i);
	check(ok, "virtio-blk: ... and the data read is the file's");

	memset(BUF12, 0xa5, 8192);
	if (!check(blk_req_st(d, VIRTIO_BLK_T_IN, sectors, 0, 4097, &used) == VIRTIO_BLK_S_IOERR &&
		       used == 1 && buf_untouched(0, 4096, 0xa5),
		   "virtio-blk: a 4097-byte status buffer at sector == capacity: IOERR, nothing "
		   "read (the file's partial last sector stays unseen)"))
		note("used length", used);
	memset(BUF12, 0xa5, 8192);
	if (!check(blk_req_st(d, VIRTIO_BLK_T_IN, sectors - 1, 1, 513, &used) ==
			   VIRTIO_BLK_S_IOERR &&
		       used == 1 && buf_untouched(0, 1024, 0xa5),
		   "virtio-blk: the last sector plus 512 data bytes in the status buffer: IOERR, "
		   "nothing read"))
		note("used length", used);
	memset(BUF12, 0xa5, 8192);
	if (!check(blk_req_st(d, VIRTIO_BLK_T_IN, 0, 0, 101, &used) == VIRTIO_BLK_S_IOERR &&
		       used == 1 && buf_untouched(0, 100, 0xa5),
		   "virtio-blk: 100 data bytes in the status buffer (not whole sectors): IOERR"))
		note("used length", used);
}

static bool blk_reinit(struct vdrv *d)
{
	return vd_init(d, 1ULL << VIRTIO_BLK_F_FLUSH, 1);
}

/* Each malformed request must break the device, which says so and recovers on reset. */
static void blk_malformed(struct vdrv *d)
{
	static const char *const what[] = {
	    "malformed: descriptor next index >= queue size breaks the device",
	    "malformed: buffer outside guest RAM breaks the device",
	    "malformed: a descriptor loop breaks the device",
	    "malformed: available index far ahead breaks the device",
	    "malformed: an indirect descriptor (not negotiated) breaks the device",
	    "malformed: a readable buffer after a writable one breaks the device",
	};
	static struct virtio_blk_outhdr h = {.type = VIRTIO_BLK_T_IN};
	static uint8_t st;

	for (unsigned t = 0; t < 6; t++) {
		uint16_t before;
		bool isr;

		blk_reinit(d);
		vd_desc(0, 0, &h, sizeof(h), VRING_DESC_F_NEXT, 1);
		vd_desc(0, 1, buf[1], 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
		vd_desc(0, 2, &st, 1, VRING_DESC_F_WRITE, 0);
		if (t == 0)
			queues[0].desc[1].next = 200;
		if (t == 1)
			queues[0].desc[1].addr = 0x7fff00000000ULL;
		if (t == 2)
			queues[0].desc[2] = (struct vring_desc){
			    (uint64_t)&st, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0};
		if (t == 3)
			d->avail_idx[0] += 100;
		if (t == 4)
			queues[0].desc[1].flags |= VRING_DESC_F_INDIRECT;
		if (t == 5)
			queues[0].desc[2].flags = VRING_DESC_F_NEXT, queues[0].desc[2].next = 3,
			vd_desc(0, 3, &h, sizeof(h), 0, 0);
		before = queues[0].used.idx;
		vd_kick(d, 0);
		isr = rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG;
		check(vd_broken(d) && isr && queues[0].used.idx == before, what[t]);
	}
	blk_reinit(d);
	wr(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(d, VIRTIO_MMIO_STATUS, 0);
	wr(d, VIRTIO_MMIO_STATUS, 0x0b);
	wr(d, VIRTIO_MMIO_QUEUE_NUM, QSZ);
	wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, 0xfff00000);
	wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0xff);
	wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
	check(vd_broken(d) && !rd(d, VIRTIO_MMIO_QUEUE_READY),
	      "malformed: a ring outside guest RAM is refused and breaks the device");
	wr(d, VIRTIO_MMIO_STATUS, 0);
	check(rd(d, VIRTIO_MMIO_STATUS) == 0, "reset clears DEVICE_NEEDS_RESET");
}

static void conf_blk(struct vdrv *d, const char *c)
{
	uint64_t sectors = arg_u64(c, "conf.disk_sectors", 0);
	bool ro = arg_u64(c, "conf.disk_ro", 0);
	uint64_t cap, ok = 1;
	uint32_t used = 0;
	unsigned vec = irq_route(d->irq);

	if (!check(blk_reinit(d), "virtio-blk: initialisation (VERSION_1, FEATURES_OK, queue)"))
		return;
	wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	check(!!(rd(d, VIRTIO_MMIO_DEVICE_FEATURES) & (1u << VIRTIO_BLK_F_RO)) == ro,
	      "virtio-blk: VIRTIO_BLK_F_RO offered exactly for a read-only disk");
	cap = rd(d, VIRTIO_MMIO_CONFIG) | (uint64_t)rd(d, VIRTIO_MMIO_CONFIG + 4) << 32;
	if (!check(cap == sectors, "virtio-blk: capacity is the file's size in sectors"))
		note("capacity", cap);
	memset(buf[1], 0, 1024);
	check(blk_req(d, VIRTIO_BLK_T_IN, 0, 2, &used) == VIRTIO_BLK_S_OK && used == 1025,
	      "virtio-blk: read sectors 0-1 (two data descriptors), used length 1025");
	for (unsigned i = 0; i < 1024; i++)
		ok &= buf[1][i] == disk_byte(i);
	check(ok, "virtio-blk: the data read is the file's");
	check(rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING,
	      "virtio-blk: used-buffer interrupt status set");
	if (!check(irq_pending(vec), "virtio-blk: its interrupt reached the LAPIC through the "
				     "IOAPIC (irqfd)"))
		note("irq", d->irq);
	wr(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	check(!(rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING),
	      "virtio-blk: interrupt acknowledged");
	memset(buf[1], 0x5a, 512);
	if (ro) {
		check(blk_req(d, VIRTIO_BLK_T_OUT, 2, 1, 0) == VIRTIO_BLK_S_IOERR,
		      "virtio-blk: a write to a read-only disk fails with IOERR");
	} else {
		check(blk_req(d, VIRTIO_BLK_T_OUT, 2, 1, 0) == VIRTIO_BLK_S_OK,
		      "virtio-blk: write sector 2");
		memset(buf[1], 0, 512);
		check(blk_req(d, VIRTIO_BLK_T_IN, 2, 1, 0) == VIRTIO_BLK_S_OK &&
			  buf[1][0] == 0x5a && buf[1][511] == 0x5a,
		      "virtio-blk: read back what was written");
		check(blk_req(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0) == VIRTIO_BLK_S_OK,
		      "virtio-blk: flush");
	}
	check(blk_req(d, VIRTIO_BLK_T_IN, sectors, 1, 0) == VIRTIO_BLK_S_IOERR,
	      "virtio-blk: a read past the end fails with IOERR (the device stays usable)");
	blk_status_framing(d, sectors);
	check(blk_req(d, VIRTIO_BLK_T_GET_ID, 0, 1, 0) == VIRTIO_BLK_S_OK &&
		  !memcmp(buf[1], "ufvm-virtio-blk", 15),
	      "virtio-blk: GET_ID");
	check(blk_req(d, 77, 0, 0, 0) == VIRTIO_BLK_S_UNSUPP,
	      "virtio-blk: an unknown request type is UNSUPP");
	check(!vd_broken(d), "virtio-blk: not broken by well-formed requests");
	blk_malformed(d);
	check(blk_reinit(d) && blk_req(d, VIRTIO_BLK_T_IN, 0, 1, 0) == VIRTIO_BLK_S_OK &&
		  buf[1][5] == disk_byte(5),
	      "virtio-blk: works again after the reset");
}

/* ---- virtio-balloon ---- */

static void balloon_send(struct vdrv *d, unsigned q, const void *p, uint32_t len, uint16_t flags)
{
	vd_desc(q, 0, p, len, flags, 0);
	vd_kick(d, q);
}

static bool scratch_zero(void)
{
	bool zero = true;

	for (uint64_t a = SCRATCH; a < SCRATCH + SCRATCH_LEN; a += 4096)
		zero &= *(volatile uint64_t *)a == 0;
	return zero;
}

static void scratch_fill(void)
{
	for (uint64_t a = SCRATCH; a < SCRATCH + SCRATCH_LEN; a += 4096)
		*(volatile uint64_t *)a = a | 1;
}

/* Checksum of the words of pages [first, first+n) of the second scratch area. */
static uint64_t scratch2_sum(unsigned first, unsigned n, bool skip_given)
{
	uint64_t sum = 0;

	for (unsigned p = first; p < first + n; p++) {
		if (skip_given && ((p >= 10 && p < 14) || (p >= 32 && p < 48)))
			continue;
		for (unsigned w = 0; w < 512; w += 8)
			sum = sum * 31 + *(volatile uint64_t *)(SCRATCH2 + p * 4096ULL + w * 8);
	}
	return sum;
}

/*
 * Give away pages 10-13 (inflate) and 32-47 (a free page report) of 64 written
 * pages, and never touch them again: the host's pager must count them as
 * never touched (linux_conformance.py reads --stats=json), and every other
 * page must keep its content.
 */
static void balloon_neighbours(struct vdrv *d)
{
	static uint32_t pfns[4];
	uint64_t before;

	for (unsigned p = 0; p < 64; p++)
		for (unsigned w = 0; w < 512; w += 8)
			*(volatile uint64_t *)(SCRATCH2 + p * 4096ULL + w * 8) =
			    (p * 0x9e3779b97f4a7c15ULL) ^ w;
	before = scratch2_sum(0, 64, true);
	for (unsigned i = 0; i < 4; i++)
		pfns[i] = (uint32_t)(SCRATCH2 >> 12) + 10 + i;
	balloon_send(d, 0, pfns, sizeof(pfns), 0);
	check(vd_wait(d, 0) >= 0, "virtio-balloon: inflate of 4 pages between live ones returned");
	balloon_send(d, 3, (const void *)(SCRATCH2 + 32 * 4096), 16 * 4096, VRING_DESC_F_WRITE);
	check(vd_wait(d, 3) >= 0, "virtio-balloon: report of 16 pages between live ones returned");
	check(scratch2_sum(0, 64, true) == before,
	      "virtio-balloon: pages next to given-away ones keep their content");
}

static void conf_balloon(struct vdrv *d)
{
	static uint32_t pfns[4];
	static struct virtio_balloon_stat stats[2];
	uint32_t actual = 3;

	if (!check(
		vd_init(d,
			(1ULL << VIRTIO_BALLOON_F_STATS_VQ) | (1ULL << VIRTIO_BALLOON_F_REPORTING),
			4),
		"virtio-balloon: initialisation with stats and free page reporting"))
		return;
	check(rd(d, VIRTIO_MMIO_CONFIG) == 0, "virtio-balloon: target (num_pages) is 0 at boot");
	mmio_write32(d->base + VIRTIO_MMIO_CONFIG + 4, actual);
	check(rd(d, VIRTIO_MMIO_CONFIG + 4) == actual, "virtio-balloon: actual is writable");
	mmio_write32(d->base + VIRTIO_MMIO_CONFIG + 4, 0);

	stats[0] = (struct virtio_balloon_stat){VIRTIO_BALLOON_S_MEMFREE, 12345};
	stats[1] = (struct virtio_balloon_stat){VIRTIO_BALLOON_S_MEMTOT, 67890};
	balloon_send(d, 2, stats, sizeof(stats), 0);
	check(vd_wait(d, 2) < 0, "virtio-balloon: the statistics buffer is held by the device");

	scratch_fill();
	for (unsigned i = 0; i < 4; i++)
		pfns[i] = (uint32_t)(SCRATCH >> 12) + i;
	balloon_send(d, 0, pfns, sizeof(pfns), 0);
	check(vd_wait(d, 0) >= 0, "virtio-balloon: inflate of 4 pages returned");
	check(*(volatile uint64_t *)SCRATCH == 0 && *(volatile uint64_t *)(SCRATCH + 0x3000) == 0 &&
		  *(volatile uint64_t *)(SCRATCH + 0x4000) != 0,
	      "virtio-balloon: inflated pages were dropped (read as zeros), others kept");
	balloon_send(d, 1, pfns, sizeof(pfns), 0);
	check(vd_wait(d, 1) >= 0, "virtio-balloon: deflate returned");

	scratch_fill();
	balloon_send(d, 3, (const void *)SCRATCH, SCRATCH_LEN, VRING_DESC_F_WRITE);
	check(vd_wait(d, 3) >= 0, "virtio-balloon: free page report of 2 MiB returned");
	check(scratch_zero(), "virtio-balloon: reported free pages were dropped (read as zeros)");
	balloon_neighbours(d);
	/* a fresh Linux reports RAM it never touched: the host frees nothing and says so */
	balloon_send(d, 3, (const void *)UNTOUCHED, 0x100000, VRING_DESC_F_WRITE);
	check(vd_wait(d, 3) >= 0, "virtio-balloon: free page report of 1 MiB never touched");

	pfns[0] = 0xfffff000;
	balloon_send(d, 0, pfns, 4, 0);
	check(vd_broken(d),
	      "virtio-balloon: malformed: a page frame outside RAM breaks the device");
	wr(d, VIRTIO_MMIO_STATUS, 0);
}

/* Pages [first, first+n) of the control pool (and its guard pages) hold their pattern. */
static bool pool_intact(unsigned first, unsigned n)
{
	bool ok = true;

	for (unsigned p = first; p < first + n; p++)
		for (unsigned w = 0; w < 512; w += 8)
			ok &= *(volatile uint64_t *)(POOL + p * 4096ULL + w * 8) == p * 7919 + w;
	return ok;
}

/*
 * conf.balloon_ctl=1 (tests/e2e_balloon.py): follow the host's target, set
 * through the control socket, out of a pool of POOL_PAGES written pages, until
 * it went up and back to 0; answer each statistics request with a fresh
 * buffer. The pool pages never given away, and 16 guard pages after the pool,
 * must keep their content.
 */
static void balloon_ctl(struct vdrv *d)
{
	static uint32_t pfns[POOL_PAGES];
	static struct virtio_balloon_stat st = {VIRTIO_BALLOON_S_MEMFREE, 1000};
	uint64_t deadline = __builtin_ia32_rdtsc() + 80000000000ULL;
	uint32_t actual = 0, peak = 0, target;

	/* as Linux's probe does: the first statistics buffer is queued and notified before
	 * DRIVER_OK; the device takes it when the driver becomes ready (the host checks) */
	if (!check(vd_setup(d, 1ULL << VIRTIO_BALLOON_F_STATS_VQ, 3),
		   "virtio-balloon: re-initialisation with statistics only"))
		return;
	balloon_send(d, 2, &st, sizeof(st), 0);
	if (!check(vd_ready(d), "virtio-balloon: DRIVER_OK after a notification"))
		return;
	for (unsigned p = 0; p < POOL_PAGES + 16; p++)
		for (unsigned w = 0; w < 512; w += 8)
			*(volatile uint64_t *)(POOL + p * 4096ULL + w * 8) = p * 7919 + w;
	puts_("conformance: balloon: waiting for the host's target\n");
	while (__builtin_ia32_rdtsc() < deadline && !(peak && !actual)) {
		if (queues[2].used.idx != d->used_seen[2]) { /* the host wants fresh stats */
			d->used_seen[2]++;
			st.val++;
			balloon_send(d, 2, &st, sizeof(st), 0);
		}
		target = rd(d, VIRTIO_MMIO_CONFIG);
		target = target > POOL_PAGES ? POOL_PAGES : target;
		if (target == actual)
			continue;
		for (uint32_t i = 0; i < (target > actual ? target - actual : actual - target); i++)
			pfns[i] = (uint32_t)(POOL >> 12) + (target > actual ? actual : target) + i;
		balloon_send(d, target > actual ? 0 : 1, pfns,
			     4 * (target > actual ? target - actual : actual - target), 0);
		if (!check(vd_wait(d, target > actual ? 0 : 1) >= 0,
			   "virtio-balloon: inflate/deflate to the host's target returned"))
			return;
		actual = target;
		peak = actual > peak ? actual : peak;
		mmio_write32(d->base + VIRTIO_MMIO_CONFIG + 4, actual);
		puts_("conformance: balloon: actual ");
		put_dec(actual);
		puts_("\n");
	}
	check(peak && !actual, "virtio-balloon: followed the host's target up and back to 0");
	check(pool_intact(peak, POOL_PAGES + 16 - peak),
	      "virtio-balloon: pages next to the balloon keep their content");
}

void conf_virtio(const char *c)
{
	unsigned found = 0, want = (unsigned)arg_u64(c, "conf.vdevs", 0);

	/* every "virtio_mmio.device=<size>@<base>:<irq>" token, parsed as Linux does */
	for (const char *p = c; *p;) {
		while (*p == ' ')
			p++;
		if (!memcmp(p, "virtio_mmio.device=", 19)) {
			struct vdrv d = {0};
			const char *e;
			uint32_t id;

			parse_u64(p + 19, &e); /* size, with its K suffix */
			if (*e == 'K' || *e == 'k')
				e++;
			if (*e == '@')
				d.base = parse_u64(e + 1, &e);
			if (*e == ':')
				d.irq = (unsigned)parse_u64(e + 1, &e);
			found++;
			check(rd(&d, VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976 &&
				  rd(&d, VIRTIO_MMIO_VERSION) == 2,
			      "virtio-mmio: magic 'virt', version 2");
			id = rd(&d, VIRTIO_MMIO_DEVICE_ID);
			if (id == 2)
				conf_blk(&d, c);
			else if (id == 5) {
				conf_balloon(&d);
				if (arg_u64(c, "conf.balloon_ctl", 0))
					balloon_ctl(&d);
			} else
				check(false, "virtio-mmio: a known device id");
		}
		while (*p && *p != ' ')
			p++;
	}
	check(found == want, "virtio-mmio: every device announced on the command line");
}
