/* bochs_rom.S: an option ROM that loads L1 from the ATA disk and enters Linux's PVH entry.
 *
 * Bochs cannot load a kernel itself, and a boot loader reading through BIOS calls spends
 * most of a minute under the emulator. Its BIOS runs this ROM during POST (at 0xd0000,
 * after its ACPI and MP tables are built): switch to 32-bit protected mode, copy the disk's
 * extents to RAM with ATA PIO (rep insw, which Bochs does in bulk), then jump to the
 * kernel's 32-bit PVH entry with %ebx at its hvm_start_info, as the PVH boot ABI asks.
 * l1.py fills the table at LOAD_TABLE (disk extents, start_info, entry) and the checksum.
 */
	.set ROM_BASE, 0xd0000
	.set LOAD_TABLE, 0x180	/* 8 x {u32 lba, u32 sectors, u32 dest}, then start_info, entry */

	.code16
	.text
	.globl _start
_start:
	.byte 0x55, 0xaa, 2	/* signature; 2 x 512 bytes */
	cli
	inb $0x92, %al		/* fast A20 */
	orb $2, %al
	outb %al, $0x92
	lgdtl %cs:gdtr
	movl %cr0, %eax
	orb $1, %al
	movl %eax, %cr0
	ljmpl $0x08, $(ROM_BASE + pm32)

	.code32
pm32:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	movl $0x9f000, %esp
	movl $(ROM_BASE + LOAD_TABLE), %esi
next_extent:
	movl (%esi), %eax	/* first sector */
	movl 4(%esi), %ebp	/* sectors */
	movl 8(%esi), %edi	/* destination */
	testl %ebp, %ebp
	jz enter
next_chunk:
	movl %ebp, %ecx
	cmpl $256, %ecx
	jbe 1f
	movl $256, %ecx
1:	pushl %eax
	pushl %ecx
	call ata_read
	popl %ecx
	popl %eax
	addl %ecx, %eax
	subl %ecx, %ebp
	jnz next_chunk
	addl $12, %esi
	jmp next_extent
enter:
	movl (ROM_BASE + LOAD_TABLE + 96), %ebx	/* hvm_start_info */
	movl (ROM_BASE + LOAD_TABLE + 100), %eax	/* PVH entry */
	jmp *%eax

/* ata_read: %ecx (1..256) sectors from LBA %eax of the primary master to %edi, by PIO */
ata_read:
	movl %eax, %ebx
	movw $0x1f7, %dx
2:	inb %dx, %al		/* wait while busy */
	testb $0x80, %al
	jnz 2b
	movl %ebx, %eax
	shrl $24, %eax
	andb $0x0f, %al
	orb $0xe0, %al		/* LBA, master */
	movw $0x1f6, %dx
	outb %al, %dx
	movb %cl, %al		/* 256 is 0 */
	movw $0x1f2, %dx
	outb %al, %dx
	movl %ebx, %eax
	movw $0x1f3, %dx
	outb %al, %dx
	shrl $8, %eax
	movw $0x1f4, %dx
	outb %al, %dx
	shrl $8, %eax
	movw $0x1f5, %dx
	outb %al, %dx
	movb $0x20, %al		/* READ SECTORS */
	movw $0x1f7, %dx
	outb %al, %dx
3:	movw $0x1f7, %dx
4:	inb %dx, %al
	testb $0x01, %al	/* ERR: stop here, visibly, rather than boot garbage */
	jnz fail
	testb $0x80, %al
	jnz 4b
	testb $0x08, %al	/* DRQ: a sector is ready */
	jz 4b
	pushl %ecx
	movl $256, %ecx
	movw $0x1f0, %dx
	rep insw
	popl %ecx
	loop 3b
	ret
fail:
	hlt
	jmp fail

	.balign 8
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08: flat 32-bit code, accessed (the ROM is read-only) */
	.quad 0x00cf93000000ffff	/* 0x10: flat data */
gdtr:
	.word gdtr - gdt - 1
	.long ROM_BASE + gdt

	.org LOAD_TABLE
	.fill 26, 4, 0		/* the table, filled by l1.py */
	.org 1023
	.byte 0			/* the checksum, filled by l1.py */
