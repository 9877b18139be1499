/* elf.c: validate a static ELF64 x86-64 guest and place its PT_LOAD segments in guest RAM */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "boot/boot.h"

#define ELF_MAX_PHDRS 64

static int elf_check_header(const Elf64_Ehdr *eh, size_t len, const char **why)
{
	uint64_t ph_end;

	if (len < sizeof(*eh)) {
		*why = "file is shorter than an ELF header";
		return -ENOEXEC;
	}
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) {
		*why = "not an ELF file (bad magic)";
		return -ENOEXEC;
	}
	if (eh->e_ident[EI_CLASS] != ELFCLASS64) {
		*why = "not a 64-bit ELF (wrong class)";
		return -ENOEXEC;
	}
	if (eh->e_ident[EI_DATA] != ELFDATA2LSB) {
		*why = "not a little-endian ELF";
		return -ENOEXEC;
	}
	if (eh->e_machine != EM_X86_64) {
		*why = "not an x86-64 ELF (wrong machine)";
		return -ENOEXEC;
	}
	if (eh->e_type != ET_EXEC) {
		*why = "not a static executable (ELF type is not ET_EXEC)";
		return -ENOEXEC;
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 ||
	    eh->e_phnum > ELF_MAX_PHDRS) {
		*why = "bad program header table size or count";
		return -EINVAL;
	}
	if (__builtin_add_overflow(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr),
				   &ph_end) ||
	    ph_end > len) {
		*why = "program header table lies outside the file";
		return -EINVAL;
	}
	return 0;
}

static int elf_check_segment(const Elf64_Phdr *ph, size_t len, uint64_t mem_size, gpa_t min,
			     const char **why)
{
	uint64_t file_end, mem_end;

	if (ph->p_filesz > ph->p_memsz) {
		*why = "segment file size exceeds its memory size";
		return -EINVAL;
	}
	if (__builtin_add_overflow(ph->p_offset, ph->p_filesz, &file_end) || file_end > len) {
		*why = "segment data lies outside the file (truncated?)";
		return -EINVAL;
	}
	if (__builtin_add_overflow(ph->p_paddr, ph->p_memsz, &mem_end)) {
		*why = "segment address + size overflows";
		return -EINVAL;
	}
	if (ph->p_paddr < min) {
		*why = min == UFVM_IMAGE_BASE
			   ? "segment overlaps the VMM's structures (below 0x800000)"
			   : "segment overlaps the boot structures (below 1 MiB)";
		return -EINVAL;
	}
	if (mem_end > mem_size) {
		*why = "segment lies outside guest RAM (try a larger --mem)";
		return -EINVAL;
	}
	return 0;
}

int elf_load_at(const uint8_t *img, size_t len, const struct mm_mem *mem, gpa_t min,
		struct elf_image *out, const char **why)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph[ELF_MAX_PHDRS];
	unsigned nload = 0, idx[ELF_MAX_PHDRS];
	bool entry_ok = false;
	int err;

	memcpy(&eh, img, len < sizeof(eh) ? len : sizeof(eh));
	err = elf_check_header(&eh, len, why);
	if (err)
		return err;
	memcpy(ph, img + eh.e_phoff, eh.e_phnum * sizeof(Elf64_Phdr));

	out->end = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
			continue;
		err = elf_check_segment(&ph[i], len, mem->size, min, why);
		if (err)
			return err;
		for (unsigned j = 0; j < nload; j++) {
			const Elf64_Phdr *o = &ph[idx[j]];

			if (ph[i].p_paddr < o->p_paddr + o->p_memsz &&
			    o->p_paddr < ph[i].p_paddr + ph[i].p_memsz) {
				*why = "PT_LOAD segments overlap";
				return -EINVAL;
			}
		}
		idx[nload++] = i;
		if ((ph[i].p_flags & PF_X) && eh.e_entry >= ph[i].p_paddr &&
		    eh.e_entry < ph[i].p_paddr + ph[i].p_memsz)
			entry_ok = true;
		if (ph[i].p_paddr + ph[i].p_memsz > out->end)
			out->end = ph[i].p_paddr + ph[i].p_memsz;
	}
	if (nload == 0) {
		*why = "no loadable segment";
		return -EINVAL;
	}
	if (!entry_ok) {
		*why = "entry point is not inside an executable segment";
		return -EINVAL;
	}
	for (unsigned j = 0; j < nload; j++) {
		const Elf64_Phdr *p = &ph[idx[j]];
		uint8_t *dst = mm_gpa(mem, p->p_paddr, p->p_memsz);

		/* bss needs no memset: guest RAM is a new memfd, all zeros, and writing
		 * zeros would commit every page of a hostile 60 GiB bss at load time */
		memcpy(dst, img + p->p_offset, p->p_filesz);
	}
	out->entry = eh.e_entry;
	return 0;
}

int elf_load(const uint8_t *img, size_t len, const struct mm_mem *mem, struct elf_image *out,
	     const char **why)
{
	return elf_load_at(img, len, mem, UFVM_IMAGE_BASE, out, why);
}
