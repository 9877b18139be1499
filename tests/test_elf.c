/* test_elf.c: the ELF loader on a good image and on every kind of malformed one */
#include <elf.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "boot/boot.h"
#include "vmm/vmm.h"

#define IMG_SIZE 0x3000

static uint8_t img[IMG_SIZE];

/* A valid image: text at 0x800000 (R+X, 0x100 bytes from file offset 0x1000)
 * and data+bss at 0x900000 (0x10 bytes from file, 0x2000 in memory). */
static Elf64_Phdr *make_image(void)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));

	memset(img, 0, sizeof(img));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0x800010;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 2;
	eh->e_ehsize = sizeof(*eh);
	ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_flags = PF_R | PF_X,
			     .p_offset = 0x1000,
			     .p_vaddr = 0x800000,
			     .p_paddr = 0x800000,
			     .p_filesz = 0x100,
			     .p_memsz = 0x100,
			     .p_align = 0x1000};
	ph[1] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_flags = PF_R | PF_W,
			     .p_offset = 0x2000,
			     .p_vaddr = 0x900000,
			     .p_paddr = 0x900000,
			     .p_filesz = 0x10,
			     .p_memsz = 0x2000,
			     .p_align = 0x1000};
	memset(img + 0x1000, 0x90, 0x100);
	memset(img + 0x2000, 0xab, 0x10);
	return ph;
}

static int load(const struct mm_mem *m, size_t len)
{
	struct elf_image out;
	const char *why = NULL;
	int err = elf_load(img, len, m, &out, &why);

	if (err)
		CHECK(why != NULL);
	return err;
}

int main(void)
{
	struct mm_mem m = {.memfd = -1};
	struct elf_image out;
	const char *why = NULL;
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph;

	CHECK(mm_mem_create(&m, 16ULL << 20) == 0);
	if (check_failures)
		CHECK_DONE();

	/* the good image loads; bss is left to fresh RAM's zeros: its second page is never
	 * written, so the memfd holds no data from there on */
	make_image();
	CHECK(elf_load(img, IMG_SIZE, &m, &out, &why) == 0);
	CHECK(out.entry == 0x800010 && out.end == 0x902000);
	CHECK(lseek(m.memfd, 0x901000, SEEK_DATA) < 0 && errno == ENXIO);
	CHECK(m.hva[0x800000] == 0x90 && m.hva[0x8000ff] == 0x90);
	CHECK(m.hva[0x900000] == 0xab && m.hva[0x90000f] == 0xab);
	CHECK(m.hva[0x900010] == 0 && m.hva[0x901fff] == 0);

	/* truncated: shorter than the header, than the phdrs, than a segment */
	make_image();
	CHECK(load(&m, 10) == -ENOEXEC);
	CHECK(load(&m, sizeof(Elf64_Ehdr) + 8) == -EINVAL);
	CHECK(load(&m, 0x2008) == -EINVAL);
	CHECK(load(&m, 0) == -ENOEXEC);

	make_image();
	img[0] = 0x7e;
	CHECK(load(&m, IMG_SIZE) == -ENOEXEC);
	make_image();
	img[EI_CLASS] = ELFCLASS32;
	CHECK(load(&m, IMG_SIZE) == -ENOEXEC);
	make_image();
	img[EI_DATA] = ELFDATA2MSB;
	CHECK(load(&m, IMG_SIZE) == -ENOEXEC);
	make_image();
	eh->e_machine = EM_AARCH64;
	CHECK(load(&m, IMG_SIZE) == -ENOEXEC);
	make_image();
	eh->e_type = ET_DYN;
	CHECK(load(&m, IMG_SIZE) == -ENOEXEC);
	make_image();
	eh->e_phentsize = 10;
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	make_image();
	eh->e_phnum = 0;
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	make_image();
	eh->e_phnum = 65;
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	make_image();
	eh->e_phoff = UINT64_MAX - 8; /* offset + size overflows */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);

	ph = make_image();
	ph[1].p_filesz = 0x3000; /* filesz > memsz */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	ph = make_image();
	ph[1].p_offset = IMG_SIZE; /* data beyond the end of the file */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	ph = make_image();
	ph[1].p_offset = UINT64_MAX - 4; /* offset + filesz overflows */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	ph = make_image();
	ph[1].p_paddr = UINT64_MAX - 0x1000; /* paddr + memsz overflows */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	ph = make_image();
	ph[1].p_paddr = (16ULL << 20) - 0x1000; /* runs past the end of RAM */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	ph = make_image();
	ph[1].p_memsz = 1ULL << 40; /* huge bss */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	ph = make_image();
	ph[1].p_paddr = 0x1000; /* over the GDT and page tables */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	ph = make_image();
	ph[1].p_paddr = 0x8000f0; /* overlaps the text segment */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	ph = make_image();
	ph[0].p_type = PT_NOTE;
	ph[1].p_type = PT_NOTE; /* nothing to load */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	make_image();
	eh->e_entry = 0x900000; /* entry in a non-executable segment */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);
	make_image();
	eh->e_entry = 0x700000; /* entry outside every segment */
	CHECK(load(&m, IMG_SIZE) == -EINVAL);

	mm_mem_destroy(&m);
	CHECK_DONE();
}
