/* boot.c: check what Linux reads at entry: CPU state, boot_params, e820, command line, initrd, MP
 * table, CPUID, irqchip, UART */
#include <asm/bootparam.h>

#include "conf.h"

extern uint64_t entry_rsi, entry_rflags, entry_cr0, entry_cr4;
extern uint16_t entry_seg[4];
extern char _text[], _end[];

#define SENTINEL "0123456789abcdefghijklmnopqrstuvwxyz-_.:,/+"

struct pvh_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};
struct pvh_module {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

struct ram_map {
	unsigned n;
	uint64_t addr[128], size[128];
	uint32_t type[128];
};
static struct ram_map map;

static bool in_ram(uint64_t a, uint64_t len)
{
	for (unsigned i = 0; i < map.n; i++)
		if (map.type[i] == 1 && a >= map.addr[i] && a + len <= map.addr[i] + map.size[i])
			return true;
	return false;
}

static void check_map(uint64_t mem)
{
	uint64_t ram = 0;
	bool sorted = true;

	check(map.n >= 2 && map.n <= 128, "e820: 2..128 entries");
	for (unsigned i = 0; i < map.n; i++) {
		if (map.type[i] == 1)
			ram += map.size[i];
		if (i && map.addr[i] < map.addr[i - 1] + map.size[i - 1])
			sorted = false;
	}
	check(sorted, "e820: sorted, no overlaps");
	check(in_ram(0x1000, 0x9e000),
	      "e820: low memory below 0x9f000 is RAM (real-mode trampoline)");
	check(!in_ram(0x9fc00, 1) && !in_ram(0xa0000, 1) && !in_ram(0xf0000, 1),
	      "e820: EBDA, VGA hole and BIOS area are not RAM");
	check(in_ram(0x100000, mem - 0x100000), "e820: RAM from 1 MiB to the end of --mem");
	if (!check(ram == mem - 0x100000 + 0x9fc00, "e820: RAM adds up to --mem minus the hole"))
		note("RAM bytes", ram);
	check(in_ram((uint64_t)_text, (uint64_t)(_end - _text)),
	      "e820: the kernel image is in RAM");
}

static void check_initrd(uint64_t addr, uint64_t size, uint64_t expect, uint64_t max, uint64_t mem)
{
	const uint8_t *p = (const uint8_t *)addr;
	uint64_t bad = ~0ULL;

	if (!check(size == expect, "initrd: size is the file's size")) {
		note("size", size);
		return;
	}
	if (!size)
		return;
	check(!(addr & 0xfff), "initrd: page-aligned");
	check(addr >= (uint64_t)_end && addr + size <= mem && addr + size - 1 <= max,
	      "initrd: above the kernel, inside RAM and below initrd_addr_max");
	check(in_ram(addr, size), "e820: the initrd is in RAM");
	for (uint64_t i = 0; i < size && bad == ~0ULL; i++) /* the pattern tests/ writes */
		if (p[i] != (uint8_t)(i * 131 + (i >> 9) + 7))
			bad = i;
	if (!check(bad == ~0ULL, "initrd: every byte as written"))
		note("first bad offset", bad);
}

static void check_cmdline(const char *c, uint64_t max)
{
	char v[64];

	check(in_ram((uint64_t)c, strlen(c) + 1), "cmdline: in RAM");
	check(strlen(c) <= max, "cmdline: no longer than cmdline_size");
	check(arg(c, "conf.sentinel", v, sizeof(v)) && !memcmp(v, SENTINEL, sizeof(SENTINEL)),
	      "cmdline: bytes unchanged (conf.sentinel)");
}

static bool mp_sum(const uint8_t *p, unsigned n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s == 0;
}

static void check_mptable(unsigned cpus)
{
	const uint8_t *fp = 0, *cfg;
	unsigned procs = 0, bsp = 0, ioapics = 0;
	uint16_t len, count;

	for (uint64_t a = 0xf0000; a < 0x100000 && !fp; a += 16) /* where Linux scans */
		if (!memcmp((const void *)a, "_MP_", 4))
			fp = (const uint8_t *)a;
	if (!check(fp && mp_sum(fp, 16), "MP table: floating pointer found, checksum ok"))
		return;
	cfg = (const uint8_t *)(uint64_t) * (const uint32_t *)(fp + 4);
	memcpy(&len, cfg + 4, 2);
	memcpy(&count, cfg + 34, 2);
	if (!check(!memcmp(cfg, "PCMP", 4) && mp_sum(cfg, len), "MP table: PCMP header checksum"))
		return;
	for (const uint8_t *e = cfg + 44; count-- && e < cfg + len;) {
		if (e[0] == 0) {
			procs += e[3] & 1;
			bsp += (e[3] & 2) && e[1] == 0;
			e += 20;
		} else {
			ioapics += e[0] == 2 && *(const uint32_t *)(e + 4) == 0xfec00000;
			e += 8;
		}
	}
	if (!check(procs == cpus, "MP table: one enabled processor per vCPU"))
		note("processors", procs);
	check(bsp == 1, "MP table: APIC 0 is the boot processor");
	check(ioapics == 1, "MP table: an IOAPIC at 0xfec00000");
}

static void cpuid(uint32_t leaf, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(0));
}

static void check_cpu(bool pvh)
{
	uint32_t r[4];
	char sig[13];

	if (!pvh) {
		check(entry_seg[0] == 0x10, "entry: CS is __BOOT_CS (0x10)");
		check(entry_seg[1] == 0x18 && entry_seg[2] == 0x18 && entry_seg[3] == 0x18,
		      "entry: DS, ES, SS are __BOOT_DS (0x18)");
		check(!(entry_rflags & 0x200), "entry: interrupts disabled");
		check((entry_cr0 & 0x80000001) == 0x80000001 && (entry_cr4 & 0x20),
		      "entry: 64-bit mode, paging on, PAE");
	} else {
		check((entry_cr0 & 0x80000001) == 1, "PVH entry: protected mode, paging off");
	}
	cpuid(1, r);
	check(r[2] & (1u << 31), "CPUID: hypervisor bit set");
	check((r[1] >> 24) == 0, "CPUID: the boot vCPU has APIC ID 0");
	cpuid(0x40000000, r);
	memcpy(sig, &r[1], 4);
	memcpy(sig + 4, &r[2], 4);
	memcpy(sig + 8, &r[3], 4);
	sig[12] = 0;
	check(!memcmp(sig, "KVMKVMKVM\0\0\0", 12) && r[0] >= 0x40000001,
	      "CPUID: KVM's paravirtual leaves (0x40000000 signature)");
}

static void check_irqchip(void)
{
	uint32_t ver;

	check((mmio_read32(0xfee00020) >> 24) == 0, "LAPIC: in-kernel, ID 0 on the boot vCPU");
	mmio_write32(0xfec00000, 1); /* IOAPIC version register */
	ver = mmio_read32(0xfec00010);
	if (!check(((ver >> 16) & 0xff) == 23, "IOAPIC: in-kernel, 24 pins"))
		note("IOAPIC version", ver);
}

/*
 * conf.serial_in=N: tests/ pipes N bytes of a known pattern into ufvm's stdin, more than
 * the 256-byte receive FIFO holds; every one must arrive, in order: ufvm stops reading
 * stdin while the FIFO is full and resumes as it drains. Polled (LSR.DR), as an early
 * console would; each byte may take a while when the reader has to be woken.
 */
static void check_serial_input(uint64_t n)
{
	const uint16_t b = 0x3f8;
	uint64_t got = 0, bad = ~0ULL;

	if (!n)
		return;
	while (got < n) {
		uint64_t deadline = __builtin_ia32_rdtsc() + 8000000000ULL; /* >= 2 s up to 4 GHz */
		uint8_t v;

		while (!(inb(b + 5) & 0x01) && __builtin_ia32_rdtsc() < deadline)
			;
		if (!(inb(b + 5) & 0x01))
			break;
		v = inb(b + 0);
		if (v != (uint8_t)(got * 7 + (got >> 8) + 1) && bad == ~0ULL)
			bad = got;
		got++;
	}
	if (!check(got == n, "UART: every byte piped into stdin received (none dropped when "
			     "the FIFO was full)"))
		note("bytes received", got);
	if (!check(bad == ~0ULL, "UART: the bytes received are stdin's, in order"))
		note("first bad offset", bad);
}

static void check_uart(void)
{
	const uint16_t b = 0x3f8;
	bool ok;

	check((inb(b + 5) & 0x60) == 0x60, "UART: transmitter empty");
	outb(b + 7, 0xa5);
	check(inb(b + 7) == 0xa5, "UART: scratch register");
	outb(b + 1, 0);
	check((inb(b + 2) & 0x0f) == 0x01, "UART: no interrupt pending with IER 0");

	/* while DLAB or loopback is on, output would not reach the console: check after */
	outb(b + 3, 0x80); /* DLAB */
	outb(b + 0, 0x01);
	outb(b + 1, 0x00);
	ok = inb(b + 0) == 0x01 && inb(b + 1) == 0;
	outb(b + 3, 0x03); /* 8n1 */
	check(ok, "UART: divisor latch");
	outb(b + 4, 0x1a); /* loopback, as Linux's 8250 autoconfig probes */
	ok = (inb(b + 6) & 0xf0) == 0x90;
	outb(b + 0, 'x'); /* looped back into the receiver */
	ok = ok && (inb(b + 5) & 0x01) && inb(b + 0) == 'x';
	outb(b + 4, 0x03);
	check(ok, "UART: loopback: modem status and data");
	check(inb(0x2f8 + 5) == 0xff, "unclaimed port (COM2) reads as all ones");
}

void conf_boot(uint64_t info, bool pvh, const char **cmdline)
{
	const struct boot_params *bp = (const struct boot_params *)info;
	const struct pvh_start_info *si = (const struct pvh_start_info *)info;
	uint64_t initrd = 0, initrd_size = 0, max = 0xffffffff, cmax = 2047;
	const char *c;

	puts_("conformance: entered through the ");
	puts_(pvh ? "PVH 32-bit entry\n" : "64-bit boot protocol entry\n");
	if (pvh) {
		check(si->magic == 0x336ec578 && si->version >= 1,
		      "PVH: start info magic, version");
		c = (const char *)si->cmdline_paddr;
		map.n = si->memmap_entries > 128 ? 128 : si->memmap_entries;
		for (unsigned i = 0; i < map.n; i++) {
			const uint64_t *e = (const uint64_t *)(si->memmap_paddr + 24ULL * i);

			map.addr[i] = e[0], map.size[i] = e[1], map.type[i] = (uint32_t)e[2];
		}
		if (si->nr_modules) {
			const struct pvh_module *m = (const struct pvh_module *)si->modlist_paddr;

			initrd = m->paddr, initrd_size = m->size;
		}
	} else {
		check(bp->hdr.boot_flag == 0xaa55 && bp->hdr.header == 0x53726448,
		      "boot_params: boot flag and HdrS magic");
		check(bp->hdr.type_of_loader == 0xff, "boot_params: type_of_loader");
		check(bp->sentinel == 0, "boot_params: sentinel cleared (only the header copied)");
		check(bp->hdr.cmd_line_ptr != 0 && bp->ext_cmd_line_ptr == 0,
		      "boot_params: command line pointer below 4 GiB");
		c = (const char *)(uint64_t)bp->hdr.cmd_line_ptr;
		map.n = bp->e820_entries > 128 ? 128 : bp->e820_entries;
		for (unsigned i = 0; i < map.n; i++) {
			map.addr[i] = bp->e820_table[i].addr;
			map.size[i] = bp->e820_table[i].size;
			map.type[i] = bp->e820_table[i].type;
		}
		initrd = bp->hdr.ramdisk_image;
		initrd_size = bp->hdr.ramdisk_size;
		if (bp->hdr.version >= 0x0203)
			max = bp->hdr.initrd_addr_max;
		if (bp->hdr.version >= 0x0206)
			cmax = bp->hdr.cmdline_size;
	}
	*cmdline = c;
	puts_("conformance: command line: ");
	puts_(c);
	puts_("\n");
	if (!pvh && arg_u64(c, "conf.bzimage", 0)) {
		check(bp->hdr.version == 0x020f, "boot_params: the bzImage's setup header (2.15)");
		check(bp->hdr.code32_start == (uint64_t)_text,
		      "boot_params: loaded at the relocatable kernel's pref_address");
		check(bp->hdr.heap_end_ptr && (bp->hdr.loadflags & 0x81) == 0x81,
		      "boot_params: LOADED_HIGH kept, CAN_USE_HEAP set");
	}
	check_cpu(pvh);
	check_map(arg_u64(c, "conf.mem", 0) << 20);
	check_cmdline(c, cmax);
	check_initrd(initrd, initrd_size, arg_u64(c, "conf.initrd", 0), max,
		     arg_u64(c, "conf.mem", 0) << 20);
	check_mptable((unsigned)arg_u64(c, "conf.cpus", 1));
	check_irqchip();
	check_serial_input(arg_u64(c, "conf.serial_in", 0));
	check_uart();
}
