/* runtime.c: serial output (polled 8250), string helpers, check bookkeeping, command-line args,
 * exit */
#include "conf.h"

#define COM1 0x3f8

unsigned checks_run, checks_failed;

void *memset(void *d, int c, size_t n)
{
	uint8_t *p = d;

	while (n--)
		*p++ = (uint8_t)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	uint8_t *p = d;
	const uint8_t *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *p = a, *q = b;

	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

static void putc_(char c)
{
	while (!(inb(COM1 + 5) & 0x20)) /* LSR: THR empty */
		;
	outb(COM1, (uint8_t)c);
}

void puts_(const char *s)
{
	while (*s)
		putc_(*s++);
}

void put_hex(uint64_t v)
{
	char b[19] = "0x";
	int n = 0;
	uint64_t t = v;

	do {
		n++;
		t >>= 4;
	} while (t);
	for (int i = n - 1; i >= 0; i--, v >>= 4)
		b[2 + i] = "0123456789abcdef"[v & 15];
	b[2 + n] = 0;
	puts_(b);
}

void put_dec(uint64_t v)
{
	char b[21];
	int i = 20;

	b[i] = 0;
	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts_(b + i);
}

bool check(bool cond, const char *what)
{
	checks_run++;
	if (!cond) {
		checks_failed++;
		puts_("not ");
	}
	puts_("ok ");
	put_dec(checks_run);
	puts_(" - ");
	puts_(what);
	puts_("\n");
	return cond;
}

void note(const char *what, uint64_t v)
{
	puts_("#   ");
	puts_(what);
	puts_(" ");
	put_hex(v);
	puts_("\n");
}

bool arg(const char *cmdline, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);
	const char *p = cmdline;

	while (*p) {
		while (*p == ' ')
			p++;
		if (!memcmp(p, key, kl) && p[kl] == '=') {
			size_t n = 0;

			p += kl + 1;
			while (p[n] && p[n] != ' ' && n + 1 < len) {
				buf[n] = p[n];
				n++;
			}
			buf[n] = 0;
			return true;
		}
		while (*p && *p != ' ')
			p++;
	}
	return false;
}

uint64_t parse_u64(const char *s, const char **end)
{
	uint64_t v = 0;
	unsigned base = 10;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (;; s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			break;
		v = v * base + d;
	}
	if (end)
		*end = s;
	return v;
}

uint64_t arg_u64(const char *cmdline, const char *key, uint64_t dflt)
{
	char b[32];

	return arg(cmdline, key, b, sizeof(b)) ? parse_u64(b, NULL) : dflt;
}

void conf_exit(const char *cmdline)
{
	static volatile uint64_t status; /* the exit hypercall's argument struct */
	char how[16] = "i8042";

	arg(cmdline, "conf.exit", how, sizeof(how));
	puts_("conformance: ");
	put_dec(checks_run);
	puts_(" checks, ");
	put_dec(checks_failed);
	puts_(" failed\n");
	if (!checks_failed && !memcmp(how, "i8042", 6)) {
		outb(0x64, 0xfe); /* i8042 reset: ufvm ends the VM with status 0 */
	} else if (!checks_failed) {
		/* ufvm ends the VM with status 0 at the write; no i8042 fallback to hide a miss */
		if (!conf_acpi_off(how))
			puts_("not ok - exit: no ACPI register for conf.exit\n");
		else
			puts_("not ok - exit: the ACPI register write did not end the VM\n");
	}
	status = 1;
	outl(0x502, (uint32_t)(uintptr_t)&status); /* ufvm's exit hypercall */
	for (;;)
		__asm__ volatile("hlt");
}
