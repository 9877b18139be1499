/* power.c: the ACPI sleep control and reset registers: `poweroff` and `reboot` end the VM with
 * status 0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "boot/boot.h" /* the register layout the FADT describes: ACPI_PM_* */
#include "devices/dev.h"

/*
 * Hardware-reduced ACPI (boot/acpi.c) has no PM1 control block: the guest powers off by
 * writing SLP_TYP (from \_S5) << 2 | SLP_EN to the sleep control register, then polls the
 * sleep status register for a wake that never comes. It resets by writing the FADT's reset
 * value to the reset register. Other writes are dropped; every register reads 0.
 */
static void power_io(void *dev, uint64_t off, uint8_t *data, unsigned size, bool write)
{
	struct dev_ctx *c = dev;
	uint8_t v = data[0];

	if (!write) {
		for (unsigned i = 0; i < size; i++)
			data[i] = 0;
		return;
	}
	if (off == ACPI_PM_SLEEP_CONTROL && (v & ACPI_SLP_EN) && ((v >> 2) & 7) == ACPI_S5_TYPE) {
		if (c->opts->verbose)
			fprintf(stderr, "ufvm: the guest powered off (ACPI S5)\n");
		c->stop(c->stop_arg, 0);
	} else if (off == ACPI_PM_RESET && v == ACPI_PM_RESET_VALUE) {
		if (c->opts->verbose)
			fprintf(stderr, "ufvm: the guest reset (ACPI reset register)\n");
		c->stop(c->stop_arg, 0);
	}
}

static int power_setup(struct dev_ctx *c, void **state, const char **why)
{
	int err = dev_bus_add(&c->bus, DEV_PIO, DEV_PM_PORT, ACPI_PM_LEN, power_io, c, "acpi-pm");

	if (err) {
		*why = "I/O ports of the ACPI power management registers";
		return err;
	}
	*state = c; /* nothing of its own to free: the bus holds the region */
	return 0;
}

static void power_teardown(void *state)
{
	(void)state;
}

const struct dev_ops power_ops = {
    .name = "acpi-pm",
    .setup = power_setup,
    .teardown = power_teardown,
    .usage = NULL,
};
