/* main.c: the conformance guest: enters like Linux, checks what Linux reads, drives the devices */
#include "conf.h"

void conf_main(uint64_t info, bool pvh);

void conf_main(uint64_t info, bool pvh)
{
	const char *cmdline;

	conf_boot(info, pvh, &cmdline);
	conf_acpi(info, pvh, cmdline);
	conf_virtio(cmdline);
	conf_exit(cmdline);
}
