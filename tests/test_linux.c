/* test_linux.c: the Linux loader: header checks, placement, zero page, e820, MP table (no KVM) */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <asm/bootparam.h>

#include "tests/check.h"
#include "boot/boot.h"

#define PAYLOAD 0x3000

static uint8_t img[1024 + PAYLOAD];

/* A minimal relocatable bzImage, as guests/conformance/mkbzimage.py writes one. */
static void make_bzimage(void)
{
	struct setup_header *h = (struct setup_header *)(img + 0x1f1);

	memset(img, 0, sizeof(img));
	h->setup_sects = 1;
	h->syssize = PAYLOAD / 16;
	h->boot_flag = 0xaa55;
	img[0x200] = 0xeb;
	img[0x201] = 0x6a;
	h->header = 0x53726448;
	h->version = 0x020f;
	h->loadflags = LOADED_HIGH;
	h->initrd_addr_max = 0x7fffffff;
	h->kernel_alignment = 0x200000;
	h->relocatable_kernel = 1;
	h->xloadflags = XLF_KERNEL_64;
	h->cmdline_size = 100;
	h->pref_address = 0x1000000;
	h->init_size = 0x100000;
	memset(img + 1024, 0xcc, PAYLOAD);
}

static struct setup_header *hdr(void)
{
	return (struct setup_header *)(img + 0x1f1);
}

static const char *parse_why;

static int parse(void)
{
	struct linux_image li;

	parse_why = "";
	return linux_parse(img, sizeof(img), &li, &parse_why);
}

int main(void)
{
	struct mm_mem mem;
	struct linux_image li;
	const char *why = "";
	static uint8_t initrd[5000];
	struct boot_params *bp;
	uint8_t *mp, sum = 0;

	if (mm_mem_create(&mem, 64ULL << 20) < 0)
		return 1;
	make_bzimage();
	CHECK(linux_parse(img, sizeof(img), &li, &why) == 0);
	CHECK(li.kind == LINUX_BZIMAGE && li.load == 0x1000000 && li.entry == 0x1000200);
	CHECK(li.load_end == 0x1100000 && li.cmdline_max == 100);
	memset(initrd, 0x5a, sizeof(initrd));
	CHECK(linux_load(&mem, img, sizeof(img), initrd, sizeof(initrd), 2, &li, &why) == 0);
	CHECK(li.initrd == ((64ULL << 20) - sizeof(initrd)) / 4096 * 4096);
	CHECK(!memcmp(mm_gpa(&mem, li.initrd, sizeof(initrd)), initrd, sizeof(initrd)));
	CHECK(*(uint8_t *)mm_gpa(&mem, 0x1000000, 1) == 0xcc);
	bp = mm_gpa(&mem, LINUX_ZERO_PAGE, sizeof(*bp));
	CHECK(bp->hdr.version == 0x020f && bp->hdr.type_of_loader == 0xff);
	CHECK(bp->hdr.ramdisk_image == li.initrd && bp->hdr.ramdisk_size == sizeof(initrd));
	CHECK(bp->hdr.cmd_line_ptr == LINUX_CMDLINE && bp->hdr.code32_start == 0x1000000);
	CHECK(bp->e820_entries == 3 && bp->e820_table[2].addr == 0x100000 &&
	      bp->e820_table[2].addr + bp->e820_table[2].size == mem.size);
	CHECK(bp->e820_table[1].type == 2 && bp->e820_table[1].addr == LINUX_EBDA);
	mp = mm_gpa(&mem, LINUX_MPTABLE, 16);
	for (int i = 0; i < 16; i++)
		sum += mp[i];
	CHECK(!memcmp(mp, "_MP_", 4) && sum == 0);
	CHECK(linux_set_cmdline(&mem, &li, "console=ttyS0") == 0);
	CHECK(!strcmp(mm_gpa(&mem, LINUX_CMDLINE, 14), "console=ttyS0"));
	{
		char longer[102];

		memset(longer, 'x', 101);
		longer[101] = 0;
		CHECK(linux_set_cmdline(&mem, &li, longer) == -E2BIG); /* cmdline_size 100 */
	}

	/* what does not fit */
	CHECK(linux_load(&mem, img, sizeof(img), initrd, 0, 1, &li, &why) == -EINVAL);
	hdr()->init_size = 64 << 20;
	linux_parse(img, sizeof(img), &li, &why);
	CHECK(linux_load(&mem, img, sizeof(img), NULL, 0, 1, &li, &why) == -E2BIG);
	CHECK(strstr(why, "try a larger --mem") != NULL);
	make_bzimage();
	linux_parse(img, sizeof(img), &li, &why);
	{
		uint8_t *big = calloc(1, 63 << 20);

		CHECK(linux_load(&mem, img, sizeof(img), big, 63 << 20, 1, &li, &why) == -E2BIG);
		free(big);
	}
	hdr()->pref_address = 0x1080000; /* rounded up to the 2 MiB alignment */
	CHECK(linux_parse(img, sizeof(img), &li, &why) == 0 && li.load == 0x1200000);

	/* malformed headers */
	make_bzimage();
	hdr()->boot_flag = 0;
	CHECK(parse() == -ENOEXEC);
	make_bzimage();
	hdr()->version = 0x020b;
	CHECK(parse() == -EINVAL);
	make_bzimage();
	hdr()->xloadflags = 0;
	CHECK(parse() == -EINVAL);
	/* a header whose jump ends it before the 2.12 fields (found by fuzz_kernel): the
	 * zero page would miss HdrS and the fields ufvm checked */
	make_bzimage();
	img[0x201] = 0;
	CHECK(parse() == -EINVAL && strstr(parse_why, "setup header ends at 0x202"));
	img[0x201] = 0x61;
	CHECK(parse() == -EINVAL);
	img[0x201] = 0x62;
	CHECK(parse() == 0);
	make_bzimage();
	hdr()->syssize = PAYLOAD / 16 + 1;
	CHECK(parse() == -EINVAL);
	make_bzimage();
	hdr()->setup_sects = 200; /* setup larger than the file */
	CHECK(parse() == -EINVAL);
	make_bzimage();
	hdr()->kernel_alignment = 0x3000;
	CHECK(parse() == -EINVAL);
	make_bzimage();
	hdr()->pref_address = 0x1000;
	hdr()->relocatable_kernel = 0;
	CHECK(parse() == -EINVAL);
	/* a pref_address near 2^64 must not wrap load_end back into RAM */
	make_bzimage();
	hdr()->relocatable_kernel = 0;
	hdr()->pref_address = 0xfffffffffff00000ULL;
	hdr()->init_size = 0x200000;
	CHECK(parse() == -E2BIG);
	make_bzimage();
	hdr()->pref_address = 0xffffffffff000000ULL; /* relocatable: rounded up, then wraps */
	hdr()->init_size = 0x1200000;
	CHECK(parse() == -E2BIG);
	/* relocatable with no preference: placed at 1 MiB rounded up to its alignment */
	make_bzimage();
	hdr()->pref_address = 0;
	CHECK(linux_parse(img, sizeof(img), &li, &why) == 0 && li.load == 0x200000);
	/* loader-written fields are the loader's, whatever the file held */
	make_bzimage();
	hdr()->setup_data = 0x123456;
	hdr()->hardware_subarch = 2;
	CHECK(linux_parse(img, sizeof(img), &li, &why) == 0);
	CHECK(linux_load(&mem, img, sizeof(img), NULL, 0, 1, &li, &why) == 0);
	CHECK(bp->hdr.setup_data == 0 && bp->hdr.hardware_subarch == 0);
	make_bzimage();
	CHECK(linux_parse(img, 0x1f1, &li, &why) == -ENOEXEC); /* no room for HdrS */
	CHECK(linux_parse(img, 0x210, &li, &why) == -EINVAL);
	CHECK(linux_parse((const uint8_t *)"\177ELF", 4, &li, &why) == -ENOEXEC);

	mm_mem_destroy(&mem);
	CHECK_DONE();
}
