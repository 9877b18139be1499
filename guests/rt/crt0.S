/* crt0.S: vCPU entry; the VMM sets %rsp and passes the boot info in %rdi */
	.section .text.start, "ax"
	.globl _start
	.type _start, @function
_start:
	xorl %ebp, %ebp		/* end of the frame chain for backtraces */
	cld
	andq $-16, %rsp		/* the ABI wants (%rsp + 8) % 16 == 0 after the call */
	call rt_start		/* %rdi: struct ufvm_boot_info * */
1:	ud2
	jmp 1b
	.size _start, . - _start

	.section .note.GNU-stack, "", @progbits
