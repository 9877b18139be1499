/* acpi.c: the ACPI tables of a Linux guest: RSDP, XSDT, FADT (hardware-reduced), MADT, DSDT */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <asm/bootparam.h>

#include "boot/boot.h"

#define ACPI_OEM_ID	 "UFVM  "
#define ACPI_OEM_TABLE	 "UFVM    "
#define ACPI_CREATOR	 "UFVM"
#define ACPI_HEADER_LEN	 36
#define ACPI_RSDP_LEN	 36
#define FADT_LEN	 276 /* revision 6 */
#define FADT_HW_REDUCED	 (1u << 20)
#define FADT_RESET_REG	 (1u << 10)
#define FADT_NO_VGA	 (1u << 2) /* IA-PC boot architecture flags */
#define FADT_NO_CMOS_RTC (1u << 5)
#define GAS_SYSTEM_IO	 1
#define GAS_ACCESS_BYTE	 1
#define MADT_LAPIC	 0
#define MADT_IOAPIC	 1
#define MADT_LAPIC_NMI	 4

static void acpi_le(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The common header; length and checksum are filled by acpi_end once the table is whole. */
static size_t acpi_begin(struct abuf *b, const char sig[4], uint8_t rev)
{
	size_t start = b->len;

	abuf_put(b, sig, 4);
	abuf_le(b, 0, 4); /* length */
	abuf_u8(b, rev);
	abuf_u8(b, 0); /* checksum */
	abuf_put(b, ACPI_OEM_ID, 6);
	abuf_put(b, ACPI_OEM_TABLE, 8);
	abuf_le(b, 1, 4); /* OEM revision */
	abuf_put(b, ACPI_CREATOR, 4);
	abuf_le(b, 1, 4); /* creator revision */
	return start;
}

static void acpi_end(struct abuf *b, size_t start)
{
	uint32_t len = (uint32_t)(b->len - start);

	if (b->oom)
		return;
	acpi_le(b->p + start + 4, len, 4);
	b->p[start + 9] = boot_checksum(b->p + start, len);
}

/* A Generic Address Structure: an 8-bit register in I/O port space. */
static void acpi_gas_io(uint8_t *p, uint16_t port)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = 8; /* bit width; p[2], the bit offset, is 0 */
	p[3] = GAS_ACCESS_BYTE;
	acpi_le(p + 4, port, 8);
}

/*
 * Hardware-reduced ACPI: no PM1 blocks, no SCI, no legacy PIC or PIT timer set-up; the
 * sleep control register is the whole of power management, so `poweroff` is one byte
 * written to m->pm_port (SLP_TYP 5 | SLP_EN), and a reset one more. Offsets as in the
 * spec's FADT table (ACPI 6.5, 5.2.9).
 */
static void acpi_fadt(struct abuf *b, const struct acpi_machine *m, uint64_t dsdt)
{
	uint8_t f[FADT_LEN] = {0};
	size_t t = acpi_begin(b, "FACP", 6);

	acpi_le(f + 109, FADT_NO_VGA | FADT_NO_CMOS_RTC, 2); /* IAPC_BOOT_ARCH */
	acpi_le(f + 112, FADT_HW_REDUCED | FADT_RESET_REG, 4);
	acpi_gas_io(f + 116, m->pm_port + ACPI_PM_RESET); /* RESET_REG */
	f[128] = ACPI_PM_RESET_VALUE;
	acpi_le(f + 140, dsdt, 8); /* X_DSDT */
	acpi_gas_io(f + 244, m->pm_port + ACPI_PM_SLEEP_CONTROL);
	acpi_gas_io(f + 256, m->pm_port + ACPI_PM_SLEEP_STATUS);
	abuf_put(b, f + ACPI_HEADER_LEN, FADT_LEN - ACPI_HEADER_LEN);
	acpi_end(b, t);
}

static void acpi_madt(struct abuf *b, const struct acpi_machine *m)
{
	size_t t = acpi_begin(b, "APIC", 5);

	abuf_le(b, m->lapic, 4);
	abuf_le(b, 0, 4); /* no PCAT_COMPAT: a hardware-reduced Linux never uses the 8259s */
	for (unsigned i = 0; i < m->cpus; i++) {
		abuf_u8(b, MADT_LAPIC);
		abuf_u8(b, 8);
		abuf_u8(b, (uint8_t)i); /* ACPI processor UID */
		abuf_u8(b, (uint8_t)i); /* APIC ID, as CPUID leaf 1 says */
		abuf_le(b, 1, 4);	/* enabled */
	}
	abuf_u8(b, MADT_IOAPIC);
	abuf_u8(b, 12);
	abuf_u8(b, m->ioapic_id);
	abuf_u8(b, 0);
	abuf_le(b, m->ioapic, 4);
	abuf_le(b, 0, 4); /* GSI base: KVM's routing is the identity, pin n is GSI n */
	abuf_u8(b, MADT_LAPIC_NMI);
	abuf_u8(b, 6);
	abuf_u8(b, 0xff); /* every processor */
	abuf_le(b, 0, 2); /* flags: bus default */
	abuf_u8(b, 1);	  /* LINT1 */
	acpi_end(b, t);
}

static void acpi_dsdt_com1(struct abuf *b)
{
	struct abuf res = {0};
	size_t dev = aml_device(b, "COM1");

	aml_name(b, "_HID");
	aml_eisaid(b, "PNP0501");
	aml_name(b, "_UID");
	aml_int(b, 0);
	aml_res_io(&res, 0x3f8, 8);
	aml_res_irq_noflags(&res, 4);
	aml_name(b, "_CRS");
	aml_resource_template(b, &res);
	aml_close(b, dev);
	abuf_free(&res);
}

static void acpi_dsdt_virtio(struct abuf *b, unsigned i, const struct acpi_vio *v)
{
	struct abuf res = {0};
	char name[5];
	size_t dev;

	snprintf(name, sizeof(name), "VR%02u", i % 100);
	dev = aml_device(b, name);
	aml_name(b, "_HID");
	aml_string(b, "LNRO0005");
	aml_name(b, "_UID");
	aml_int(b, i);
	aml_res_mem32_fixed(&res, (uint32_t)v->base, (uint32_t)v->len);
	aml_res_interrupt(&res, v->gsi);
	aml_name(b, "_CRS");
	aml_resource_template(b, &res);
	aml_close(b, dev);
	abuf_free(&res);
}

static void acpi_dsdt(struct abuf *b, const struct acpi_machine *m)
{
	size_t t = acpi_begin(b, "DSDT", 2); /* revision 2: 64-bit integers */
	size_t sb = aml_scope(b, "\\_SB");
	size_t pkg;

	if (m->com1)
		acpi_dsdt_com1(b);
	for (unsigned i = 0; i < m->nvio; i++)
		acpi_dsdt_virtio(b, i, &m->vio[i]);
	aml_close(b, sb);
	/* \_S5: Linux reads SLP_TYPa (and b) here; hardware-reduced, it writes it to the
	 * sleep control register */
	aml_name(b, "\\_S5");
	pkg = aml_package(b, 4);
	aml_int(b, ACPI_S5_TYPE);
	aml_int(b, 0);
	aml_int(b, 0);
	aml_int(b, 0);
	aml_close(b, pkg);
	acpi_end(b, t);
}

int acpi_build(const struct acpi_machine *m, uint64_t gpa, struct abuf *out,
	       struct acpi_layout *lay)
{
	size_t rsdp, xsdt;

	if (m->cpus == 0 || m->cpus > 255 || m->nvio > ACPI_MAX_VIO || m->nvio > 100)
		return -EINVAL;
	for (unsigned i = 0; i < m->nvio; i++)
		if (m->vio[i].base > UINT32_MAX || m->vio[i].len > UINT32_MAX - m->vio[i].base)
			return -EINVAL; /* Memory32Fixed */
	*out = (struct abuf){0};
	rsdp = out->len;
	abuf_put(out, "RSD PTR ", 8);
	abuf_u8(out, 0); /* checksum of the first 20 bytes */
	abuf_put(out, ACPI_OEM_ID, 6);
	abuf_u8(out, 2);    /* revision: ACPI 2.0+, XSDT */
	abuf_le(out, 0, 4); /* RSDT: none */
	abuf_le(out, ACPI_RSDP_LEN, 4);
	abuf_le(out, 0, 8); /* XSDT, below */
	abuf_u8(out, 0);    /* extended checksum */
	abuf_le(out, 0, 3);
	abuf_pad(out, 16);

	lay->dsdt = out->len;
	acpi_dsdt(out, m);
	abuf_pad(out, 16);
	lay->fadt = out->len;
	acpi_fadt(out, m, gpa + lay->dsdt);
	abuf_pad(out, 16);
	lay->madt = out->len;
	acpi_madt(out, m);
	abuf_pad(out, 16);
	xsdt = lay->xsdt = out->len;
	{
		size_t t = acpi_begin(out, "XSDT", 1);

		abuf_le(out, gpa + lay->fadt, 8);
		abuf_le(out, gpa + lay->madt, 8);
		acpi_end(out, t);
	}
	if (out->oom) {
		abuf_free(out);
		return -ENOMEM;
	}
	acpi_le(out->p + rsdp + 24, gpa + xsdt, 8);
	out->p[rsdp + 8] = boot_checksum(out->p + rsdp, 20);
	out->p[rsdp + 32] = boot_checksum(out->p + rsdp, ACPI_RSDP_LEN);
	lay->rsdp = rsdp;
	return 0;
}

/*
 * The BIOS's reset vector, f000:fff0. Hardware-reduced ACPI makes x86 Linux reboot through
 * EFI (efi_reboot_required()), and a kernel without EFI then falls back to the BIOS: it
 * enters real mode and jumps here. There is no BIOS, so three instructions write the reset
 * register instead; `reboot` ends the VM whichever way the kernel takes (reboot=acpi or
 * =kbd go straight to the register or the i8042).
 */
static void acpi_reset_vector(const struct mm_mem *mem, uint16_t reset_port)
{
	/* mov $port, %dx; mov $value, %al; out %al, (%dx); cli; 1: hlt; jmp 1b */
	uint8_t stub[] = {0xba, 0, 0, 0xb0, ACPI_PM_RESET_VALUE, 0xee, 0xfa, 0xf4, 0xeb, 0xfd};

	stub[1] = (uint8_t)reset_port;
	stub[2] = (uint8_t)(reset_port >> 8);
	mm_copy_to_guest(mem, LINUX_RESET_VECTOR, stub, sizeof(stub));
}

int acpi_write(const struct mm_mem *mem, const struct linux_image *li, const struct acpi_machine *m,
	       const char **why)
{
	struct acpi_layout lay;
	struct abuf t;
	int err = acpi_build(m, LINUX_ACPI, &t, &lay);

	if (err)
		return linux_fail(why, err, "ACPI tables: %s",
				  err == -ENOMEM ? "out of memory" : "machine out of range");
	if (t.len > LINUX_ACPI_MAX) {
		err = linux_fail(why, -E2BIG, "ACPI tables: %zu bytes, room for %llu", t.len,
				 (unsigned long long)LINUX_ACPI_MAX);
		goto out;
	}
	err = mm_copy_to_guest(mem, LINUX_ACPI, t.p, t.len);
	if (err < 0) {
		err = linux_fail(why, -E2BIG, "ACPI tables do not fit in guest RAM");
		goto out;
	}
	err = 0;
	acpi_reset_vector(mem, (uint16_t)(m->pm_port + ACPI_PM_RESET));
	/* where the kernel looks first; the scan of 0xe0000..0xfffff finds it too */
	if (li->kind == LINUX_PVH) {
		uint64_t rsdp = LINUX_ACPI + lay.rsdp;

		mm_copy_to_guest(mem, LINUX_PVH_INFO + offsetof(struct pvh_start_info, rsdp_paddr),
				 &rsdp, sizeof(rsdp));
	} else {
		struct boot_params *bp = mm_gpa(mem, LINUX_ZERO_PAGE, sizeof(*bp));

		bp->acpi_rsdp_addr = LINUX_ACPI + lay.rsdp;
	}
out:
	abuf_free(&t);
	return err;
}
