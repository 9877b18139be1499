/* dev.h: the device model of Linux guests: an I/O bus, interrupt lines, the device table */
#ifndef UFVM_DEV_H
#define UFVM_DEV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mm/mm.h"

/*
 * Devices never include vmm/vmm.h: what they need from the VM (its fd for
 * interrupts, its memory, a way to end it) is handed to them in struct dev_ctx.
 * Every handler runs on a vCPU thread; devices lock their own state.
 */

enum dev_space { DEV_PIO, DEV_MMIO };

/* Read (write == false: fill data) or write `size` bytes at `off` inside the region. */
typedef void (*dev_io_fn)(void *dev, uint64_t off, uint8_t *data, unsigned size, bool write);

#define DEV_MAX_REGIONS 16
#define DEV_MAX_DEVICES 8

struct dev_region {
	enum dev_space space;
	uint64_t base, len;
	dev_io_fn fn;
	void *dev;
	const char *name;
};

/* Filled at set-up, read-only once vCPUs run: lookups take no lock. */
struct dev_bus {
	struct dev_region r[DEV_MAX_REGIONS];
	unsigned n;
};

/* Add a region; -ENOSPC when the bus is full, -EEXIST when it overlaps another. */
int dev_bus_add(struct dev_bus *b, enum dev_space sp, uint64_t base, uint64_t len, dev_io_fn fn,
		void *dev, const char *name);
/* Dispatch one access; false when no region covers [addr, addr+size). */
bool dev_bus_access(const struct dev_bus *b, enum dev_space sp, uint64_t addr, uint8_t *data,
		    unsigned size, bool write);

/* Where virtio-mmio devices live: one 4 KiB window each, above the largest RAM a
 * Linux guest may have (LINUX_MAX_MEM) and below the IOAPIC. */
#define DEV_MMIO_BASE 0xd0000000ULL
#define DEV_MMIO_SIZE 0x1000ULL
#define DEV_IRQ_FIRST 5 /* first GSI for virtio devices (ISA IRQs 5, 6, 7, 9, 10, 11...) */
#define DEV_IRQ_COM1  4
#define DEV_PM_PORT   0x600 /* ACPI sleep control, sleep status and reset registers (power.c) */

struct dev_opts {
	const char *disk; /* --disk PATH[,ro]: backing file of virtio-blk, or NULL */
	bool disk_ro;
	bool no_balloon; /* --no-balloon */
	bool verbose;
};

struct dev_ctx {
	int vm_fd;
	struct mm_mem *mem;
	const struct dev_opts *opts;
	struct dev_bus bus;
	/* Ends the VM with `status` (the i8042 reset line, a fatal device error). */
	void (*stop)(void *arg, int status);
	void *stop_arg;
	int stop_efd; /* readable once the VM stops: what waits on the outside world polls it */
	/* `virtio_mmio.device=` entries for the kernel command line, filled by set-up */
	char cmdline[512];
	/* the same windows for the ACPI tables' DSDT, in the order they were registered */
	struct dev_mmio_window {
		uint64_t base, len;
		unsigned gsi;
	} vio[DEV_MAX_DEVICES];
	unsigned next_mmio;	      /* index of the next free virtio-mmio window */
	unsigned next_irq;	      /* next free GSI for virtio devices */
	void *state[DEV_MAX_DEVICES]; /* per table entry, NULL when not set up */
	unsigned nsetup;	      /* table entries whose setup ran */
	/* Set by a failing setup() when the user's options are at fault, not the host (a
	 * --disk that names no usable disk): the VMM then exits with status 2, else 1. */
	bool bad_input;
};

/* An interrupt line into the in-kernel irqchip: an eventfd bound with KVM_IRQFD. */
struct dev_irq {
	int fd;
	unsigned gsi;
};
int dev_irq_open(struct dev_irq *irq, int vm_fd, unsigned gsi);
void dev_irq_close(struct dev_irq *irq, int vm_fd);
void dev_irq_raise(const struct dev_irq *irq); /* an edge: the IOAPIC pins are edge-triggered */

/*
 * A device type. setup() returns 0 with *state NULL when the options do not ask
 * for the device; -errno with *why naming the reason on failure (and c->bad_input
 * set when the user's options are at fault). teardown() is
 * called in reverse table order, only for devices whose setup succeeded.
 */
struct dev_ops {
	const char *name;
	int (*setup)(struct dev_ctx *c, void **state, const char **why);
	void (*teardown)(void *state);
	void (*usage)(FILE *f); /* CLI lines of the options it takes */
};

extern const struct dev_ops serial_ops, i8042_ops, power_ops, vio_blk_ops, vio_balloon_ops;

/* The device table (devices.c). On failure *failed names the device that failed. */
/*
 * console.c: write all of buf to stdout, the console. A full pipe is waited for in
 * poll() with stop_efd, so the wait ends at the VM's stop (-ESHUTDOWN, the rest not
 * written); wait(arg, true) is called before such a wait and wait(arg, false) after
 * (a vCPU parks itself there; false from it means the stop, too; NULL: nothing).
 * 0, or -errno of a failed write.
 */
int dev_console_write(const void *buf, size_t len, int stop_efd, bool (*wait)(void *, bool),
		      void *arg);

int dev_setup_all(struct dev_ctx *c, const char **failed, const char **why);
void dev_teardown_all(struct dev_ctx *c);
void dev_usage_all(FILE *f);

/* Parse "PATH" or "PATH,ro" for --disk; -EINVAL on an unknown flag. path is cut in place. */
int dev_parse_disk(char *arg, struct dev_opts *o);

/* ---- virtio_mmio.c: the virtio-mmio transport (version 2) and split virtqueues ----
 * The guest is hostile: every ring index, descriptor index, (addr, len) range
 * and chain length is checked; a violation marks the device broken (status
 * DEVICE_NEEDS_RESET, reported once on stderr) and it ignores its queues until
 * the driver resets it. Nothing the guest writes can make the VMM touch memory
 * outside guest RAM.
 */
#define VIO_QUEUE_MAX  256 /* largest queue size offered */
#define VIO_MAX_QUEUES 4

struct virtq {
	uint16_t size; /* set by the driver, a power of 2 <= VIO_QUEUE_MAX */
	bool ready;
	uint64_t desc, avail, used; /* gpas, checked when the queue is made ready */
	uint16_t last_avail;	    /* next avail entry the device will take */
	uint16_t used_idx;
};

struct vio_buf {
	uint8_t *hva; /* checked: [hva, hva+len) lies in guest RAM */
	uint64_t gpa;
	uint32_t len;
	bool writable; /* device-writable (VRING_DESC_F_WRITE) */
};

struct vio_chain {
	uint16_t head;
	unsigned n;	/* buffers: all readable ones first, then all writable ones */
	unsigned nread; /* how many of them are readable */
	struct vio_buf b[VIO_QUEUE_MAX];
};

struct vio_dev;

struct vio_dev_ops {
	uint32_t device_id; /* VIRTIO_ID_* */
	uint64_t features;  /* offered besides VIRTIO_F_VERSION_1 */
	unsigned nqueues;
	uint32_t config_len;
	/* All called with d->lock held, never while the device is broken. */
	void (*notify)(struct vio_dev *d, unsigned q);
	void (*config_read)(struct vio_dev *d, uint64_t off, uint8_t *data, unsigned size);
	void (*config_write)(struct vio_dev *d, uint64_t off, const uint8_t *data, unsigned size);
	void (*reset)(struct vio_dev *d); /* the driver wrote 0 to Status */
};

struct vio_dev {
	const struct vio_dev_ops *ops;
	const char *name; /* "virtio-blk": used in messages */
	void *priv;
	struct mm_mem *mem;
	pthread_mutex_t lock;
	uint32_t status, isr, config_gen;
	uint32_t dev_feat_sel, drv_feat_sel, queue_sel;
	uint64_t driver_features;
	struct virtq q[VIO_MAX_QUEUES];
	bool broken;
	unsigned violations; /* only the first is printed */
	uint64_t base;
	struct dev_irq irq;
	int vm_fd;
};

/* Give d a free MMIO window and GSI, bind its irqfd and announce it on the kernel
 * command line. d->ops, name, priv must be set. */
int vio_mmio_register(struct dev_ctx *c, struct vio_dev *d, const char **why);
void vio_mmio_unregister(struct vio_dev *d);
/* The transport's registers and config space: a dev_io_fn over one 4 KiB window, dev a
 * struct vio_dev. The bus calls it; tests and fuzzers drive a device through it without KVM. */
void vio_mmio_io(void *dev, uint64_t off, uint8_t *data, unsigned size, bool write);

/* For back-ends, with d->lock held. vio_pop: 1 when *out holds the next chain, 0 when
 * the queue is empty, -EIO when the device is (now) broken. */
int vio_pop(struct vio_dev *d, unsigned q, struct vio_chain *out);
/* Return a chain with `len` bytes written into its writable buffers. */
void vio_push(struct vio_dev *d, unsigned q, uint16_t head, uint32_t len);
/* Interrupt the driver for used buffers (unless it asked not to be). */
void vio_notify_used(struct vio_dev *d, unsigned q);
/* Tell the driver its config space changed (balloon target). */
void vio_notify_config(struct vio_dev *d);
/* Mark the device broken and report the first violation: "ufvm: NAME: device broken: ..." */
void vio_broken(struct vio_dev *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- virtio_balloon.c: the C API the control socket will use ---- */
struct vio_balloon;

struct vio_balloon_info {
	uint32_t target_pages;	 /* num_pages: what the host asks the guest to give */
	uint32_t actual_pages;	 /* actual: what the guest says it gave */
	uint64_t inflated_pages; /* pages dropped from the inflate queue */
	uint64_t deflated_pages; /* pages the guest took back */
	uint64_t reported_bytes; /* free memory dropped through free page reporting */
	/* Of those, the pages that held memory (resident or swapped) and were freed; the
	 * others had never been touched (or were given away already): reporting them
	 * freed nothing. A fresh Linux reports most of its RAM that way. */
	uint64_t inflated_freed_pages, reported_freed_pages;
	uint64_t stats[16];	/* last statistics by VIRTIO_BALLOON_S_* tag, ~0 if unknown */
	uint64_t stats_updates; /* statistics buffers received */
};

/* The balloon of this VM, NULL if it has none (--no-balloon or not set up). */
struct vio_balloon *vio_balloon_get(struct dev_ctx *c);
/* Ask the guest to hold `pages` 4 KiB pages in its balloon (inflate, or deflate when lower). */
int vio_balloon_set_target(struct vio_balloon *b, uint32_t pages);
/* Hand the held statistics buffer back so the guest refills it (-EAGAIN: none held yet). */
int vio_balloon_request_stats(struct vio_balloon *b);
void vio_balloon_get_info(struct vio_balloon *b, struct vio_balloon_info *out);

/*
 * Drops [gpa, gpa+len) from guest RAM instead of vio_balloon_drop when set
 * (inflated or reported free: the memfd hole punched, the mapping zapped, the
 * next guest access reads zeros). The pager sets it so those pages' page-state
 * entries go back to "never touched" and their swap slots are freed under its
 * own locks, in the same step. Returns how many of the pages held memory
 * (and were freed), or -errno. NULL: vio_balloon_drop.
 * Called on a vCPU thread, with the balloon's lock held.
 */
typedef int64_t (*vio_balloon_drop_fn)(void *arg, gpa_t gpa, uint64_t len);
void vio_balloon_set_drop_hook(vio_balloon_drop_fn fn, void *arg);
/* The default drop: punch the memfd hole and zap the mapping; the pages that held
 * memory (in the memfd's page cache, by mincore), or -errno. */
int64_t vio_balloon_drop(struct mm_mem *mem, gpa_t gpa, uint64_t len);

#endif
