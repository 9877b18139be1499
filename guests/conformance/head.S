/* head.S: the conformance guest's entries: Linux's 64-bit boot entry and the PVH 32-bit entry */
#define BOOT_CS 0x10
#define BOOT_DS 0x18

	.section .head32, "ax"
	.code32
	ud2 /* the 32-bit protocol entry: ufvm must never jump here */

	.section .head64, "ax"
	.code64
	.globl startup_64
startup_64:
	/* Record the machine state exactly as the loader left it, before touching it. */
	movq %rsi, entry_rsi(%rip)
	movw %cs, entry_seg+0(%rip)
	movw %ds, entry_seg+2(%rip)
	movw %es, entry_seg+4(%rip)
	movw %ss, entry_seg+6(%rip)
	pushfq
	popq entry_rflags(%rip)
	movq %cr0, %rax
	movq %rax, entry_cr0(%rip)
	movq %cr4, %rax
	movq %rax, entry_cr4(%rip)
	leaq stack_top(%rip), %rsp
	movq entry_rsi(%rip), %rdi
	xorl %esi, %esi /* not PVH */
	call conf_main
1:	hlt
	jmp 1b

	.text
	.code32
	.globl pvh_start
pvh_start:
	/* PVH: 32-bit protected mode, paging off, %ebx = struct hvm_start_info */
	movl %ebx, pvh_ebx
	movl %cr0, %eax
	movl %eax, entry_cr0
	movw %cs, entry_seg+0
	movw %ds, entry_seg+2
	/* identity-map 4 GiB with 2 MiB pages, then enter long mode ourselves */
	movl $pml4, %edi
	movl $pdpt, %eax
	orl $3, %eax
	movl %eax, (%edi)
	xorl %ecx, %ecx
2:	movl %ecx, %eax
	shll $12, %eax
	addl $pd, %eax
	orl $3, %eax
	movl %eax, pdpt(,%ecx,8)
	incl %ecx
	cmpl $4, %ecx
	jb 2b
	xorl %ecx, %ecx
3:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax
	movl %eax, pd(,%ecx,8)
	movl %ecx, %eax
	shrl $11, %eax
	movl %eax, pd+4(,%ecx,8)
	incl %ecx
	cmpl $2048, %ecx
	jb 3b
	movl %cr4, %eax
	orl $0x20, %eax /* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx /* EFER.LME */
	rdmsr
	orl $0x100, %eax
	wrmsr
	lgdt gdt_desc
	movl %cr0, %eax
	orl $0x80000001, %eax
	movl %eax, %cr0
	ljmp $BOOT_CS, $pvh_64
	.code64
pvh_64:
	movl $BOOT_DS, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	leaq stack_top(%rip), %rsp
	movl pvh_ebx(%rip), %edi
	movl $1, %esi /* PVH */
	call conf_main
4:	hlt
	jmp 4b

	.section .rodata
	.balign 8
gdt:
	.quad 0
	.quad 0
	.quad 0x00af9b000000ffff /* 0x10: 64-bit code */
	.quad 0x00cf93000000ffff /* 0x18: data */
gdt_desc:
	.word gdt_desc - gdt - 1
	.long gdt

#ifdef PVH_NOTE
	/* the PVH entry note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18) */
	.section .note.Xen, "a"
	.balign 4
	.long 4, 4, 18
	.asciz "Xen"
	.long pvh_start
#endif

	.data
	.globl entry_rsi, entry_seg, entry_rflags, entry_cr0, entry_cr4, pvh_ebx
	.balign 8
entry_rsi:	.quad 0
entry_rflags:	.quad 0
entry_cr0:	.quad 0
entry_cr4:	.quad 0
entry_seg:	.word 0, 0, 0, 0
pvh_ebx:	.long 0

	.bss
	.balign 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4 * 4096
	.skip 16384
stack_top:
