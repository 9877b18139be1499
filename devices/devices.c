/* devices.c: the device table, the I/O bus and irqfd interrupt lines */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "devices/dev.h"

/* Set up in this order, torn down in the reverse one. */
static const struct dev_ops *const dev_table[] = {
    &serial_ops, &i8042_ops, &power_ops, &vio_blk_ops, &vio_balloon_ops,
};
#define DEV_TABLE_LEN (sizeof(dev_table) / sizeof(dev_table[0]))
_Static_assert(DEV_TABLE_LEN <= DEV_MAX_DEVICES, "device table larger than DEV_MAX_DEVICES");

int dev_setup_all(struct dev_ctx *c, const char **failed, const char **why)
{
	int err;

	c->nsetup = 0;
	c->next_irq = DEV_IRQ_FIRST;
	c->bad_input = false;
	for (unsigned i = 0; i < DEV_TABLE_LEN; i++) {
		c->state[i] = NULL;
		*why = "";
		err = dev_table[i]->setup(c, &c->state[i], why);
		if (err) {
			*failed = dev_table[i]->name;
			goto err_teardown;
		}
		c->nsetup = i + 1;
	}
	return 0;

err_teardown:
	dev_teardown_all(c);
	return err;
}

void dev_teardown_all(struct dev_ctx *c)
{
	for (unsigned i = c->nsetup; i-- > 0;) {
		if (c->state[i])
			dev_table[i]->teardown(c->state[i]);
		c->state[i] = NULL;
	}
	c->nsetup = 0;
}

void dev_usage_all(FILE *f)
{
	for (unsigned i = 0; i < DEV_TABLE_LEN; i++)
		if (dev_table[i]->usage)
			dev_table[i]->usage(f);
}

int dev_bus_add(struct dev_bus *b, enum dev_space sp, uint64_t base, uint64_t len, dev_io_fn fn,
		void *dev, const char *name)
{
	uint64_t end;

	if (len == 0 || __builtin_add_overflow(base, len, &end))
		return -EINVAL;
	if (b->n == DEV_MAX_REGIONS)
		return -ENOSPC;
	for (unsigned i = 0; i < b->n; i++) {
		const struct dev_region *r = &b->r[i];

		if (r->space == sp && base < r->base + r->len && r->base < end)
			return -EEXIST;
	}
	b->r[b->n++] = (struct dev_region){sp, base, len, fn, dev, name};
	return 0;
}

bool dev_bus_access(const struct dev_bus *b, enum dev_space sp, uint64_t addr, uint8_t *data,
		    unsigned size, bool write)
{
	for (unsigned i = 0; i < b->n; i++) {
		const struct dev_region *r = &b->r[i];

		/* the whole access inside the region: a straddling one is nobody's */
		if (r->space == sp && addr >= r->base && addr - r->base < r->len &&
		    size <= r->len - (addr - r->base)) {
			r->fn(r->dev, addr - r->base, data, size, write);
			return true;
		}
	}
	return false;
}

int dev_irq_open(struct dev_irq *irq, int vm_fd, unsigned gsi)
{
	struct kvm_irqfd req = {.gsi = gsi};
	int err;

	irq->gsi = gsi;
	irq->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (irq->fd < 0)
		return -errno;
	req.fd = (uint32_t)irq->fd;
	if (ioctl(vm_fd, KVM_IRQFD, &req) < 0) {
		err = -errno;
		goto err_close;
	}
	return 0;

err_close:
	close(irq->fd);
	irq->fd = -1;
	return err;
}

void dev_irq_close(struct dev_irq *irq, int vm_fd)
{
	struct kvm_irqfd req = {
	    .fd = (uint32_t)irq->fd, .gsi = irq->gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN};

	if (irq->fd < 0)
		return;
	ioctl(vm_fd, KVM_IRQFD, &req);
	close(irq->fd);
	irq->fd = -1;
}

void dev_irq_raise(const struct dev_irq *irq)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already pending: the edge is coming anyway */
	if (write(irq->fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return;
}

int dev_parse_disk(char *arg, struct dev_opts *o)
{
	char *comma = strchr(arg, ',');

	o->disk = arg;
	o->disk_ro = false;
	if (!comma)
		return *arg ? 0 : -EINVAL;
	*comma = '\0';
	if (strcmp(comma + 1, "ro") != 0 || !*arg)
		return -EINVAL;
	o->disk_ro = true;
	return 0;
}

struct vio_balloon *vio_balloon_get(struct dev_ctx *c)
{
	for (unsigned i = 0; i < c->nsetup; i++)
		if (dev_table[i] == &vio_balloon_ops)
			return c->state[i];
	return NULL;
}
