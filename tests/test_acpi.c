/* test_acpi.c: AML encodings, the tables' checksums and links, and what `iasl -d` reads in them */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot/boot.h"
#include "tests/check.h"

/* The expected disassemblies in tests/data/acpi/ come from Debian 12's acpica-tools; another
 * iasl prints the same tables differently, so a mismatch there is a skip, not a failure. */
#define IASL_VERSION "20200925"

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static bool sums_to_zero(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s == 0;
}

/* PkgLength as the spec decodes it, independently of aml.c: (value, bytes it took). */
static uint32_t pkg_decode(const uint8_t *p, unsigned *k)
{
	uint32_t v;

	*k = (p[0] >> 6) + 1u;
	if (*k == 1)
		return p[0] & 0x3f;
	v = p[0] & 0x0f;
	for (unsigned i = 1; i < *k; i++)
		v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
	return v;
}

static void test_pkglength(void)
{
	static const size_t sizes[] = {0,
				       1,
				       61,
				       62,
				       63,
				       64,
				       4093,
				       4094,
				       4095,
				       (1u << 20) - 4,
				       (1u << 20) - 3,
				       (1u << 20) - 2,
				       3000000};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct abuf b = {0};
		size_t n = sizes[i], body;
		unsigned k;
		uint32_t len;
		bool intact = true;

		abuf_u8(&b, 0xaa); /* something before the object */
		body = aml_open(&b, 0x12);
		for (size_t j = 0; j < n; j++)
			abuf_u8(&b, (uint8_t)(j * 7 + 1));
		aml_close(&b, body);
		CHECK(!b.oom && b.p[0] == 0xaa && b.p[1] == 0x12);
		len = pkg_decode(b.p + 2, &k);
		CHECK(len == n + k && b.len == 2 + k + n);
		CHECK(k == (n + 1 < 64 ? 1 : n + 2 < 4096 ? 2 : n + 3 < (1u << 20) ? 3 : 4));
		for (size_t j = 0; j < n && intact; j++)
			intact = b.p[2 + k + j] == (uint8_t)(j * 7 + 1);
		CHECK(intact);
		abuf_free(&b);
	}
}

static bool emits(void (*fn)(struct abuf *, uint64_t), uint64_t v, const char *want, size_t n)
{
	struct abuf b = {0};
	bool ok;

	fn(&b, v);
	ok = !b.oom && b.len == n && !memcmp(b.p, want, n);
	abuf_free(&b);
	return ok;
}

static void test_terms(void)
{
	struct abuf b = {0};

	CHECK(emits(aml_int, 0, "\x00", 1));
	CHECK(emits(aml_int, 1, "\x01", 1));
	CHECK(emits(aml_int, 5, "\x0a\x05", 2));
	CHECK(emits(aml_int, 0x100, "\x0b\x00\x01", 3));
	CHECK(emits(aml_int, 0xd0000000, "\x0c\x00\x00\x00\xd0", 5));
	CHECK(emits(aml_int, 1ULL << 32, "\x0e\x00\x00\x00\x00\x01\x00\x00\x00", 9));
	aml_eisaid(&b, "PNP0501");
	CHECK(b.len == 5 && !memcmp(b.p, "\x0c\x41\xd0\x05\x01", 5));
	b.len = 0;
	aml_name_string(&b, "\\_S5");
	CHECK(b.len == 5 && !memcmp(b.p, "\\_S5_", 5));
	b.len = 0;
	aml_name_string(&b, "_SB.VR00");
	CHECK(b.len == 9 && !memcmp(b.p, "\x2e_SB_VR00", 9));
	b.len = 0;
	aml_name_string(&b, "\\_SB.PCI0.S08");
	CHECK(b.len == 15 && !memcmp(b.p, "\\\x2f\x03_SB_PCI0S08_", 15));
	abuf_free(&b);
}

static const struct acpi_machine test_machine = {
    .cpus = 2,
    .lapic = LINUX_LAPIC,
    .ioapic = LINUX_IOAPIC,
    .ioapic_id = 2,
    .com1 = true,
    .pm_port = 0x600,
    .nvio = 2,
    .vio = {{0xd0000000, 0x1000, 5}, {0xd0001000, 0x1000, 6}},
};

/* The table at gpa inside blob t (built at LINUX_ACPI), checksum verified, or NULL. */
static const uint8_t *table_at(const struct abuf *t, uint64_t gpa, const char *sig)
{
	uint64_t off = gpa - LINUX_ACPI;
	const uint8_t *p;

	if (gpa < LINUX_ACPI || off + 36 > t->len)
		return NULL;
	p = t->p + off;
	if (memcmp(p, sig, 4) || off + le32(p + 4) > t->len || !sums_to_zero(p, le32(p + 4)))
		return NULL;
	return p;
}

static void test_links(const struct acpi_machine *m)
{
	struct abuf t;
	struct acpi_layout lay;
	const uint8_t *r, *x, *f, *a, *d;

	CHECK(acpi_build(m, LINUX_ACPI, &t, &lay) == 0);
	r = t.p + lay.rsdp;
	CHECK(!memcmp(r, "RSD PTR ", 8) && r[15] == 2 && le32(r + 20) == 36);
	CHECK(sums_to_zero(r, 20) && sums_to_zero(r, 36)); /* ACPI 1.0 and extended checksums */
	CHECK((LINUX_ACPI + lay.rsdp) % 16 == 0);	   /* where Linux's scan looks */
	x = table_at(&t, le64(r + 24), "XSDT");
	CHECK(x && le32(x + 4) == 36 + 16);
	if (!x)
		goto out;
	f = table_at(&t, le64(x + 36), "FACP");
	a = table_at(&t, le64(x + 44), "APIC");
	CHECK(f && a);
	if (!f || !a)
		goto out;
	d = table_at(&t, le64(f + 140), "DSDT");
	CHECK(d != NULL && le32(f + 40) == 0); /* X_DSDT only */
	CHECK(le32(f + 4) == 276 && (le32(f + 112) & (1u << 20)));
	CHECK(le32(a + 4) == 44 + 8 * m->cpus + 12 + 6);
	CHECK(t.len <= LINUX_ACPI_MAX);
out:
	abuf_free(&t);
}

static void test_limits(void)
{
	struct acpi_machine m = test_machine;
	struct acpi_layout lay;
	struct abuf t;

	m.cpus = 0;
	CHECK(acpi_build(&m, LINUX_ACPI, &t, &lay) == -EINVAL);
	m.cpus = 256;
	CHECK(acpi_build(&m, LINUX_ACPI, &t, &lay) == -EINVAL);
	m.cpus = 1;
	m.vio[1].base = 0xfffff800; /* the window would cross 4 GiB */
	CHECK(acpi_build(&m, LINUX_ACPI, &t, &lay) == -EINVAL);
	m.vio[1].base = 0xd0001000;
	m.nvio = ACPI_MAX_VIO + 1;
	CHECK(acpi_build(&m, LINUX_ACPI, &t, &lay) == -EINVAL);
	/* the largest machine: 255 vCPUs, every window; still inside LINUX_ACPI_MAX */
	m.cpus = 255;
	m.nvio = ACPI_MAX_VIO;
	for (unsigned i = 0; i < ACPI_MAX_VIO; i++)
		m.vio[i] = (struct acpi_vio){0xd0000000 + 0x1000 * i, 0x1000, 5 + i};
	test_links(&m);
}

/* The file's text without its first comment block (iasl's version, the date, the file name). */
static char *read_dsl(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf, *body;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (!buf)
		return NULL;
	body = strstr(buf, "\n */\n");
	body = body ? body + 5 : buf;
	memmove(buf, body, strlen(body) + 1);
	return buf;
}

static bool iasl_is(const char *version)
{
	FILE *p = popen("iasl -v 2>&1", "r");
	char line[256];
	bool found = false;

	if (!p)
		return false;
	while (fgets(line, sizeof(line), p))
		found = found || strstr(line, version);
	pclose(p);
	return found;
}

/* 0 all equal, 1 a difference, 77 when iasl is missing or another version. */
static int test_iasl(const char *datadir)
{
	static const char *const names[] = {"XSDT", "FACP", "APIC", "DSDT"};
	char dir[] = "/tmp/ufvm-acpi-XXXXXX", path[512], cmd[600];
	bool bless = getenv("UFVM_ACPI_BLESS") != NULL, differ = false;
	struct acpi_layout lay;
	struct abuf t;
	int status = 0;

	if (system("command -v iasl >/dev/null 2>&1") != 0) {
		printf("skipped: iasl not found (Debian's acpica-tools; tools/setup.sh installs "
		       "it)\n");
		return 77;
	}
	if (acpi_build(&test_machine, LINUX_ACPI, &t, &lay) || !mkdtemp(dir))
		return 1;
	for (unsigned i = 0; i < 4; i++) {
		size_t off = i == 0 ? lay.xsdt : i == 1 ? lay.fadt : i == 2 ? lay.madt : lay.dsdt;
		char *got, *want;
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s.dat", dir, names[i]);
		f = fopen(path, "wb");
		if (!f || fwrite(t.p + off, 1, le32(t.p + off + 4), f) != le32(t.p + off + 4)) {
			fprintf(stderr, "%s: cannot write\n", path);
			status = 1;
		}
		if (f)
			fclose(f);
		snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s.dat >/dev/null 2>&1", dir,
			 names[i]);
		if (system(cmd) != 0) {
			fprintf(stderr, "iasl -d %s.dat failed: it does not read our %s\n",
				names[i], names[i]);
			status = 1;
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s.dsl", dir, names[i]);
		got = read_dsl(path);
		snprintf(path, sizeof(path), "%s/%s.dsl", datadir, names[i]);
		if (bless && got && (f = fopen(path, "w"))) {
			fputs(got, f);
			fclose(f);
			printf("wrote %s\n", path);
		}
		want = read_dsl(path);
		if (!got || !want || strcmp(got, want)) {
			fprintf(stderr,
				"%s: iasl -d reads something else than %s (diff %s/%s.dsl "
				"against it; UFVM_ACPI_BLESS=1 rewrites the expected file)\n",
				names[i], path, dir, names[i]);
			differ = true;
		}
		free(got);
		free(want);
	}
	abuf_free(&t);
	if (differ && !iasl_is(IASL_VERSION)) {
		printf("skipped: iasl is not version " IASL_VERSION
		       ", which wrote tests/data/acpi/: its output differs\n");
		return status ? status : 77;
	}
	if (!differ && !status) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "%s: not removed\n", dir);
	}
	return differ ? 1 : status;
}

int main(int argc, char **argv)
{
	int iasl;

	if (argc != 2) {
		fprintf(stderr, "usage: test_acpi DATADIR (tests/data/acpi)\n");
		return 2;
	}
	test_pkglength();
	test_terms();
	test_links(&test_machine);
	test_limits();
	iasl = test_iasl(argv[1]);
	if (check_failures)
		CHECK_DONE();
	return iasl;
}
