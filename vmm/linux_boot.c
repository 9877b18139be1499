/* linux_boot.c: the top level of a Linux guest's run: files, loader, devices, the I/O exit hook */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/linux.h"

#define LINUX_MAX_FILE (1ULL << 30)

/* True when /dev/kvm is PVM (guest CPL 0 emulated: stock kernels cannot boot). */
static bool linux_host_is_pvm(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

int linux_boot_read(struct linux_boot *lb, const struct vmm_opts *o)
{
	const char *why = "";
	int status;

	memset(lb, 0, sizeof(*lb));
	status = vmm_read_file("kernel", o->kernel, LINUX_MAX_FILE, &lb->kernel, &lb->kernel_len);
	if (!status && o->initrd)
		status = vmm_read_file("initrd", o->initrd, LINUX_MAX_FILE, &lb->initrd,
				       &lb->initrd_len);
	if (status)
		return status;
	if (linux_parse(lb->kernel, lb->kernel_len, &lb->li, &why) < 0) {
		fprintf(stderr, "ufvm: kernel %s: %s\n", o->kernel, why);
		return VMM_EXIT_USAGE;
	}
	if (o->initrd && lb->initrd_len == 0) {
		fprintf(stderr, "ufvm: initrd %s: the file is empty\n", o->initrd);
		return VMM_EXIT_USAGE;
	}
	if (o->mem > LINUX_MAX_MEM) {
		fprintf(stderr,
			"ufvm: --mem %llu MiB: Linux guests take at most 3G for now (RAM "
			"stays below the 32-bit MMIO hole)\n",
			(unsigned long long)(o->mem >> 20));
		return VMM_EXIT_USAGE;
	}
	if (linux_host_is_pvm())
		fprintf(
		    stderr,
		    "ufvm: warning: this host's KVM is PVM (/sys/module/kvm_pvm): guest CPL 0 "
		    "code is emulated at about 1M instructions/s and a stock Linux kernel stops "
		    "early with an emulation failure; booting Linux needs a host with hardware "
		    "virtualization (VMX/SVM)\n");
	return 0;
}

int linux_boot_load(struct linux_boot *lb, const struct mm_mem *mem, const struct vmm_opts *o)
{
	const char *why = "";
	int err = linux_load(mem, lb->kernel, lb->kernel_len, lb->initrd, lb->initrd_len, o->cpus,
			     &lb->li, &why);

	/* guest RAM holds them now: no second copy for the run (a 200 MiB initrd) */
	free(lb->kernel);
	free(lb->initrd);
	lb->kernel = lb->initrd = NULL;
	if (err) {
		fprintf(stderr, "ufvm: kernel %s: %s\n", o->kernel, why);
		return VMM_EXIT_USAGE;
	}
	if (o->verbose)
		fprintf(stderr,
			"ufvm: %s: %s, entry 0x%llx, kernel 0x%llx-0x%llx, initrd 0x%llx+%llu\n",
			o->kernel,
			lb->li.kind == LINUX_BZIMAGE ? "bzImage"
			: lb->li.kind == LINUX_PVH   ? "vmlinux (PVH entry)"
						     : "vmlinux",
			(unsigned long long)lb->li.entry, (unsigned long long)lb->li.load,
			(unsigned long long)lb->li.load_end, (unsigned long long)lb->li.initrd,
			(unsigned long long)lb->li.initrd_len);
	return 0;
}

static void lb_stop(void *arg, int status)
{
	vm_stop(arg, status);
}

/* vm->on_io: device port I/O and MMIO. Accesses nobody claims read as all ones and
 * are dropped when written, as on a PC bus: Linux probes ports freely. */
static bool lb_on_io(struct vcpu *v, void *ctx)
{
	struct linux_boot *lb = ctx;
	struct kvm_run *run = v->run;

	if (run->exit_reason == KVM_EXIT_MMIO) {
		unsigned size = run->mmio.len <= 8 ? run->mmio.len : 8;

		if (!dev_bus_access(&lb->dev.bus, DEV_MMIO, run->mmio.phys_addr, run->mmio.data,
				    size, run->mmio.is_write) &&
		    !run->mmio.is_write)
			memset(run->mmio.data, 0xff, size);
		return !atomic_load(&v->vm->stopping);
	}
	{
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		bool write = run->io.direction == KVM_EXIT_IO_OUT;

		for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size)
			if (!dev_bus_access(&lb->dev.bus, DEV_PIO, run->io.port, data, run->io.size,
					    write) &&
			    !write)
				memset(data, 0xff, run->io.size);
	}
	return !atomic_load(&v->vm->stopping);
}

_Static_assert(DEV_MAX_DEVICES <= ACPI_MAX_VIO, "the DSDT must hold every virtio-mmio window");

/* The ACPI tables describe what dev_setup_all set up: every vCPU, the UART, the power
 * management registers and each virtio-mmio window. */
static int lb_acpi(struct linux_boot *lb, const struct vmm_opts *o, const char **why)
{
	struct acpi_machine m = {.cpus = o->cpus,
				 .lapic = LINUX_LAPIC,
				 .ioapic = LINUX_IOAPIC,
				 .ioapic_id = (uint8_t)o->cpus, /* as in the MP table */
				 .com1 = true,
				 .pm_port = DEV_PM_PORT,
				 .nvio = lb->dev.next_mmio};

	for (unsigned i = 0; i < m.nvio; i++)
		m.vio[i] =
		    (struct acpi_vio){lb->dev.vio[i].base, lb->dev.vio[i].len, lb->dev.vio[i].gsi};
	return acpi_write(lb->vm->mem, &lb->li, &m, why);
}

int linux_boot_vm(struct linux_boot *lb, struct vm *vm, const struct vmm_opts *o)
{
	const char *why = "", *failed = "";
	char cmdline[LINUX_CMDLINE_MAX];
	int err;

	err = linux_vm_setup(vm->fd, &why);
	if (err) {
		fprintf(stderr, "ufvm: Linux VM set-up: %s: %s\n", why, strerror(-err));
		return VMM_EXIT_INTERNAL;
	}
	lb->vm = vm;
	lb->dopts = (struct dev_opts){.disk = o->disk,
				      .disk_ro = o->disk_ro,
				      .no_balloon = o->no_balloon,
				      .verbose = o->verbose};
	lb->dev = (struct dev_ctx){.vm_fd = vm->fd,
				   .mem = vm->mem,
				   .opts = &lb->dopts,
				   .stop = lb_stop,
				   .stop_arg = vm,
				   .stop_efd = vm->stop_efd};
	err = dev_setup_all(&lb->dev, &failed, &why);
	if (err) {
		fprintf(stderr, "ufvm: %s%s%s: %s: %s\n", failed,
			o->disk && !strcmp(failed, "virtio-blk") ? " " : "",
			o->disk && !strcmp(failed, "virtio-blk") ? o->disk : "", why,
			strerror(-err));
		return lb->dev.bad_input ? VMM_EXIT_USAGE : VMM_EXIT_INTERNAL;
	}
	lb->devices_up = true;
	vm->balloon = vio_balloon_get(&lb->dev); /* for the control socket */
	err = lb_acpi(lb, o, &why);
	if (err) {
		fprintf(stderr, "ufvm: Linux VM set-up: %s: %s\n", why, strerror(-err));
		return VMM_EXIT_INTERNAL;
	}
	/* the user's command line first, then the devices Linux must probe */
	{
		const char *app = o->append ? o->append : "";
		const char *sep = *app && lb->dev.cmdline[0] ? " " : "";
		size_t len = strlen(app) + strlen(sep) + strlen(lb->dev.cmdline);
		/* the kernel's limit, or ours where the kernel allows more */
		bool ours = lb->li.cmdline_max >= LINUX_CMDLINE_MAX - 1;
		uint64_t max = ours ? LINUX_CMDLINE_MAX - 1 : lb->li.cmdline_max;

		if (len > max) {
			fprintf(stderr,
				"ufvm: --append: the command line with the devices' entries is %zu "
				"bytes; %s at most %llu\n",
				len, ours ? "ufvm takes" : "this kernel accepts",
				(unsigned long long)max);
			return VMM_EXIT_USAGE;
		}
		snprintf(cmdline, sizeof(cmdline), "%s%s%s", app, sep, lb->dev.cmdline);
		if (linux_set_cmdline(vm->mem, &lb->li, cmdline) < 0) {
			fprintf(stderr, "ufvm: --append: cannot write the command line to guest "
					"RAM\n");
			return VMM_EXIT_INTERNAL;
		}
	}
	if (o->verbose)
		fprintf(stderr, "ufvm: command line: %s\n", cmdline);
	if (o->verbose && o->pager.o.mem_limit && o->pager.o.scan_interval_ms)
		fprintf(stderr, "ufvm: under --mem-limit: access sampling every %u ms\n",
			o->pager.o.scan_interval_ms);
	vm->on_io = lb_on_io;
	vm->on_io_ctx = lb;
	return 0;
}

void linux_boot_end(struct linux_boot *lb)
{
	if (lb->devices_up)
		dev_teardown_all(&lb->dev);
	lb->devices_up = false;
	free(lb->kernel);
	free(lb->initrd);
	lb->kernel = lb->initrd = NULL;
}
