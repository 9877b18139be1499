/* conf.h: the conformance guest's tiny CPL 0 runtime: port and MMIO access, serial output, checks
 */
#ifndef CONF_H
#define CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint32_t mmio_read32(uint64_t a)
{
	return *(volatile uint32_t *)a;
}
static inline void mmio_write32(uint64_t a, uint32_t v)
{
	*(volatile uint32_t *)a = v;
}
static inline void barrier(void)
{
	__asm__ volatile("mfence" ::: "memory");
}

/* runtime.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
void puts_(const char *s);
void put_hex(uint64_t v);
void put_dec(uint64_t v);
/* Record one check: "ok N - what" or "not ok N - what" on the serial console. */
bool check(bool cond, const char *what);
/* Print a detail line under the last check. */
void note(const char *what, uint64_t v);
extern unsigned checks_run, checks_failed;
/* Value of "key=" in the kernel command line (copied to buf), false when absent. */
bool arg(const char *cmdline, const char *key, char *buf, size_t len);
uint64_t arg_u64(const char *cmdline, const char *key, uint64_t dflt);
uint64_t parse_u64(const char *s, const char **end);
/* End the VM on success as conf.exit= says: the i8042 reset line (default), `poweroff`
 * (the ACPI sleep control register) or `acpi_reset` (the FADT's reset register); on a
 * failed check, the ufvm exit hypercall (status 1). */
void conf_exit(const char *cmdline) __attribute__((noreturn));

/* boot.c: what Linux reads at entry */
void conf_boot(uint64_t info, bool pvh, const char **cmdline);
/* acpi.c: the ACPI tables, found as Linux finds them, against the command line's devices */
void conf_acpi(uint64_t info, bool pvh, const char *cmdline);
/* Power off (how = "poweroff") or reset ("acpi_reset") through the registers the FADT
 * names; false when the tables did not name them. */
bool conf_acpi_off(const char *how);
/* virtio.c: every virtio-mmio device announced on the command line */
void conf_virtio(const char *cmdline);

#endif
