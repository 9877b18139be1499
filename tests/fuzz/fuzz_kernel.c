/* fuzz_kernel.c: the Linux kernel-image loaders (bzImage, vmlinux, PVH) on arbitrary files */
#include <elf.h>
#include <errno.h>

#include <asm/bootparam.h>

#include "tests/fuzz/fuzz.h"
#include "boot/boot.h"

/* room for kernels linked at 16 MiB, as the conformance guest is */
#define FUZZ_RAM     (32ULL << 20)
#define INITRD_LEN   8192
#define FUZZ_CMDLINE "console=ttyS0 panic=-1"

static struct mm_mem mem = {.memfd = -1};
static uint8_t initrd[INITRD_LEN];

void fuzz_init(void)
{
	fuzz_mem_create(&mem, FUZZ_RAM);
	for (unsigned i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i * 7 + 3);
}

static bool is_err(int err)
{
	return err == -EINVAL || err == -ENOEXEC || err == -E2BIG;
}

/* A bzImage's promises: the payload at an aligned load address >= 1 MiB, its whole
 * range (init_size included) inside RAM, the zero page holding its setup header. */
static void check_bzimage(const uint8_t *k, size_t len, const struct linux_image *li)
{
	struct setup_header h;
	uint64_t setup;
	const struct boot_params *bp = mm_gpa(&mem, LINUX_ZERO_PAGE, sizeof(*bp));

	memcpy(&h, k + 0x1f1, sizeof(h));
	setup = ((uint64_t)(h.setup_sects ? h.setup_sects : 4) + 1) * 512;
	FUZZ_CHECK(setup < len);
	FUZZ_CHECK(li->load >= LINUX_HIGH && li->load <= li->load_end && li->load_end <= mem.size);
	FUZZ_CHECK(len - setup <= li->load_end - li->load);
	FUZZ_CHECK(!h.relocatable_kernel || li->load % h.kernel_alignment == 0);
	FUZZ_CHECK(li->entry == li->load + 0x200);
	FUZZ_CHECK(!memcmp(mem.hva + li->load, k + setup, len - setup));
	FUZZ_CHECK(bp->hdr.boot_flag == 0xaa55 && bp->hdr.header == LINUX_HDR_MAGIC);
	FUZZ_CHECK(bp->hdr.setup_data == 0 && bp->hdr.code32_start == li->load);
	FUZZ_CHECK(li->boot_params == LINUX_ZERO_PAGE);
}

/* The initrd: page-aligned, above the kernel, inside RAM and below the kernel's limit. */
static void check_initrd(const uint8_t *k, const struct linux_image *li)
{
	uint32_t max = 0x37ffffff;

	if (li->kind == LINUX_BZIMAGE)
		memcpy(&max, k + 0x22c, 4);
	FUZZ_CHECK(li->initrd_len == INITRD_LEN && li->initrd % 4096 == 0);
	FUZZ_CHECK(li->initrd >= li->load_end && li->initrd + INITRD_LEN <= mem.size);
	FUZZ_CHECK(li->initrd + INITRD_LEN - 1 <= max);
	FUZZ_CHECK(!memcmp(mem.hva + li->initrd, initrd, INITRD_LEN));
}

void fuzz_one(const uint8_t *data, size_t len)
{
	bool elf = len >= SELFMAG && !memcmp(data, ELFMAG, SELFMAG);

	/* as ufvm does it, parse then load: once with an initrd and 4 vCPUs, once without */
	for (int pass = 0; pass < 2; pass++) {
		struct linux_image li;
		const char *why = NULL;
		int err = linux_parse(data, len, &li, &why);

		if (err) {
			FUZZ_CHECK(is_err(err) && why && *why);
			return;
		}
		FUZZ_CHECK(elf ? li.kind != LINUX_BZIMAGE : li.kind == LINUX_BZIMAGE);
		FUZZ_CHECK(li.cmdline_max > 0);
		why = NULL;
		err = linux_load(&mem, data, len, pass ? NULL : initrd, pass ? 0 : INITRD_LEN,
				 pass ? 1 : 4, &li, &why);
		if (err) {
			FUZZ_CHECK(is_err(err) && why && *why);
			continue;
		}
		if (li.kind == LINUX_BZIMAGE)
			check_bzimage(data, len, &li);
		else
			FUZZ_CHECK(li.load_end <= mem.size &&
				   li.boot_params ==
				       (li.kind == LINUX_PVH ? LINUX_PVH_INFO : LINUX_ZERO_PAGE));
		if (li.kind == LINUX_PVH)
			FUZZ_CHECK(li.entry < (1ULL << 32));
		if (pass == 0)
			check_initrd(data, &li);
		else
			FUZZ_CHECK(li.initrd == 0 && li.initrd_len == 0);
		err = linux_set_cmdline(&mem, &li, FUZZ_CMDLINE);
		FUZZ_CHECK(err == (li.cmdline_max >= strlen(FUZZ_CMDLINE) ? 0 : -E2BIG));
		if (!err)
			FUZZ_CHECK(!strcmp((char *)mem.hva + LINUX_CMDLINE, FUZZ_CMDLINE));
	}
}
