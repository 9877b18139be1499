/* i8042.c: the keyboard controller's reset line (0xfe to port 0x64) ends the VM cleanly */
#include <errno.h>
#include <stdlib.h>

#include "devices/dev.h"

#define I8042_DATA     0x60
#define I8042_CMD      0x64
#define I8042_RESET    0xfe
#define I8042_SELFTEST 0xaa

struct i8042 {
	struct dev_ctx *ctx;
	uint8_t out; /* byte waiting in the output buffer, if full */
	bool full;
	pthread_mutex_t lock;
};

static void i8042_io(void *dev, uint64_t off, uint8_t *data, unsigned size, bool write)
{
	struct i8042 *k = dev;
	uint64_t port = I8042_DATA + off;
	bool reset = false;

	pthread_mutex_lock(&k->lock);
	if (!write) {
		for (unsigned i = 0; i < size; i++)
			data[i] = 0;
		if (port == I8042_CMD)
			data[0] = k->full ? 0x01 : 0x00; /* status: input buffer always empty */
		else if (port == I8042_DATA && k->full) {
			data[0] = k->out;
			k->full = false;
		}
	} else if (port == I8042_CMD && data[0] == I8042_RESET) {
		reset = true;
	} else if (port == I8042_CMD && data[0] == I8042_SELFTEST) {
		k->out = 0x55; /* self-test passed */
		k->full = true;
	}
	pthread_mutex_unlock(&k->lock);
	if (reset)
		k->ctx->stop(k->ctx->stop_arg, 0);
}

static int i8042_setup(struct dev_ctx *c, void **state, const char **why)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	int err;

	if (!k) {
		*why = "out of memory";
		return -ENOMEM;
	}
	k->ctx = c;
	pthread_mutex_init(&k->lock, NULL);
	/* ports 0x60..0x64 as one region; 0x61 (port B) is the in-kernel PIT's, which KVM
	 * serves before userspace sees it */
	err = dev_bus_add(&c->bus, DEV_PIO, I8042_DATA, 5, i8042_io, k, "i8042");
	if (err) {
		*why = "I/O ports 0x60-0x64";
		pthread_mutex_destroy(&k->lock);
		free(k);
		return err;
	}
	*state = k;
	return 0;
}

static void i8042_teardown(void *state)
{
	struct i8042 *k = state;

	pthread_mutex_destroy(&k->lock);
	free(k);
}

const struct dev_ops i8042_ops = {
    .name = "i8042",
    .setup = i8042_setup,
    .teardown = i8042_teardown,
    .usage = NULL,
};
