/* virtio_mmio.c: the virtio-mmio transport (version 2) and checked split virtqueues */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "devices/dev.h"

#define VIO_VENDOR 0x6d766675 /* "ufvm" */

void vio_broken(struct vio_dev *d, const char *fmt, ...)
{
	va_list ap;

	if (!d->broken && d->violations++ == 0) {
		fprintf(stderr, "ufvm: %s: device broken: ", d->name);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fprintf(stderr, " (the device ignores its queues until the driver resets it)\n");
	}
	if (d->broken)
		return;
	d->broken = true;
	d->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	vio_notify_config(d);
}

void vio_notify_config(struct vio_dev *d)
{
	d->isr |= VIRTIO_MMIO_INT_CONFIG;
	d->config_gen++;
	dev_irq_raise(&d->irq);
}

void vio_notify_used(struct vio_dev *d, unsigned q)
{
	const uint16_t *flags = mm_gpa(d->mem, d->q[q].avail, 2);

	if (flags && (__atomic_load_n(flags, __ATOMIC_ACQUIRE) & VRING_AVAIL_F_NO_INTERRUPT))
		return;
	d->isr |= VIRTIO_MMIO_INT_VRING;
	dev_irq_raise(&d->irq);
}

/* Copy descriptor `i` (i < size, checked by the caller) into *out: no double fetch. */
static void vio_read_desc(const struct vio_dev *d, const struct virtq *q, uint16_t i,
			  struct vring_desc *out)
{
	memcpy(out, mm_gpa(d->mem, q->desc + (uint64_t)i * sizeof(*out), sizeof(*out)),
	       sizeof(*out));
}

static int vio_walk(struct vio_dev *d, unsigned qi, uint16_t head, struct vio_chain *c)
{
	const struct virtq *q = &d->q[qi];
	uint16_t i = head;
	struct vring_desc desc;

	c->head = head;
	c->n = c->nread = 0;
	for (;;) {
		struct vio_buf *b;

		if (i >= q->size) {
			vio_broken(d, "queue %u: descriptor index %u >= queue size %u", qi, i,
				   q->size);
			return -EIO;
		}
		if (c->n >= q->size) {
			vio_broken(d,
				   "queue %u: descriptor chain from %u longer than the queue "
				   "size %u (a loop?)",
				   qi, head, q->size);
			return -EIO;
		}
		vio_read_desc(d, q, i, &desc);
		if (desc.flags & VRING_DESC_F_INDIRECT) {
			vio_broken(d, "queue %u: descriptor %u is indirect (not negotiated)", qi,
				   i);
			return -EIO;
		}
		b = &c->b[c->n];
		b->gpa = desc.addr;
		b->len = desc.len;
		b->writable = desc.flags & VRING_DESC_F_WRITE;
		b->hva = mm_gpa(d->mem, desc.addr, desc.len);
		if (!b->hva) {
			vio_broken(d,
				   "queue %u: descriptor %u: buffer 0x%" PRIx64 " + %" PRIu32
				   " bytes lies outside guest RAM",
				   qi, i, (uint64_t)desc.addr, desc.len);
			return -EIO;
		}
		if (!b->writable && c->nread != c->n) {
			vio_broken(d,
				   "queue %u: descriptor %u: readable buffer after a writable one",
				   qi, i);
			return -EIO;
		}
		c->nread += !b->writable;
		c->n++;
		if (!(desc.flags & VRING_DESC_F_NEXT))
			return 0;
		i = desc.next;
	}
}

int vio_pop(struct vio_dev *d, unsigned qi, struct vio_chain *out)
{
	struct virtq *q = &d->q[qi];
	const uint16_t *ring;
	uint16_t avail_idx, pending, head;

	if (d->broken)
		return -EIO;
	if (qi >= VIO_MAX_QUEUES || !q->ready)
		return 0;
	/* validated when the queue was made ready, so these cannot fail */
	ring = mm_gpa(d->mem, q->avail, 4 + 2ULL * q->size);
	avail_idx = __atomic_load_n(&ring[1], __ATOMIC_ACQUIRE);
	pending = (uint16_t)(avail_idx - q->last_avail);
	if (pending > q->size) {
		vio_broken(d, "queue %u: available index moved %u entries ahead (queue size %u)",
			   qi, pending, q->size);
		return -EIO;
	}
	if (!pending)
		return 0;
	head = __atomic_load_n(&ring[2 + q->last_avail % q->size], __ATOMIC_RELAXED);
	if (vio_walk(d, qi, head, out) < 0)
		return -EIO;
	q->last_avail++;
	return 1;
}

void vio_push(struct vio_dev *d, unsigned qi, uint16_t head, uint32_t len)
{
	struct virtq *q = &d->q[qi];
	uint8_t *used = mm_gpa(d->mem, q->used, 4 + 8ULL * q->size);
	struct vring_used_elem e = {.id = head, .len = len};

	if (!used || !q->ready)
		return;
	memcpy(used + 4 + 8ULL * (q->used_idx % q->size), &e, sizeof(e));
	q->used_idx++;
	__atomic_store_n((uint16_t *)(used + 2), q->used_idx, __ATOMIC_RELEASE);
	mm_mark_written(d->mem, q->used, 4 + 8ULL * q->size); /* KVM's log sees no host write */
}

static void vio_reset(struct vio_dev *d)
{
	memset(d->q, 0, sizeof(d->q));
	d->status = d->isr = 0;
	d->dev_feat_sel = d->drv_feat_sel = d->queue_sel = 0;
	d->driver_features = 0;
	d->broken = false;
	if (d->ops->reset)
		d->ops->reset(d);
}

static uint64_t vio_offered(const struct vio_dev *d)
{
	return d->ops->features | (1ULL << VIRTIO_F_VERSION_1);
}

/* QueueReady = 1: the whole of each ring must lie in guest RAM, correctly aligned. */
static void vio_queue_enable(struct vio_dev *d, unsigned qi)
{
	struct virtq *q = &d->q[qi];
	uint64_t s = q->size;

	if (s == 0 || s > VIO_QUEUE_MAX || (s & (s - 1))) {
		vio_broken(d, "queue %u: size %" PRIu64 " is not a power of 2 in 1..%u", qi, s,
			   VIO_QUEUE_MAX);
		return;
	}
	if ((q->desc & 15) || (q->avail & 1) || (q->used & 3)) {
		vio_broken(d,
			   "queue %u: misaligned ring (desc 0x%" PRIx64 ", avail 0x%" PRIx64
			   ", used 0x%" PRIx64 ")",
			   qi, q->desc, q->avail, q->used);
		return;
	}
	if (!mm_gpa(d->mem, q->desc, 16 * s) || !mm_gpa(d->mem, q->avail, 6 + 2 * s) ||
	    !mm_gpa(d->mem, q->used, 6 + 8 * s)) {
		vio_broken(d,
			   "queue %u: ring (desc 0x%" PRIx64 ", avail 0x%" PRIx64
			   ", used 0x%" PRIx64 ", size %" PRIu64 ") lies outside guest RAM",
			   qi, q->desc, q->avail, q->used, s);
		return;
	}
	q->last_avail = q->used_idx = 0;
	q->ready = true;
}

static void vio_set_status(struct vio_dev *d, uint32_t v)
{
	if (v == 0) {
		vio_reset(d);
		return;
	}
	if ((v & VIRTIO_CONFIG_S_FEATURES_OK) && !(d->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
		/* refuse (leave FEATURES_OK clear) a legacy driver or unoffered features */
		if (!(d->driver_features & (1ULL << VIRTIO_F_VERSION_1)) ||
		    (d->driver_features & ~vio_offered(d)))
			v &= ~VIRTIO_CONFIG_S_FEATURES_OK;
	}
	if ((v & VIRTIO_CONFIG_S_DRIVER_OK) && !(d->status & VIRTIO_CONFIG_S_DRIVER_OK) &&
	    !d->broken) {
		d->status = v;
		/* Linux notifies before DRIVER_OK (the balloon queues its first statistics
		 * buffer in probe): those notifications were not acted on, so take what the
		 * driver made available now that it is ready */
		for (unsigned q = 0; q < d->ops->nqueues && !d->broken; q++)
			if (d->q[q].ready)
				d->ops->notify(d, q);
	}
	d->status = v | (d->broken ? VIRTIO_CONFIG_S_NEEDS_RESET : 0);
}

static uint32_t vio_reg_read(struct vio_dev *d, uint64_t off)
{
	struct virtq *q = d->queue_sel < d->ops->nqueues ? &d->q[d->queue_sel] : NULL;

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return 0x74726976; /* "virt" */
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return d->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return d->dev_feat_sel < 2 ? (uint32_t)(vio_offered(d) >> (32 * d->dev_feat_sel))
					   : 0;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return q ? VIO_QUEUE_MAX : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return d->isr;
	case VIRTIO_MMIO_STATUS:
		return d->status;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return d->config_gen;
	case VIRTIO_MMIO_SHM_LEN_LOW: /* no shared memory region: a length of all ones */
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		return 0xffffffff;
	default:
		return 0;
	}
}

static void vio_set_half(uint64_t *v, bool high, uint32_t x)
{
	*v = high ? (*v & 0xffffffffULL) | ((uint64_t)x << 32) : (*v & ~0xffffffffULL) | x;
}

static void vio_reg_write(struct vio_dev *d, uint64_t off, uint32_t v)
{
	struct virtq *q = d->queue_sel < d->ops->nqueues ? &d->q[d->queue_sel] : NULL;

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		d->dev_feat_sel = v;
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (d->drv_feat_sel < 2 && !(d->status & VIRTIO_CONFIG_S_FEATURES_OK))
			vio_set_half(&d->driver_features, d->drv_feat_sel, v);
		return;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		d->drv_feat_sel = v;
		return;
	case VIRTIO_MMIO_QUEUE_SEL:
		d->queue_sel = v;
		return;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		if (v < d->ops->nqueues && d->q[v].ready && !d->broken &&
		    (d->status & VIRTIO_CONFIG_S_DRIVER_OK))
			d->ops->notify(d, v);
		return;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		d->isr &= ~v;
		return;
	case VIRTIO_MMIO_STATUS:
		vio_set_status(d, v);
		return;
	default:
		break;
	}
	/* queue registers: ignored for a missing queue or one already live */
	if (!q || q->ready) {
		if (q && off == VIRTIO_MMIO_QUEUE_READY && v == 0)
			q->ready = false;
		return;
	}
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
		q->size = (uint16_t)(v > 0xffff ? 0 : v);
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (v == 1 && !d->broken)
			vio_queue_enable(d, d->queue_sel);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		vio_set_half(&q->desc, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		vio_set_half(&q->avail, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		vio_set_half(&q->used, off == VIRTIO_MMIO_QUEUE_USED_HIGH, v);
		break;
	default:
		break;
	}
}

void vio_mmio_io(void *dev, uint64_t off, uint8_t *data, unsigned size, bool write)
{
	struct vio_dev *d = dev;
	uint32_t v = 0;

	pthread_mutex_lock(&d->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;

		if (c >= d->ops->config_len || size > d->ops->config_len - c) {
			if (!write)
				memset(data, 0, size);
		} else if (write) {
			if (d->ops->config_write)
				d->ops->config_write(d, c, data, size);
		} else {
			d->ops->config_read(d, c, data, size);
		}
	} else if (size != 4 || (off & 3)) {
		if (!write) /* registers are 32-bit wide: other accesses read 0, write nothing */
			memset(data, 0, size);
	} else if (write) {
		memcpy(&v, data, 4);
		vio_reg_write(d, off, v);
	} else {
		v = vio_reg_read(d, off);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&d->lock);
}

int vio_mmio_register(struct dev_ctx *c, struct vio_dev *d, const char **why)
{
	uint64_t base = DEV_MMIO_BASE + c->next_mmio * DEV_MMIO_SIZE;
	unsigned gsi = c->next_irq;
	size_t used = strlen(c->cmdline);
	int err;

	pthread_mutex_init(&d->lock, NULL);
	d->mem = c->mem;
	d->vm_fd = c->vm_fd;
	d->base = base;
	if (gsi == 8) /* the RTC's */
		gsi = 9;
	err = dev_irq_open(&d->irq, c->vm_fd, gsi);
	if (err) {
		*why = "KVM_IRQFD";
		goto err_lock;
	}
	if (c->next_mmio >= DEV_MAX_DEVICES) {
		*why = "too many virtio-mmio devices";
		err = -ENOSPC;
		goto err_irq;
	}
	err = dev_bus_add(&c->bus, DEV_MMIO, base, DEV_MMIO_SIZE, vio_mmio_io, d, d->name);
	if (err) {
		*why = "no room on the MMIO bus";
		goto err_irq;
	}
	c->vio[c->next_mmio] = (struct dev_mmio_window){base, DEV_MMIO_SIZE, gsi};
	snprintf(c->cmdline + used, sizeof(c->cmdline) - used,
		 "%svirtio_mmio.device=4K@0x%" PRIx64 ":%u", used ? " " : "", base, gsi);
	c->next_mmio++;
	c->next_irq = gsi + 1;
	return 0;

err_irq:
	dev_irq_close(&d->irq, c->vm_fd);
err_lock:
	pthread_mutex_destroy(&d->lock);
	return err;
}

void vio_mmio_unregister(struct vio_dev *d)
{
	dev_irq_close(&d->irq, d->vm_fd);
	pthread_mutex_destroy(&d->lock);
}
