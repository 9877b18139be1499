/* x86.c: identity page tables, GDT/TSS/IDT, exception stubs and initial vCPU state */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "boot/boot.h"
#include "vmm/vmm.h"

#define PTE_P	  0x1ULL
#define PTE_RW	  0x2ULL
#define PTE_US	  0x4ULL
#define PTE_PS	  0x80ULL
#define PTE_FLAGS (PTE_P | PTE_RW | PTE_US)

#define PML4_GPA  UFVM_PGTABLE_BASE
#define PDPT_GPA  (UFVM_PGTABLE_BASE + 0x1000)
#define PT0_GPA	  (UFVM_PGTABLE_BASE + 0x2000) /* 4 KiB pages of the first 2 MiB */
#define PD_GPA(g) (UFVM_PGTABLE_BASE + 0x3000 + (uint64_t)(g)*0x1000)

/* GDT selectors */
#define SEL_KCODE  0x08
#define SEL_KDATA  0x10
#define SEL_UDATA  0x18
#define SEL_UCODE  0x20
#define SEL_TSS(i) (0x28 + 16 * (i))

/* Port I/O reaches ufvm on every kind of KVM, by two paths (docs/ABI.md):
 * on SVM and VMX the guest runs with IOPL 3, so no CPU-side check stands
 * between it and KVM, which intercepts every port and exits to ufvm; on PVM,
 * which forces IOPL 0, each TSS's I/O permission bitmap opens the hypercall
 * ports to CPL 3. ufvm itself refuses every port it does not serve. */
#define TSS_SIZE	512
#define TSS_IOMAP	104
#define TSS_IOMAP_BYTES (UFVM_EXC_PORT / 8 + 1)
#define TSS_LIMIT	(TSS_IOMAP + TSS_IOMAP_BYTES) /* the byte after the map is 0xff */
#define IDT_VECTORS	32
#define STUB_SIZE	16

#define CR0_PE		 (1ULL << 0)
#define CR0_MP		 (1ULL << 1)
#define CR0_ET		 (1ULL << 4)
#define CR0_NE		 (1ULL << 5)
#define CR0_WP		 (1ULL << 16)
#define CR0_PG		 (1ULL << 31)
#define CR4_PAE		 (1ULL << 5)
#define CR4_OSFXSR	 (1ULL << 9)
#define CR4_OSXMMEXCPT	 (1ULL << 10)
#define EFER_LME	 (1ULL << 8)
#define EFER_LMA	 (1ULL << 10)
#define X86_RFLAGS_IOPL3 (3ULL << 12)

static uint64_t *table(const struct mm_mem *mem, gpa_t gpa)
{
	return mm_gpa(mem, gpa, 0x1000);
}

/* Identity map all of RAM: 4 KiB pages for the first 2 MiB (page 0 absent, so
 * NULL dereferences fault), 2 MiB pages up to 1 GiB, 1 GiB pages beyond where
 * the CPU has them and the whole GiB is RAM. */
static void x86_page_tables(const struct mm_mem *mem, const struct kvm *k)
{
	uint64_t *pml4 = table(mem, PML4_GPA), *pdpt = table(mem, PDPT_GPA);
	uint64_t *pt0 = table(mem, PT0_GPA);
	uint64_t gibs = (mem->size + (1ULL << 30) - 1) >> 30;

	pml4[0] = PDPT_GPA | PTE_FLAGS;
	for (uint64_t p = 1; p < 512; p++)
		pt0[p] = (p << 12) | PTE_FLAGS;
	for (uint64_t g = 0; g < gibs; g++) {
		uint64_t base = g << 30;
		uint64_t *pd;

		if (g > 0 && k->has_1g_pages && base + (1ULL << 30) <= mem->size) {
			pdpt[g] = base | PTE_FLAGS | PTE_PS;
			continue;
		}
		pd = table(mem, PD_GPA(g));
		pdpt[g] = PD_GPA(g) | PTE_FLAGS;
		for (uint64_t e = 0; e < 512 && base + (e << 21) < mem->size; e++)
			pd[e] = (base + (e << 21)) | PTE_FLAGS | PTE_PS;
	}
	table(mem, PD_GPA(0))[0] = PT0_GPA | PTE_FLAGS;
}

static uint64_t seg_desc(uint64_t access, uint64_t flags)
{
	return (access << 40) | (flags << 52) | (0xfULL << 48) | 0xffffULL;
}

static void x86_gdt_tss(const struct mm_mem *mem, unsigned cpus)
{
	uint64_t *gdt = mm_gpa(mem, UFVM_GDT_BASE, 0x1000);

	gdt[SEL_KCODE / 8] = seg_desc(0x9a, 0xa); /* present, DPL 0, code; L, G */
	gdt[SEL_KDATA / 8] = seg_desc(0x92, 0xc);
	gdt[SEL_UDATA / 8] = seg_desc(0xf2, 0xc); /* DPL 3 */
	gdt[SEL_UCODE / 8] = seg_desc(0xfa, 0xa);
	for (unsigned i = 0; i < cpus; i++) {
		uint64_t base = UFVM_TSS_BASE + (uint64_t)i * TSS_SIZE;
		uint8_t *tss = mm_gpa(mem, base, TSS_SIZE);
		uint64_t rsp0 = UFVM_EXC_STACKS + (uint64_t)(i + 1) * UFVM_EXC_STACK_SIZE;
		uint16_t iomap = TSS_IOMAP;
		uint64_t *d = &gdt[SEL_TSS(i) / 8];

		memcpy(tss + 4, &rsp0, 8);
		memcpy(tss + 102, &iomap, 2);
		memset(tss + TSS_IOMAP, 0xff, TSS_IOMAP_BYTES + 1); /* all ports closed */
		/* a 4-byte OUT needs all four of its ports open */
		for (unsigned p = UFVM_HC_PORT(1); p < UFVM_HC_PORT(UFVM_HC_MAX) + 3; p++)
			tss[TSS_IOMAP + p / 8] &= (uint8_t) ~(1u << (p % 8));
		d[0] = (TSS_LIMIT & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
		       (((base >> 24) & 0xff) << 56);
		d[1] = base >> 32;
	}
}

static bool vector_has_error_code(unsigned v)
{
	return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

/* CPL 0 exception stubs. Each pushes (error code, vector) so the frame is
 * uniform, then the common tail reports to the VMM through UFVM_EXC_PORT. The
 * VMM reads the frame at %rsp and stops the VM: only the crash path runs here. */
static void x86_idt_stubs(const struct mm_mem *mem)
{
	uint8_t *code = mm_gpa(mem, UFVM_EXC_CODE_BASE, 0x1000);
	uint64_t *idt = mm_gpa(mem, UFVM_IDT_BASE, IDT_VECTORS * 16);
	uint64_t common = UFVM_EXC_CODE_BASE + IDT_VECTORS * STUB_SIZE;
	uint8_t *c = code + IDT_VECTORS * STUB_SIZE;

	/* mov $UFVM_EXC_PORT, %dx; out %al, %dx; 1: hlt; jmp 1b */
	const uint8_t tail[] = {0x66, 0xba, UFVM_EXC_PORT & 0xff, UFVM_EXC_PORT >> 8, 0xee, 0xf4,
				0xeb, 0xfd};
	memcpy(c, tail, sizeof(tail));

	for (unsigned v = 0; v < IDT_VECTORS; v++) {
		uint64_t at = UFVM_EXC_CODE_BASE + v * STUB_SIZE;
		uint8_t *s = code + v * STUB_SIZE;
		int32_t rel;
		unsigned n = 0;

		if (!vector_has_error_code(v)) {
			s[n++] = 0x6a; /* push $0 */
			s[n++] = 0;
		}
		s[n++] = 0x6a; /* push $v */
		s[n++] = (uint8_t)v;
		s[n++] = 0xe9; /* jmp rel32 common */
		rel = (int32_t)(common - (at + n + 4));
		memcpy(s + n, &rel, 4);

		idt[2 * v] = (at & 0xffff) | ((uint64_t)SEL_KCODE << 16) | (0x8eULL << 40) |
			     (((at >> 16) & 0xffff) << 48);
		idt[2 * v + 1] = at >> 32;
	}
}

int x86_setup_guest(const struct mm_mem *mem, const struct kvm *k, unsigned cpus,
		    const char *cmdline, const struct elf_image *img, uint64_t tsc_khz)
{
	size_t clen = strlen(cmdline);
	uint64_t heap = (img->end + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);

	if (clen >= UFVM_CMDLINE_MAX)
		return -E2BIG;
	if (cpus == 0 || cpus > UFVM_MAX_CPUS)
		return -EINVAL;
	if (heap > mem->size)
		heap = mem->size;
	x86_page_tables(mem, k);
	x86_gdt_tss(mem, cpus);
	x86_idt_stubs(mem);
	/* Write the stacks now, before any pager owns RAM: every guest uses its
	 * stack at once, and a first-touch fault on it would cost a userfaultfd
	 * round trip (and a whole chunk) at start-up for nothing. */
	memset(mm_gpa(mem, UFVM_STACKS_BASE, cpus * UFVM_STACK_SIZE), 0, cpus * UFVM_STACK_SIZE);
	memcpy(mm_gpa(mem, UFVM_CMDLINE_BASE, clen + 1), cmdline, clen + 1);
	for (unsigned i = 0; i < cpus; i++) {
		struct ufvm_boot_info bi = {
		    .mem_size = mem->size,
		    .heap_start = heap,
		    .heap_end = mem->size,
		    .cmdline = UFVM_CMDLINE_BASE,
		    .tsc_khz = tsc_khz,
		    .cpu_index = i,
		    .cpu_count = cpus,
		    .abi_version = UFVM_ABI_VERSION,
		};
		mm_copy_to_guest(mem, UFVM_BOOTINFO_BASE + (uint64_t)i * sizeof(bi), &bi,
				 sizeof(bi));
	}
	return 0;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = sel & 3;
	s->s = 1;
	s->l = code;
	s->db = !code;
	s->g = 1;
}

int x86_setup_vcpu(int fd, const struct kvm *k, unsigned index, uint64_t entry)
{
	struct kvm_sregs sr;
	struct kvm_regs r;
	int err = kvm_set_vcpu_cpuid(fd, k, index, 0);

	if (err)
		return err;
	if (ioctl(fd, KVM_GET_SREGS, &sr) < 0)
		return -errno;
	seg(&sr.cs, SEL_UCODE | 3, 0xb, true);
	seg(&sr.ss, SEL_UDATA | 3, 0x3, false);
	sr.ds = sr.es = sr.fs = sr.gs = sr.ss;
	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.selector = SEL_TSS(index);
	sr.tr.base = UFVM_TSS_BASE + (uint64_t)index * TSS_SIZE;
	sr.tr.limit = TSS_LIMIT;
	sr.tr.type = 0xb; /* busy 64-bit TSS */
	sr.tr.present = 1;
	sr.gdt.base = UFVM_GDT_BASE;
	sr.gdt.limit = SEL_TSS(UFVM_MAX_CPUS) - 1;
	sr.idt.base = UFVM_IDT_BASE;
	sr.idt.limit = IDT_VECTORS * 16 - 1;
	sr.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sr.cr3 = PML4_GPA;
	sr.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	sr.efer = EFER_LME | EFER_LMA;
	if (ioctl(fd, KVM_SET_SREGS, &sr) < 0)
		return -errno;

	memset(&r, 0, sizeof(r));
	r.rip = entry;
	r.rsp = UFVM_STACKS_BASE + (uint64_t)(index + 1) * UFVM_STACK_SIZE;
	r.rdi = UFVM_BOOTINFO_BASE + (uint64_t)index * sizeof(struct ufvm_boot_info);
	/* IOPL 3: QEMU's SVM emulation rejects the I/O bitmap of a busy TSS,
	 * which VMX requires; KVM intercepts every port anyway (see above) */
	r.rflags = 0x2 | X86_RFLAGS_IOPL3;
	return ioctl(fd, KVM_SET_REGS, &r) < 0 ? -errno : 0;
}

const char *x86_exception_name(unsigned v)
{
	static const char *const names[IDT_VECTORS] = {
	    [0] = "#DE divide error",
	    [1] = "#DB debug",
	    [2] = "NMI",
	    [3] = "#BP breakpoint",
	    [4] = "#OF overflow",
	    [5] = "#BR bound range",
	    [6] = "#UD invalid opcode",
	    [7] = "#NM device not available",
	    [8] = "#DF double fault",
	    [10] = "#TS invalid TSS",
	    [11] = "#NP segment not present",
	    [12] = "#SS stack fault",
	    [13] = "#GP general protection",
	    [14] = "#PF page fault",
	    [16] = "#MF x87 error",
	    [17] = "#AC alignment check",
	    [18] = "#MC machine check",
	    [19] = "#XM SIMD exception",
	    [20] = "#VE virtualization",
	    [21] = "#CP control protection",
	};
	return v < IDT_VECTORS && names[v] ? names[v] : "reserved vector";
}
