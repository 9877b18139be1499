/* fuzz_elf.c: the guest ELF loader (boot/elf.c) on arbitrary files */
#include <elf.h>
#include <errno.h>

#include "tests/fuzz/fuzz.h"
#include "boot/boot.h"

static struct mm_mem mem = {.memfd = -1};

void fuzz_init(void)
{
	fuzz_mem_create(&mem, UFVM_MIN_MEM);
}

/* What a successful load promises, checked against the file itself: every PT_LOAD
 * lies in [UFVM_IMAGE_BASE, RAM end) without overlap and holds its file bytes, the
 * entry is in an executable one, and `end` is the highest byte loaded. */
static void check_loaded(const uint8_t *img, size_t len, const struct elf_image *out)
{
	Elf64_Ehdr eh;
	uint64_t end = 0;
	bool entry_ok = false;

	FUZZ_CHECK(len >= sizeof(eh));
	memcpy(&eh, img, sizeof(eh));
	FUZZ_CHECK(out->entry == eh.e_entry);
	FUZZ_CHECK(eh.e_phoff <= len && eh.e_phnum * sizeof(Elf64_Phdr) <= len - eh.e_phoff);
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;

		memcpy(&ph, img + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		FUZZ_CHECK(ph.p_paddr >= UFVM_IMAGE_BASE && ph.p_filesz <= ph.p_memsz);
		FUZZ_CHECK(ph.p_memsz <= mem.size && ph.p_paddr <= mem.size - ph.p_memsz);
		FUZZ_CHECK(ph.p_offset <= len && ph.p_filesz <= len - ph.p_offset);
		FUZZ_CHECK(!memcmp(mem.hva + ph.p_paddr, img + ph.p_offset, ph.p_filesz));
		for (unsigned j = 0; j < i; j++) {
			Elf64_Phdr o;

			memcpy(&o, img + eh.e_phoff + j * sizeof(o), sizeof(o));
			if (o.p_type == PT_LOAD && o.p_memsz)
				FUZZ_CHECK(ph.p_paddr >= o.p_paddr + o.p_memsz ||
					   o.p_paddr >= ph.p_paddr + ph.p_memsz);
		}
		if ((ph.p_flags & PF_X) && eh.e_entry >= ph.p_paddr &&
		    eh.e_entry - ph.p_paddr < ph.p_memsz)
			entry_ok = true;
		if (ph.p_paddr + ph.p_memsz > end)
			end = ph.p_paddr + ph.p_memsz;
	}
	FUZZ_CHECK(entry_ok && out->end == end);
}

void fuzz_one(const uint8_t *data, size_t len)
{
	struct elf_image out = {0, 0};
	const char *why = NULL;
	int err = elf_load(data, len, &mem, &out, &why);

	if (err) {
		FUZZ_CHECK((err == -EINVAL || err == -ENOEXEC) && why && *why);
		return;
	}
	check_loaded(data, len, &out);
}
