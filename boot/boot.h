/* boot.h: guest images and the structures a kernel finds at boot (ELF, Linux boot protocol, e820,
 * MP table) */
#ifndef UFVM_BOOT_H
#define UFVM_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/mm.h"
#include "ufvm/abi.h"

/*
 * Everything here is library code: it writes guest RAM through mm_gpa/mm_copy_to_guest,
 * returns -errno with *why naming the reason, and never prints. vmm/ decides what to say.
 */

/* ---- elf.c: ELF guest image loader ---- */

struct elf_image {
	uint64_t entry;
	uint64_t end; /* highest byte loaded (exclusive) */
};

/* Validate an ELF64 x86-64 static executable held in img[0..len) and place its
 * PT_LOAD segments at their physical addresses in guest RAM, which must be all
 * zeros there (a new memfd): bss is not written, so it costs nothing. On error returns
 * -EINVAL (or -ENOEXEC) and *why says what is wrong; guest RAM may be partly written. */
int elf_load(const uint8_t *img, size_t len, const struct mm_mem *mem, struct elf_image *out,
	     const char **why);
/* elf_load with segments allowed from gpa min up (ELF guests: UFVM_IMAGE_BASE). */
int elf_load_at(const uint8_t *img, size_t len, const struct mm_mem *mem, gpa_t min,
		struct elf_image *out, const char **why);

/* ---- Linux guests ---- */

/*
 * Guest-physical layout of a Linux guest (see docs/linux.md). RAM is one block
 * from 0; [0x9fc00, 0x100000) is reserved in the e820 map (EBDA, MP table).
 */
#define LINUX_GDT	   0x500ULL
#define LINUX_PVH_INFO	   0x6000ULL /* struct hvm_start_info, module list, memory map */
#define LINUX_ZERO_PAGE	   0x7000ULL /* struct boot_params */
#define LINUX_STACK	   0x8ff0ULL
#define LINUX_PGTABLE	   0x9000ULL /* PML4, PDPT, 4 PDs: [0, 4 GiB) identity, 2 MiB pages */
#define LINUX_CMDLINE	   0x20000ULL
#define LINUX_CMDLINE_MAX  4096ULL /* including the NUL, before the kernel's own limit */
#define LINUX_EBDA	   0x9fc00ULL
#define LINUX_ACPI	   0xe0000ULL /* RSDP, then the tables, up to the MP table */
#define LINUX_ACPI_MAX	   0x10000ULL
#define LINUX_MPTABLE	   0xf0000ULL
#define LINUX_RESET_VECTOR 0xffff0ULL /* f000:fff0: a reboot through the BIOS lands here */
#define LINUX_HIGH	   0x100000ULL
#define LINUX_MAX_MEM	   (3ULL << 30) /* RAM stays below the MMIO hole (devices, IOAPIC, LAPIC) */
#define LINUX_TSS_ADDR	   0xfffbd000ULL /* KVM_SET_TSS_ADDR: 3 pages */
#define LINUX_IDMAP_ADDR   0xfffbc000ULL /* KVM_SET_IDENTITY_MAP_ADDR: 1 page */
#define LINUX_IOAPIC	   0xfec00000ULL
#define LINUX_LAPIC	   0xfee00000ULL

/* GDT selectors of the boot protocol: __BOOT_CS, __BOOT_DS; 0x08 is PVH's 32-bit code */
#define LINUX_SEL_CODE32 0x08
#define LINUX_SEL_CODE64 0x10
#define LINUX_SEL_DATA	 0x18
#define LINUX_SEL_TSS	 0x20

/* The bzImage setup header's magic and boot flag (the zero page carries them too). */
#define LINUX_HDR_MAGIC 0x53726448 /* "HdrS" */
#define LINUX_BOOT_FLAG 0xaa55

enum linux_kind { LINUX_BZIMAGE, LINUX_VMLINUX, LINUX_PVH };

struct linux_image {
	enum linux_kind kind;
	uint16_t protocol;	     /* bzImage boot protocol version, e.g. 0x020f */
	uint64_t entry;		     /* gpa: 64-bit entry (bzImage, vmlinux) or 32-bit PVH entry */
	uint64_t load, load_end;     /* the kernel's range, including its init_size */
	uint64_t initrd, initrd_len; /* 0, 0 without an initrd */
	uint64_t boot_params;	     /* %rsi (zero page) or %ebx (PVH start info) at entry */
	uint32_t cmdline_max;	     /* longest command line the kernel accepts, without NUL */
};

/* The PVH start info (xen/include/public/arch-x86/hvm/start_info.h, version 1). */
struct pvh_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};
/* ---- linux.c: the kernel image ---- */
/* Pure: the kind of kernel in k[0..len) and its header checks. -ENOEXEC/-EINVAL + *why. */
int linux_parse(const uint8_t *k, size_t len, struct linux_image *out, const char **why);
/* Format a reason into a thread-local buffer (valid until the thread's next call) for
 * *why and return err: the loader's errors, for boot/ and vmm/linux_setup.c. */
int linux_fail(const char **why, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- linux_load.c: the kernel and its boot structures in guest RAM ---- */
/*
 * Place a parsed kernel, the initrd (may be NULL/0) and every boot structure in
 * guest RAM: zero page or PVH start info, e820 map, MP table for `cpus` vCPUs,
 * page tables and GDT. The command line is written by linux_set_cmdline.
 * -EINVAL/-E2BIG + *why when something does not fit.
 */
int linux_load(const struct mm_mem *mem, const uint8_t *k, size_t klen, const uint8_t *initrd,
	       size_t ilen, unsigned cpus, struct linux_image *li, const char **why);
/* Write the NUL-terminated command line; -E2BIG when longer than li->cmdline_max. */
int linux_set_cmdline(const struct mm_mem *mem, const struct linux_image *li, const char *cmdline);

/* ---- mptable.c ---- */
/* The byte that makes n bytes from p sum to zero (MP and ACPI tables). */
uint8_t boot_checksum(const uint8_t *p, size_t n);
/* The MP floating pointer and configuration table at LINUX_MPTABLE: `cpus` processors
 * (APIC IDs 0..cpus-1), the I/O APIC (ID cpus), ISA IRQ n on pin n. */
void boot_mptable(const struct mm_mem *mem, unsigned cpus);

/* ---- aml.c: a byte buffer and AML ---- */

/* A growable byte buffer. A failed allocation sets oom and drops every later write, so a
 * builder checks once at the end. A zeroed struct is an empty buffer; abuf_free frees it. */
struct abuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};
void abuf_put(struct abuf *b, const void *p, size_t n);
void abuf_u8(struct abuf *b, uint8_t v);
void abuf_le(struct abuf *b, uint64_t v, unsigned bytes); /* little-endian, 1..8 bytes */
void abuf_pad(struct abuf *b, size_t align);		  /* zeros up to a multiple of align */
void abuf_free(struct abuf *b);

/* AML terms (ACPI 6.5, chapter 20). Names are "\_SB", "COM1", "_SB.VR00": segments of up
 * to 4 characters [A-Z_][A-Z0-9_]*, padded with '_'. */
void aml_name_string(struct abuf *b, const char *name);
void aml_name(struct abuf *b, const char *name); /* Name (name, <the term that follows>) */
void aml_int(struct abuf *b, uint64_t v);	 /* the shortest integer encoding */
void aml_string(struct abuf *b, const char *s);
void aml_eisaid(struct abuf *b, const char *id); /* EisaId ("PNP0501") */
/* Objects with a PkgLength: open returns where the body starts; aml_close(b, that) must
 * close them innermost first, once their contents are written. */
size_t aml_open(struct abuf *b, uint8_t op);
void aml_close(struct abuf *b, size_t body);
size_t aml_scope(struct abuf *b, const char *name);
size_t aml_device(struct abuf *b, const char *name);
size_t aml_package(struct abuf *b, uint8_t elements);
/* ResourceTemplate () with the descriptors in res and an End Tag. */
void aml_resource_template(struct abuf *b, const struct abuf *res);
void aml_res_io(struct abuf *r, uint16_t base, uint8_t len); /* IO (Decode16, ...) */
void aml_res_irq_noflags(struct abuf *r, unsigned irq);	     /* IRQNoFlags () {irq}, irq < 16 */
void aml_res_mem32_fixed(struct abuf *r, uint32_t base, uint32_t len); /* ReadWrite */
void aml_res_interrupt(struct abuf *r, uint32_t gsi); /* consumer, edge, active high */

/* ---- acpi.c: the ACPI tables ---- */

/* The power management registers, bytes in I/O space from acpi_machine.pm_port (the
 * device is devices/power.c). The guest writes SLP_TYP << 2 | SLP_EN to the sleep control
 * register; the only SLP_TYP \_S5 offers is ACPI_S5_TYPE. */
#define ACPI_PM_SLEEP_CONTROL 0
#define ACPI_PM_SLEEP_STATUS  1
#define ACPI_PM_RESET	      2
#define ACPI_PM_LEN	      3
#define ACPI_PM_RESET_VALUE   1
#define ACPI_S5_TYPE	      5
#define ACPI_SLP_EN	      (1u << 5)
#define ACPI_MAX_VIO	      16

struct acpi_vio {
	uint64_t base, len; /* a virtio-mmio window, below 4 GiB */
	uint32_t gsi;
};

/* What the tables describe. */
struct acpi_machine {
	unsigned cpus;	   /* APIC IDs 0..cpus-1, 1..255 */
	uint64_t lapic;	   /* LINUX_LAPIC */
	uint64_t ioapic;   /* LINUX_IOAPIC */
	uint8_t ioapic_id; /* as in the MP table */
	bool com1;	   /* a 16550 at 0x3f8, IRQ 4 */
	uint16_t pm_port;  /* the power management registers (ACPI_PM_*) */
	unsigned nvio;
	struct acpi_vio vio[ACPI_MAX_VIO];
};

/* Offsets in the built blob. */
struct acpi_layout {
	size_t rsdp, xsdt, fadt, madt, dsdt;
};

/*
 * Pure: build RSDP, XSDT, FADT, MADT and DSDT into *out (malloc'ed; abuf_free it) as they
 * will lie at guest-physical gpa, every checksum set. -EINVAL for a machine out of range
 * (no vCPU, more than 255, a window above 4 GiB), -ENOMEM.
 */
int acpi_build(const struct acpi_machine *m, uint64_t gpa, struct abuf *out,
	       struct acpi_layout *lay);
/* Write them at LINUX_ACPI and point the zero page (or the PVH start info) at the RSDP.
 * Must be called after linux_load. -errno + *why. */
int acpi_write(const struct mm_mem *mem, const struct linux_image *li, const struct acpi_machine *m,
	       const char **why);

#endif
