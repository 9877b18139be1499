/* mptable.c: the Intel MP table (spec 1.4): every vCPU and the I/O APIC for kernels without ACPI */
#include <string.h>

#include "boot/boot.h"

uint8_t boot_checksum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return (uint8_t)-s;
}

/* An Intel MP table (spec 1.4) so SMP guests find every vCPU without ACPI. */
void boot_mptable(const struct mm_mem *mem, unsigned cpus)
{
	uint8_t *base = mm_gpa(mem, LINUX_MPTABLE, 0x1000);
	uint8_t *fp = base, *cfg = base + 16, *p = cfg + 44;
	uint32_t cfg_gpa = (uint32_t)LINUX_MPTABLE + 16, lapic = (uint32_t)LINUX_LAPIC;
	uint32_t ioapic_addr = (uint32_t)LINUX_IOAPIC;
	uint16_t entries = 0, cfg_len;
	uint8_t ioapic_id = (uint8_t)cpus;

	memset(base, 0, 0x1000);
	for (unsigned i = 0; i < cpus; i++, entries++, p += 20) {
		uint32_t sig = 0x600, feat = 0x201; /* family 6; FPU, APIC */

		p[0] = 0; /* processor */
		p[1] = (uint8_t)i;
		p[2] = 0x14;				/* local APIC version */
		p[3] = (uint8_t)(1 | (i == 0 ? 2 : 0)); /* enabled, boot processor */
		memcpy(p + 4, &sig, 4);
		memcpy(p + 8, &feat, 4);
	}
	memcpy(p, "\x01\x00ISA   ", 8); /* bus 0: ISA */
	p += 8, entries++;
	p[0] = 2, p[1] = ioapic_id, p[2] = 0x11, p[3] = 1; /* IOAPIC, enabled */
	memcpy(p + 4, &ioapic_addr, 4);
	p += 8, entries++;
	for (unsigned irq = 0; irq < 24; irq++, p += 8, entries++) {
		/* KVM's default routing: GSI n is IOAPIC pin n */
		p[0] = 3, p[1] = 0 /* INT */, p[4] = 0 /* ISA */, p[5] = (uint8_t)irq;
		p[6] = ioapic_id, p[7] = (uint8_t)irq;
	}
	p[0] = 4, p[1] = 3 /* ExtINT */, p[6] = 0, p[7] = 0; /* PIC -> BSP LINT0 */
	p += 8, entries++;
	p[0] = 4, p[1] = 1 /* NMI */, p[6] = 0xff, p[7] = 1; /* all LINT1 */
	p += 8, entries++;
	cfg_len = (uint16_t)(p - cfg);

	memcpy(cfg, "PCMP", 4);
	memcpy(cfg + 4, &cfg_len, 2);
	cfg[6] = 4; /* spec revision 1.4 */
	memcpy(cfg + 8, "UFVM    ", 8);
	memcpy(cfg + 16, "000000000000", 12);
	memcpy(cfg + 34, &entries, 2);
	memcpy(cfg + 36, &lapic, 4);
	cfg[7] = boot_checksum(cfg, cfg_len);

	memcpy(fp, "_MP_", 4);
	memcpy(fp + 4, &cfg_gpa, 4);
	fp[8] = 1; /* length in 16-byte units */
	fp[9] = 4;
	fp[10] = boot_checksum(fp, 16);
}
