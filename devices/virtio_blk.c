/* virtio_blk.c: a virtio block device backed by a file, its I/O through io_uring */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>

#include "devices/dev.h"

#define BLK_SECTOR  512ULL
#define BLK_QDEPTH  64 /* io_uring entries; also requests taken per batch */
#define BLK_SEG_MAX (VIO_QUEUE_MAX - 2)
#define BLK_ID	    "ufvm-virtio-blk"
/* DISCARD and WRITE_ZEROES: one segment per request (one fallocate), up to 2 GiB */
#define BLK_ZERO_MAX   (1u << 22)
#define BLK_ZERO_ALIGN 8 /* sectors: a page, so a punch frees whole blocks */

struct blk_req {
	struct vio_chain chain;
	struct iovec iov[VIO_QUEUE_MAX];
	unsigned niov, first; /* iov[first..niov) still to transfer */
	uint64_t off;	      /* file offset of iov[first]; of the range for fallocate */
	uint64_t len;	      /* DISCARD, WRITE_ZEROES: bytes from off */
	int mode;	      /* their fallocate mode */
	uint32_t type, written;
	uint8_t status;
};

struct vio_blk {
	struct vio_dev vdev;
	int fd;
	bool ro;
	bool can_punch; /* the file or device takes FALLOC_FL_PUNCH_HOLE: DISCARD, WRITE_ZEROES */
	uint64_t sectors;
	struct io_uring ring;
	bool ring_ok; /* false once the ring failed and could not be re-created */
	struct blk_req req[BLK_QDEPTH];
	struct vio_dev_ops ops;
};

static void blk_config_read(struct vio_dev *d, uint64_t off, uint8_t *data, unsigned size)
{
	struct vio_blk *b = d->priv;
	struct virtio_blk_config cfg = {.capacity = b->sectors, .seg_max = BLK_SEG_MAX};

	if (b->can_punch) {
		cfg.max_discard_sectors = cfg.max_write_zeroes_sectors = BLK_ZERO_MAX;
		cfg.max_discard_seg = cfg.max_write_zeroes_seg = 1;
		cfg.discard_sector_alignment = BLK_ZERO_ALIGN;
		cfg.write_zeroes_may_unmap = 1;
	}

	if (off + size <= sizeof(cfg))
		memcpy(data, (uint8_t *)&cfg + off, size);
	else
		memset(data, 0, size);
}

/*
 * DISCARD and WRITE_ZEROES carry one 16-byte segment (max_*_seg is 1) in readable buffers:
 * sector, count and flags, copied out once. A discard punches a hole (it may, and reads
 * as zeros after); write zeroes punches one too when the driver allows unmapping, else
 * it zeroes the range in place, keeping it allocated.
 */
static void blk_parse_zero(struct vio_blk *b, struct blk_req *r)
{
	struct virtio_blk_discard_write_zeroes seg;
	uint8_t *p = (uint8_t *)&seg;
	size_t got = 0;

	for (unsigned i = 0; i < r->niov && got <= sizeof(seg); i++) {
		size_t n = r->iov[i].iov_len;

		if (got + n > sizeof(seg)) {
			got = sizeof(seg) + 1;
			break;
		}
		memcpy(p + got, r->iov[i].iov_base, n);
		got += n;
	}
	r->niov = 0; /* no data moves: one fallocate */
	if (!b->can_punch || b->ro) {
		r->status = b->ro ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_UNSUPP;
		return;
	}
	if (got != sizeof(seg) || seg.num_sectors > BLK_ZERO_MAX || seg.sector > b->sectors ||
	    seg.num_sectors > b->sectors - seg.sector) {
		r->status = VIRTIO_BLK_S_IOERR;
		return;
	}
	if (seg.flags & ~(uint32_t)VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ||
	    (r->type == VIRTIO_BLK_T_DISCARD && seg.flags)) {
		r->status = VIRTIO_BLK_S_UNSUPP;
		return;
	}
	r->off = seg.sector * BLK_SECTOR;
	r->len = (uint64_t)seg.num_sectors * BLK_SECTOR;
	r->mode =
	    r->type == VIRTIO_BLK_T_DISCARD || (seg.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
		? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
		: FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
}

/* Parse a chain into r; false when the framing is wrong (the device is then broken). */
static bool blk_parse(struct vio_blk *b, struct blk_req *r)
{
	struct vio_chain *c = &r->chain;
	struct virtio_blk_outhdr h;
	struct vio_buf *st;
	uint64_t bytes = 0;

	if (c->nread < 1 || c->b[0].len < sizeof(h) || c->n < 2 || !c->b[c->n - 1].writable ||
	    c->b[c->n - 1].len < 1) {
		vio_broken(&b->vdev,
			   "request %u: needs a readable 16-byte header and a writable "
			   "status byte",
			   c->head);
		return false;
	}
	memcpy(&h, c->b[0].hva, sizeof(h)); /* one fetch */
	st = &c->b[c->n - 1];
	r->type = h.type;
	r->niov = r->first = 0;
	r->written = 0;
	r->status = VIRTIO_BLK_S_OK;
	for (unsigned i = 1; i < c->n - 1; i++) {
		r->iov[r->niov++] = (struct iovec){c->b[i].hva, c->b[i].len};
		bytes += c->b[i].len;
	}
	/* The status is the last byte of the last buffer: a read fills the bytes before it,
	 * which count toward the transfer like any other (its size and its capacity check). */
	if (st->len > 1 && h.type == VIRTIO_BLK_T_IN) {
		r->iov[r->niov++] = (struct iovec){st->hva, st->len - 1};
		bytes += st->len - 1;
	}
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		/* all data buffers must go one way: readable for OUT, writable for IN */
		if ((h.type == VIRTIO_BLK_T_IN ? c->nread != 1 : c->nread != c->n - 1) ||
		    bytes % BLK_SECTOR || h.sector > b->sectors ||
		    bytes / BLK_SECTOR > b->sectors - h.sector)
			r->status = VIRTIO_BLK_S_IOERR;
		else if (h.type == VIRTIO_BLK_T_OUT && b->ro)
			r->status = VIRTIO_BLK_S_IOERR;
		r->off = h.sector * BLK_SECTOR;
		break;
	case VIRTIO_BLK_T_FLUSH:
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (c->nread != c->n - 1) /* the segment is read, only the status written */
			r->status = VIRTIO_BLK_S_IOERR;
		else
			blk_parse_zero(b, r);
		break;
	case VIRTIO_BLK_T_GET_ID:
		if (r->niov && c->nread == 1) {
			size_t n = r->iov[0].iov_len < VIRTIO_BLK_ID_BYTES ? r->iov[0].iov_len
									   : VIRTIO_BLK_ID_BYTES;

			memset(r->iov[0].iov_base, 0, n);
			memcpy(r->iov[0].iov_base, BLK_ID, n < sizeof(BLK_ID) ? n : sizeof(BLK_ID));
			r->written = (uint32_t)n;
		} else {
			r->status = VIRTIO_BLK_S_IOERR;
		}
		break;
	default:
		r->status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	return true;
}

/* Requests that move no data: one operation, done when it completes. */
static bool blk_no_data(const struct blk_req *r)
{
	return r->type == VIRTIO_BLK_T_FLUSH || r->type == VIRTIO_BLK_T_DISCARD ||
	       r->type == VIRTIO_BLK_T_WRITE_ZEROES;
}

static void blk_submit(struct vio_blk *b, struct blk_req *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);

	/* never NULL: at most BLK_QDEPTH requests exist and each has one sqe in flight */
	if (r->type == VIRTIO_BLK_T_FLUSH)
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
	else if (blk_no_data(r))
		io_uring_prep_fallocate(sqe, b->fd, r->mode, (off_t)r->off, (off_t)r->len);
	else if (r->type == VIRTIO_BLK_T_IN)
		io_uring_prep_readv(sqe, b->fd, r->iov + r->first, r->niov - r->first, r->off);
	else
		io_uring_prep_writev(sqe, b->fd, r->iov + r->first, r->niov - r->first, r->off);
	io_uring_sqe_set_data(sqe, r);
}

/* A completion: advance over a short transfer and requeue it; true when r is done. */
static bool blk_complete(struct vio_blk *b, struct blk_req *r, int res)
{
	if (res == -EAGAIN || res == -EINTR) {
		blk_submit(b, r);
		return false;
	}
	if (res < 0 || (res == 0 && !blk_no_data(r) && r->first < r->niov)) {
		r->status = VIRTIO_BLK_S_IOERR; /* an error, or EOF inside the capacity */
		return true;
	}
	if (blk_no_data(r))
		return true;
	if (r->type == VIRTIO_BLK_T_IN)
		r->written += (uint32_t)res;
	r->off += (uint64_t)res;
	while (res > 0 && r->first < r->niov) {
		struct iovec *v = &r->iov[r->first];
		size_t n = (size_t)res < v->iov_len ? (size_t)res : v->iov_len;

		v->iov_base = (uint8_t *)v->iov_base + n;
		v->iov_len -= n;
		res -= (int)n;
		if (!v->iov_len)
			r->first++;
	}
	if (r->first < r->niov) {
		blk_submit(b, r);
		return false;
	}
	return true;
}

/*
 * The ring failed (io_uring_enter returned a hard error) with requests in flight: break
 * the device, then cancel and wait for whatever I/O is still running and replace the
 * ring, so that no late completion can be matched to a request slot taken again later
 * and no late read lands in a buffer the guest got back. If no new ring can be made the
 * device stays without one: blk_notify breaks it again at each use after a reset.
 */
static void blk_ring_failed(struct vio_blk *b, int err)
{
	struct io_uring_sync_cancel_reg cancel = {.flags = IORING_ASYNC_CANCEL_ANY,
						  .timeout = {-1, -1}};
	int rc;

	vio_broken(&b->vdev, "io_uring_submit_and_wait: %s (requests in flight are dropped)",
		   strerror(-err));
	io_uring_register_sync_cancel(&b->ring, &cancel); /* best effort: exit cancels too */
	io_uring_queue_exit(&b->ring);
	rc = io_uring_queue_init(BLK_QDEPTH, &b->ring, 0);
	b->ring_ok = rc == 0;
	if (rc)
		fprintf(stderr, "ufvm: %s: io_uring_queue_init: %s (the disk stays unusable)\n",
			b->vdev.name, strerror(-rc));
}

/* Run a batch of parsed requests to completion, then hand them back; if the ring fails
 * the device is broken and, as for a malformed chain, nothing taken is handed back. */
static void blk_run(struct vio_blk *b, unsigned n, unsigned q)
{
	unsigned inflight = 0;

	for (unsigned i = 0; i < n; i++) {
		struct blk_req *r = &b->req[i];

		if (r->status == VIRTIO_BLK_S_OK && r->type != VIRTIO_BLK_T_GET_ID &&
		    (blk_no_data(r) || r->niov > 0)) {
			blk_submit(b, r);
			inflight++;
		}
	}
	while (inflight) {
		struct io_uring_cqe *cqe;
		int err = io_uring_submit_and_wait(&b->ring, 1);

		if (err < 0 && err != -EINTR && err != -EAGAIN) {
			blk_ring_failed(b, err);
			return;
		}
		while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
			struct blk_req *r = io_uring_cqe_get_data(cqe);
			int res = cqe->res;

			io_uring_cqe_seen(&b->ring, cqe);
			if (blk_complete(b, r, res))
				inflight--;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		struct blk_req *r = &b->req[i];
		struct vio_buf *st = &r->chain.b[r->chain.n - 1];

		st->hva[st->len - 1] = r->status;
		for (unsigned k = 0; k < r->chain.n; k++) /* data read in, and the status */
			if (r->chain.b[k].writable)
				mm_mark_written(b->vdev.mem, r->chain.b[k].gpa, r->chain.b[k].len);
		vio_push(&b->vdev, q, r->chain.head, r->written + 1);
	}
	if (n)
		vio_notify_used(&b->vdev, q);
}

static void blk_notify(struct vio_dev *d, unsigned q)
{
	struct vio_blk *b = d->priv;

	if (!b->ring_ok) {
		vio_broken(d, "queue %u: no io_uring since it failed", q);
		return;
	}
	for (;;) {
		unsigned n = 0;
		int got = 0;

		while (n < BLK_QDEPTH && (got = vio_pop(d, q, &b->req[n].chain)) == 1) {
			if (!blk_parse(b, &b->req[n]))
				return; /* broken: nothing taken is handed back */
			n++;
		}
		blk_run(b, n, q);
		if (got != 1 || d->broken)
			return;
	}
}

/* Whether open(2) failed because of the path the user gave, not because of the host. */
static bool blk_open_err_is_input(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
	case ENAMETOOLONG:
	case ELOOP:
	case EACCES:
	case EPERM:
	case EROFS:
	case EISDIR:
	case ETXTBSY:
	case ENXIO:
	case ENODEV:
		return true;
	default:
		return false;
	}
}

/* The disk's size in bytes: a regular file's length, or a block device's (its st_size is 0). */
static int blk_size(int fd, uint64_t *bytes, const char **why)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		*why = "fstat";
		return -errno;
	}
	if (S_ISREG(st.st_mode)) {
		*bytes = (uint64_t)st.st_size;
		return 0;
	}
	if (!S_ISBLK(st.st_mode)) {
		*why = "the disk is not a regular file or block device";
		return -EINVAL;
	}
	if (ioctl(fd, BLKGETSIZE64, bytes) < 0) {
		*why = "cannot read the block device's size (BLKGETSIZE64)";
		return -errno;
	}
	return 0;
}

static int blk_setup(struct dev_ctx *c, void **state, const char **why)
{
	struct vio_blk *b;
	uint64_t bytes;
	int err;

	if (!c->opts->disk)
		return 0;
	b = calloc(1, sizeof(*b));
	if (!b) {
		*why = "out of memory";
		return -ENOMEM;
	}
	b->ro = c->opts->disk_ro;
	b->fd = open(c->opts->disk, (b->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0) {
		err = -errno;
		*why = "cannot open the disk file";
		c->bad_input = blk_open_err_is_input(-err);
		goto err_free;
	}
	err = blk_size(b->fd, &bytes, why);
	if (err) {
		c->bad_input = err == -EINVAL; /* neither a file nor a block device */
		goto err_close;
	}
	b->sectors = bytes / BLK_SECTOR; /* a partial last sector is not offered */
	/* a punch past the end (KEEP_SIZE) changes nothing: it only asks whether the file
	 * system or device can punch at all */
	b->can_punch = !b->ro && fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					   (off_t)((bytes + 4095) & ~4095ULL), 4096) == 0;
	err = io_uring_queue_init(BLK_QDEPTH, &b->ring, 0);
	if (err) {
		*why = "io_uring_queue_init";
		goto err_close;
	}
	b->ring_ok = true;
	b->ops = (struct vio_dev_ops){
	    .device_id = VIRTIO_ID_BLOCK,
	    .features =
		(1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_FLUSH) |
		(b->ro ? 1ULL << VIRTIO_BLK_F_RO : 0) |
		(b->can_punch ? (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES)
			      : 0),
	    .nqueues = 1,
	    .config_len = sizeof(struct virtio_blk_config),
	    .notify = blk_notify,
	    .config_read = blk_config_read,
	};
	b->vdev.ops = &b->ops;
	b->vdev.name = "virtio-blk";
	b->vdev.priv = b;
	err = vio_mmio_register(c, &b->vdev, why);
	if (err)
		goto err_ring;
	*state = b;
	return 0;

err_ring:
	io_uring_queue_exit(&b->ring);
err_close:
	close(b->fd);
err_free:
	free(b);
	return err;
}

static void blk_teardown(void *state)
{
	struct vio_blk *b = state;

	vio_mmio_unregister(&b->vdev);
	if (b->ring_ok)
		io_uring_queue_exit(&b->ring);
	close(b->fd);
	free(b);
}

static void blk_usage(FILE *f)
{
	fprintf(f, "  --disk PATH[,ro]  virtio-blk disk backed by PATH (Linux guests; I/O through\n"
		   "                    io_uring; ',ro' makes it read-only)\n");
}

const struct dev_ops vio_blk_ops = {
    .name = "virtio-blk",
    .setup = blk_setup,
    .teardown = blk_teardown,
    .usage = blk_usage,
};
