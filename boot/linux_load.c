/* linux_load.c: a Linux kernel, its initrd and boot structures (zero page, PVH info, e820, page
 * tables, GDT) in guest RAM */
#include <errno.h>
#include <string.h>

#include <asm/bootparam.h>

#include "boot/boot.h"

#define E820_RAM      1
#define E820_RESERVED 2
#define PVH_MAGIC     0x336ec578

/* RAM below the EBDA, the reserved hole up to 1 MiB, RAM above. */
static unsigned lx_e820(uint64_t mem, struct boot_e820_entry *e)
{
	e[0] = (struct boot_e820_entry){0, LINUX_EBDA, E820_RAM};
	e[1] = (struct boot_e820_entry){LINUX_EBDA, LINUX_HIGH - LINUX_EBDA, E820_RESERVED};
	e[2] = (struct boot_e820_entry){LINUX_HIGH, mem - LINUX_HIGH, E820_RAM};
	return 3;
}

/* [0, 4 GiB) identity-mapped with 2 MiB pages: the kernel, zero page, command line,
 * initrd and the MMIO windows are all covered whatever the RAM size. */
static void lx_page_tables(const struct mm_mem *mem)
{
	uint64_t *pml4 = mm_gpa(mem, LINUX_PGTABLE, 0x1000);
	uint64_t *pdpt = mm_gpa(mem, LINUX_PGTABLE + 0x1000, 0x1000);
	uint64_t *pd = mm_gpa(mem, LINUX_PGTABLE + 0x2000, 0x4000);

	memset(pml4, 0, 0x6000);
	pml4[0] = (LINUX_PGTABLE + 0x1000) | 0x3;
	for (uint64_t g = 0; g < 4; g++)
		pdpt[g] = (LINUX_PGTABLE + 0x2000 + g * 0x1000) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB */
}

static void lx_gdt(const struct mm_mem *mem)
{
	uint64_t gdt[6] = {
	    [LINUX_SEL_CODE32 / 8] = 0x00cf9b000000ffffULL, /* 32-bit code, flat */
	    [LINUX_SEL_CODE64 / 8] = 0x00af9b000000ffffULL, /* 64-bit code */
	    [LINUX_SEL_DATA / 8] = 0x00cf93000000ffffULL,   /* data, flat */
	    [LINUX_SEL_TSS / 8] = 0x0000890000000067ULL,    /* 32-bit TSS at 0, limit 0x67 */
	};

	mm_copy_to_guest(mem, LINUX_GDT, gdt, sizeof(gdt));
}

static void lx_zero_page(const struct mm_mem *mem, const uint8_t *k, size_t klen,
			 const struct linux_image *li)
{
	struct boot_params *bp = mm_gpa(mem, LINUX_ZERO_PAGE, sizeof(*bp));

	memset(bp, 0, sizeof(*bp));
	if (li->kind == LINUX_BZIMAGE) {
		/* the setup header runs from 0x1f1 to the end its jump instruction gives */
		size_t end = 0x202 + k[0x201];

		if (end > klen)
			end = klen;
		if (end > 0x1f1 + sizeof(bp->hdr))
			end = 0x1f1 + sizeof(bp->hdr);
		memcpy(&bp->hdr, k + 0x1f1, end - 0x1f1);
		/* fields the boot loader writes, whatever the file held */
		bp->hdr.setup_data = 0;
		bp->hdr.hardware_subarch = 0; /* a normal PC */
		bp->hdr.hardware_subarch_data = 0;
	} else {
		bp->hdr.boot_flag = LINUX_BOOT_FLAG;
		bp->hdr.header = LINUX_HDR_MAGIC;
		bp->hdr.kernel_alignment = 0x1000000;
	}
	bp->hdr.type_of_loader = 0xff; /* undefined boot loader */
	bp->hdr.vid_mode = 0xffff;     /* "normal" */
	bp->hdr.loadflags |= CAN_USE_HEAP;
	bp->hdr.heap_end_ptr = 0xfe00;
	bp->hdr.cmd_line_ptr = (uint32_t)LINUX_CMDLINE;
	bp->hdr.ramdisk_image = (uint32_t)li->initrd;
	bp->hdr.ramdisk_size = (uint32_t)li->initrd_len;
	if (li->kind == LINUX_BZIMAGE)
		bp->hdr.code32_start = (uint32_t)li->load;
	bp->e820_entries = (uint8_t)lx_e820(mem->size, bp->e820_table);
}

struct pvh_module {
	uint64_t paddr, size, cmdline_paddr, reserved;
};
struct pvh_memmap {
	uint64_t addr, size;
	uint32_t type, reserved;
};

static void lx_pvh_info(const struct mm_mem *mem, const struct linux_image *li)
{
	struct boot_e820_entry e[4];
	unsigned n = lx_e820(mem->size, e);
	struct pvh_start_info si = {
	    .magic = PVH_MAGIC,
	    .version = 1,
	    .nr_modules = li->initrd_len ? 1 : 0,
	    .modlist_paddr = li->initrd_len ? LINUX_PVH_INFO + 0x40 : 0,
	    .cmdline_paddr = LINUX_CMDLINE,
	    .memmap_paddr = LINUX_PVH_INFO + 0x100,
	    .memmap_entries = n,
	};
	struct pvh_module m = {.paddr = li->initrd, .size = li->initrd_len};

	mm_copy_to_guest(mem, LINUX_PVH_INFO, &si, sizeof(si));
	mm_copy_to_guest(mem, LINUX_PVH_INFO + 0x40, &m, sizeof(m));
	for (unsigned i = 0; i < n; i++) {
		struct pvh_memmap mm = {e[i].addr, e[i].size, e[i].type, 0};

		mm_copy_to_guest(mem, LINUX_PVH_INFO + 0x100 + i * sizeof(mm), &mm, sizeof(mm));
	}
}

static int lx_place_kernel(const struct mm_mem *mem, const uint8_t *k, size_t klen,
			   struct linux_image *li, const char **why)
{
	struct elf_image img;
	uint64_t setup;
	uint8_t *dst;
	int err;

	if (li->kind != LINUX_BZIMAGE) {
		/* vmlinux: PT_LOAD segments at their physical addresses, anywhere from 1 MiB
		 * up (the boot structures live below) */
		err = elf_load_at(k, klen, mem, LINUX_HIGH, &img, why);
		if (err)
			return linux_fail(why, err, "vmlinux: %s", *why);
		li->load = LINUX_HIGH;
		li->load_end = img.end;
		if (li->kind == LINUX_PVH && li->entry >= (1ULL << 32))
			return linux_fail(why, -EINVAL, "PVH entry 0x%llx lies above 4 GiB",
					  (unsigned long long)li->entry);
		return 0;
	}
	if (li->load_end > mem->size)
		return linux_fail(why, -E2BIG,
				  "kernel needs RAM up to %llu MiB (loaded at 0x%llx, init_size "
				  "included) but guest RAM is %llu MiB: try a larger --mem",
				  (unsigned long long)((li->load_end + (1 << 20) - 1) >> 20),
				  (unsigned long long)li->load,
				  (unsigned long long)(mem->size >> 20));
	setup = ((uint64_t)(k[0x1f1] ? k[0x1f1] : 4) + 1) * 512;
	dst = mm_gpa(mem, li->load, klen - setup);
	if (!dst) /* parse checked it; the gate decides all the same */
		return linux_fail(why, -E2BIG, "kernel at 0x%llx does not fit in guest RAM",
				  (unsigned long long)li->load);
	memcpy(dst, k + setup, klen - setup);
	return 0;
}

/* The initrd goes as high as the kernel allows, page-aligned, above the kernel. */
static int lx_place_initrd(const struct mm_mem *mem, const uint8_t *k, const uint8_t *initrd,
			   size_t ilen, struct linux_image *li, const char **why)
{
	uint64_t top = mem->size, max = 0x37ffffff;

	li->initrd = li->initrd_len = 0;
	if (!initrd)
		return 0;
	if (ilen == 0)
		return linux_fail(why, -EINVAL, "initrd is empty");
	if (li->kind == LINUX_BZIMAGE)
		memcpy(&max, k + 0x22c, 4); /* initrd_addr_max */
	if (top > max + 1)
		top = max + 1;
	if (ilen > top || ((top - ilen) & ~0xfffULL) < li->load_end)
		return linux_fail(why, -E2BIG,
				  "initrd (%zu bytes) does not fit in guest RAM between the kernel "
				  "(ends at 0x%llx) and 0x%llx: try a larger --mem",
				  ilen, (unsigned long long)li->load_end, (unsigned long long)top);
	li->initrd = (top - ilen) & ~0xfffULL;
	li->initrd_len = ilen;
	return mm_copy_to_guest(mem, li->initrd, initrd, ilen) < 0
		   ? linux_fail(why, -E2BIG, "initrd does not fit in guest RAM")
		   : 0;
}

int linux_load(const struct mm_mem *mem, const uint8_t *k, size_t klen, const uint8_t *initrd,
	       size_t ilen, unsigned cpus, struct linux_image *li, const char **why)
{
	int err;

	if (mem->size > LINUX_MAX_MEM || mem->size < (16ULL << 20))
		return linux_fail(why, -EINVAL, "Linux guests take 16M..3G of RAM (--mem)");
	if (cpus == 0 || cpus > UFVM_MAX_CPUS)
		return linux_fail(why, -EINVAL, "bad vCPU count %u", cpus);
	err = lx_place_kernel(mem, k, klen, li, why);
	if (err)
		return err;
	err = lx_place_initrd(mem, k, initrd, ilen, li, why);
	if (err)
		return err;
	memset(mm_gpa(mem, 0, LINUX_HIGH), 0, 0x10000); /* GDT .. page tables */
	lx_gdt(mem);
	lx_page_tables(mem);
	boot_mptable(mem, cpus);
	lx_zero_page(mem, k, klen, li);
	li->boot_params = LINUX_ZERO_PAGE;
	if (li->kind == LINUX_PVH) {
		lx_pvh_info(mem, li);
		li->boot_params = LINUX_PVH_INFO;
	}
	return 0;
}

int linux_set_cmdline(const struct mm_mem *mem, const struct linux_image *li, const char *cmdline)
{
	size_t n = strlen(cmdline);

	if (n > li->cmdline_max || n >= LINUX_CMDLINE_MAX)
		return -E2BIG;
	return mm_copy_to_guest(mem, LINUX_CMDLINE, cmdline, n + 1);
}
