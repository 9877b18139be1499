/* linux.c: the Linux x86-64 boot protocol: bzImage, vmlinux and PVH kernels, their header checks */
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <asm/bootparam.h>

#include "boot/boot.h"

#define MIN_PROTOCOL	   0x020c /* 2.12: XLF_KERNEL_64 says the 64-bit entry is there */
#define ENTRY64_OFFSET	   0x200
#define HDR_END_MIN	   0x264 /* init_size's end: a 2.12 header holds every field read here */
#define XEN_ELFNOTE_PHYS32 18

static _Thread_local char linux_msg[192];

int linux_fail(const char **why, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(linux_msg, sizeof(linux_msg), fmt, ap);
	va_end(ap);
	*why = linux_msg;
	return err;
}

/* The PVH entry from an ELF note (name "Xen", type 18), 0 when there is none. */
static uint64_t lx_pvh_entry(const uint8_t *k, size_t len, const Elf64_Ehdr *eh)
{
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		uint64_t off, end;

		memcpy(&ph, k + eh->e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_NOTE ||
		    __builtin_add_overflow(ph.p_offset, ph.p_filesz, &end) || end > len)
			continue;
		for (off = ph.p_offset; off + sizeof(Elf64_Nhdr) <= end;) {
			Elf64_Nhdr n;
			uint64_t name, desc, next;

			memcpy(&n, k + off, sizeof(n));
			name = off + sizeof(n);
			desc = name + ((n.n_namesz + 3ULL) & ~3ULL);
			next = desc + ((n.n_descsz + 3ULL) & ~3ULL);
			if (next > end)
				break;
			if (n.n_type == XEN_ELFNOTE_PHYS32 && n.n_namesz == 4 &&
			    !memcmp(k + name, "Xen", 4) && (n.n_descsz == 4 || n.n_descsz == 8)) {
				uint64_t e = 0;

				memcpy(&e, k + desc, n.n_descsz);
				return e;
			}
			off = next;
		}
	}
	return 0;
}

static int lx_parse_elf(const uint8_t *k, size_t len, struct linux_image *li, const char **why)
{
	Elf64_Ehdr eh;

	if (len < sizeof(eh))
		return linux_fail(why, -ENOEXEC, "vmlinux: file is shorter than an ELF header");
	memcpy(&eh, k, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
		return linux_fail(why, -ENOEXEC, "vmlinux: not an x86-64 ELF64 kernel");
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64 ||
	    eh.e_phoff > len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return linux_fail(why, -EINVAL,
				  "vmlinux: program header table lies outside the file");
	li->entry = lx_pvh_entry(k, len, &eh);
	li->kind = li->entry ? LINUX_PVH : LINUX_VMLINUX;
	if (!li->entry)
		li->entry =
		    eh.e_entry; /* x86-64 vmlinux: e_entry is startup_64's physical address */
	li->cmdline_max = 2047; /* COMMAND_LINE_SIZE - 1 of x86 */
	return 0;
}

static int lx_parse_bzimage(const uint8_t *k, size_t len, struct linux_image *li, const char **why)
{
	struct setup_header h;
	uint64_t setup, payload;

	memcpy(&h, k + 0x1f1, sizeof(h));
	if (h.boot_flag != LINUX_BOOT_FLAG)
		return linux_fail(why, -ENOEXEC, "bzImage: boot flag is 0x%04x, not 0xaa55",
				  h.boot_flag);
	if (h.version < MIN_PROTOCOL)
		return linux_fail(
		    why, -EINVAL,
		    "bzImage: boot protocol %u.%02u is older than 2.12 (no 64-bit entry)",
		    h.version >> 8, h.version & 0xff);
	/* the header ends where its jump lands: past that lies setup code, not fields */
	if (0x202u + k[0x201] < HDR_END_MIN)
		return linux_fail(why, -EINVAL,
				  "bzImage: setup header ends at 0x%x (the jump at 0x200), "
				  "before the 2.12 fields it must hold (up to 0x%x)",
				  0x202u + k[0x201], HDR_END_MIN);
	if (!(h.xloadflags & XLF_KERNEL_64))
		return linux_fail(why, -EINVAL,
				  "bzImage: no 64-bit entry point (XLF_KERNEL_64 clear: "
				  "a 32-bit kernel?)");
	if (!(h.loadflags & LOADED_HIGH))
		return linux_fail(why, -EINVAL, "bzImage: not loaded high (a zImage?)");
	setup = ((uint64_t)(h.setup_sects ? h.setup_sects : 4) + 1) * 512;
	if (setup >= len)
		return linux_fail(why, -EINVAL,
				  "bzImage: truncated: %zu bytes, setup alone is %llu", len,
				  (unsigned long long)setup);
	payload = len - setup;
	if ((uint64_t)h.syssize * 16 > payload)
		return linux_fail(
		    why, -EINVAL,
		    "bzImage: truncated: header says %llu bytes of kernel, file has %llu",
		    (unsigned long long)h.syssize * 16, (unsigned long long)payload);
	if (payload <= ENTRY64_OFFSET)
		return linux_fail(why, -EINVAL,
				  "bzImage: kernel shorter than its 64-bit entry offset");
	if (h.relocatable_kernel &&
	    (h.kernel_alignment < 0x1000 || (h.kernel_alignment & (h.kernel_alignment - 1))))
		return linux_fail(why, -EINVAL,
				  "bzImage: kernel_alignment 0x%x is not a power of 2",
				  h.kernel_alignment);
	li->load = h.pref_address;
	if (h.relocatable_kernel && li->load < LINUX_HIGH) /* pref_address is a wish, if any */
		li->load = LINUX_HIGH;
	if (h.relocatable_kernel) /* round up to the alignment it asks for */
		li->load =
		    (li->load + h.kernel_alignment - 1) & ~(uint64_t)(h.kernel_alignment - 1);
	if (li->load < LINUX_HIGH)
		return linux_fail(why, -EINVAL, "bzImage: load address 0x%llx is below 1 MiB",
				  (unsigned long long)li->load);
	/* a hostile pref_address near 2^64 must not wrap load_end back into RAM */
	if (li->load > LINUX_MAX_MEM ||
	    __builtin_add_overflow(li->load, h.init_size > payload ? h.init_size : payload,
				   &li->load_end))
		return linux_fail(why, -E2BIG, "bzImage: load address 0x%llx lies beyond guest RAM",
				  (unsigned long long)h.pref_address);
	li->kind = LINUX_BZIMAGE;
	li->protocol = h.version;
	li->entry = li->load + ENTRY64_OFFSET;
	li->cmdline_max = h.cmdline_size ? h.cmdline_size : 255;
	return 0;
}

int linux_parse(const uint8_t *k, size_t len, struct linux_image *out, const char **why)
{
	uint32_t magic = 0;

	memset(out, 0, sizeof(*out));
	if (len >= SELFMAG && !memcmp(k, ELFMAG, SELFMAG))
		return lx_parse_elf(k, len, out, why);
	if (len >= 0x206)
		memcpy(&magic, k + 0x202, 4);
	if (magic != LINUX_HDR_MAGIC)
		return linux_fail(why, -ENOEXEC,
				  "not a Linux kernel (no bzImage 'HdrS' header, no "
				  "ELF magic)");
	if (len < 0x1f1 + sizeof(struct setup_header))
		return linux_fail(why, -EINVAL, "bzImage: truncated inside its setup header");
	return lx_parse_bzimage(k, len, out, why);
}
