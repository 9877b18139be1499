/* acpi.c: check the ACPI tables as Linux reads them (RSDP, XSDT, FADT, MADT, DSDT) and power off
 * through them */
#include <asm/bootparam.h>

#include "conf.h"

static uint16_t sleep_port, reset_port; /* 0: not found */
static uint8_t s5_type, reset_value;

static uint32_t le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}
static uint64_t le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static bool sum_ok(const uint8_t *p, uint32_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s == 0;
}

/* A table at gpa a with signature sig and a correct checksum, or NULL. */
static const uint8_t *table(uint64_t a, const char *sig)
{
	const uint8_t *t = (const uint8_t *)a;

	if (!a || a >= 0x100000000ULL || memcmp(t, sig, 4) || le32(t + 4) < 36 ||
	    le32(t + 4) > 0x10000 || !sum_ok(t, le32(t + 4)))
		return 0;
	return t;
}

static const uint8_t *find(const uint8_t *p, uint32_t n, const void *what, uint32_t len)
{
	for (uint32_t i = 0; i + len <= n; i++)
		if (!memcmp(p + i, what, len))
			return p + i;
	return 0;
}

/* The I/O port of a Generic Address Structure naming one byte in I/O space, or 0. */
static uint16_t gas_port(const uint8_t *g)
{
	uint64_t a = le64(g + 4);

	return g[0] == 1 && g[1] == 8 && a && a < 0x10000 ? (uint16_t)a : 0;
}

static void check_fadt(const uint8_t *f)
{
	uint32_t flags = le32(f + 112);

	check(f[8] >= 5 && le32(f + 4) >= 268, "ACPI: FADT revision 5+ (sleep registers)");
	check(flags & (1u << 20), "ACPI: FADT: HW_REDUCED_ACPI");
	check((f[109] & 0x24) == 0x24, "ACPI: FADT: no VGA, no CMOS RTC");
	sleep_port = gas_port(f + 244);
	check(sleep_port && gas_port(f + 256), "ACPI: FADT: sleep control and status registers");
	if (flags & (1u << 10)) {
		reset_port = gas_port(f + 116);
		reset_value = f[128];
	}
	check(reset_port != 0, "ACPI: FADT: reset register in I/O space");
}

static void check_madt(const uint8_t *m, unsigned cpus)
{
	uint32_t len = le32(m + 4);
	unsigned lapics = 0, ioapics = 0;
	bool ids = true;

	check(le32(m + 36) == 0xfee00000, "ACPI: MADT: local APIC at 0xfee00000");
	for (uint32_t o = 44; o + 2 <= len && m[o + 1] >= 2; o += m[o + 1]) {
		const uint8_t *e = m + o;

		if (e[0] == 0 && (le32(e + 4) & 1)) {
			ids = ids && e[3] == lapics;
			lapics++;
		} else if (e[0] == 1) {
			ioapics += le32(e + 4) == 0xfec00000 && le32(e + 8) == 0;
		}
	}
	if (!check(lapics == cpus, "ACPI: MADT: one enabled local APIC per vCPU"))
		note("local APICs", lapics);
	check(ids, "ACPI: MADT: APIC IDs 0..cpus-1");
	check(ioapics == 1, "ACPI: MADT: an I/O APIC at 0xfec00000, GSI base 0");
}

/* Every LNRO0005 device's Memory32Fixed and Interrupt, in order, against the command line's
 * virtio_mmio.device=4K@BASE:IRQ entries (the same devices, announced both ways). */
static void check_dsdt(const uint8_t *d, const char *cmdline)
{
	uint32_t len = le32(d + 4);
	const uint8_t *p = d + 36, *end = d + len, *s5;
	const char *c = cmdline;
	unsigned n = 0, good = 0;
	static const uint8_t com1_hid[] = {0x0c, 0x41, 0xd0, 0x05, 0x01}; /* EisaId PNP0501 */
	static const uint8_t com1_io[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08};

	check(d[8] >= 2, "ACPI: DSDT revision 2+ (64-bit integers)");
	check(find(d, len, com1_hid, 5) && find(d, len, com1_io, 8),
	      "ACPI: DSDT: COM1 (PNP0501) at 0x3f8");
	while ((p = find(p, (uint32_t)(end - p), "\x0dLNRO0005", 10)) != 0) {
		const uint8_t *mem = find(p, (uint32_t)(end - p), "\x86\x09\x00", 3);
		const uint8_t *irq = find(p, (uint32_t)(end - p), "\x89\x06\x00", 3);
		uint64_t base = 0, gsi = 0;

		while (*c && memcmp(c, "virtio_mmio.device=4K@", 22))
			c++;
		if (*c) {
			base = parse_u64(c + 22, &c);
			gsi = *c == ':' ? parse_u64(c + 1, &c) : 0;
		}
		good += mem && irq && le32(mem + 4) == base && le32(mem + 8) == 0x1000 &&
			irq[4] == 1 && le32(irq + 5) == gsi && base;
		n++;
		p += 10;
	}
	if (!check(n == (unsigned)arg_u64(cmdline, "conf.vdevs", 0),
		   "ACPI: DSDT: one LNRO0005 device per virtio-mmio device"))
		note("LNRO0005 devices", n);
	check(good == n, "ACPI: DSDT: each window and GSI as on the command line");
	/* Name (\_S5, Package (4) {5, ...}): root prefix, name, PackageOp, length, count */
	s5 = find(d, len, "\x08\x5c_S5_\x12", 7);
	check(s5 && (s5[9] == 0x0a || s5[9] <= 1), "ACPI: DSDT: \\_S5 package");
	if (s5)
		s5_type = s5[9] == 0x0a ? s5[10] : s5[9];
}

void conf_acpi(uint64_t info, bool pvh, const char *cmdline)
{
	/* PVH start info: rsdp_paddr at 32; the zero page: acpi_rsdp_addr */
	uint64_t rsdp_given = pvh ? le64((const uint8_t *)info + 32)
				  : ((const struct boot_params *)info)->acpi_rsdp_addr;
	const uint8_t *rsdp = 0, *xsdt, *fadt = 0, *madt = 0, *dsdt = 0;
	unsigned cpus = (unsigned)arg_u64(cmdline, "conf.cpus", 1);

	for (uint64_t a = 0xe0000; a < 0x100000 && !rsdp; a += 16) /* where Linux scans */
		if (!memcmp((const void *)a, "RSD PTR ", 8))
			rsdp = (const uint8_t *)a;
	if (!check(rsdp && sum_ok(rsdp, 20) && rsdp[15] >= 2 && sum_ok(rsdp, 36),
		   "ACPI: RSDP in 0xe0000-0xfffff, revision 2, both checksums"))
		return;
	check(rsdp_given == (uint64_t)rsdp, "ACPI: the boot information points at the RSDP");
	xsdt = table(le64(rsdp + 24), "XSDT");
	if (!check(xsdt != 0, "ACPI: XSDT with a good checksum"))
		return;
	for (uint32_t o = 36; o + 8 <= le32(xsdt + 4); o += 8) {
		uint64_t a = le64(xsdt + o);

		fadt = fadt ? fadt : table(a, "FACP");
		madt = madt ? madt : table(a, "APIC");
	}
	if (check(fadt != 0, "ACPI: FADT listed, good checksum")) {
		check_fadt(fadt);
		dsdt = table(le64(fadt + 140), "DSDT");
	}
	if (check(madt != 0, "ACPI: MADT listed, good checksum"))
		check_madt(madt, cpus);
	if (check(dsdt != 0, "ACPI: DSDT at X_DSDT, good checksum"))
		check_dsdt(dsdt, cmdline);
}

bool conf_acpi_off(const char *how)
{
	if (!memcmp(how, "poweroff", 9) && sleep_port && s5_type) {
		outb(sleep_port, (uint8_t)(s5_type << 2 | 1u << 5)); /* SLP_TYP, SLP_EN */
		return true;
	}
	if (!memcmp(how, "acpi_reset", 11) && reset_port) {
		outb(reset_port, reset_value);
		return true;
	}
	return false;
}
