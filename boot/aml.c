/* aml.c: a growable byte buffer and the few AML opcodes and resource descriptors ufvm's DSDT needs
 */
#include <stdlib.h>
#include <string.h>

#include "boot/boot.h"

/* AML opcodes (ACPI 6.5, section 20.3) */
#define AML_ZERO	0x00
#define AML_ONE		0x01
#define AML_NAME	0x08
#define AML_BYTE	0x0a
#define AML_WORD	0x0b
#define AML_DWORD	0x0c
#define AML_STRING	0x0d
#define AML_QWORD	0x0e
#define AML_SCOPE	0x10
#define AML_BUFFER	0x11
#define AML_PACKAGE	0x12
#define AML_EXT		0x5b
#define AML_DEVICE	0x82 /* after AML_EXT */
#define AML_ROOT	0x5c /* '\' */
#define AML_DUAL_NAME	0x2e
#define AML_MULTI_NAME	0x2f
#define AML_PKG_MAX_LEN ((1u << 28) - 1)

void abuf_put(struct abuf *b, const void *p, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *q;

		while (cap - b->len < n)
			cap *= 2;
		q = realloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void abuf_u8(struct abuf *b, uint8_t v)
{
	abuf_put(b, &v, 1);
}

void abuf_le(struct abuf *b, uint64_t v, unsigned bytes)
{
	uint8_t le[8];

	for (unsigned i = 0; i < bytes; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	abuf_put(b, le, bytes);
}

void abuf_pad(struct abuf *b, size_t align)
{
	while (!b->oom && b->len % align)
		abuf_u8(b, 0);
}

void abuf_free(struct abuf *b)
{
	free(b->p);
	*b = (struct abuf){0};
}

/*
 * A name string: an optional '\' and dot-separated segments of up to 4 characters, each
 * padded with '_' ("\_SB", "COM1", "_SB.VR00"). The callers pass constants and names they
 * format themselves; a segment that is not [A-Z_][A-Z0-9_]* is a bug, caught by the unit test
 * through iasl.
 */
void aml_name_string(struct abuf *b, const char *name)
{
	unsigned segs = 1;

	if (*name == '\\') {
		abuf_u8(b, AML_ROOT);
		name++;
	}
	for (const char *p = name; *p; p++)
		segs += *p == '.';
	if (segs == 2)
		abuf_u8(b, AML_DUAL_NAME);
	else if (segs > 2) {
		abuf_u8(b, AML_MULTI_NAME);
		abuf_u8(b, (uint8_t)segs);
	}
	while (segs--) {
		char seg[4] = {'_', '_', '_', '_'};

		for (unsigned i = 0; *name && *name != '.'; name++)
			if (i < 4)
				seg[i++] = *name;
		abuf_put(b, seg, 4);
		name += *name == '.';
	}
}

/* The smallest encoding of an integer: ZeroOp, OneOp or a Byte/Word/DWord/QWord constant. */
void aml_int(struct abuf *b, uint64_t v)
{
	if (v <= 1) {
		abuf_u8(b, v ? AML_ONE : AML_ZERO);
	} else if (v <= 0xff) {
		abuf_u8(b, AML_BYTE);
		abuf_u8(b, (uint8_t)v);
	} else if (v <= 0xffff) {
		abuf_u8(b, AML_WORD);
		abuf_le(b, v, 2);
	} else if (v <= 0xffffffff) {
		abuf_u8(b, AML_DWORD);
		abuf_le(b, v, 4);
	} else {
		abuf_u8(b, AML_QWORD);
		abuf_le(b, v, 8);
	}
}

void aml_string(struct abuf *b, const char *s)
{
	abuf_u8(b, AML_STRING);
	abuf_put(b, s, strlen(s) + 1);
}

/* EisaId ("PNP0501"): three letters of 5 bits and four hex digits, stored big-endian. */
void aml_eisaid(struct abuf *b, const char *id)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < 3; i++)
		v = v << 5 | ((unsigned)(id[i] - 0x40) & 0x1f);
	for (unsigned i = 3; i < 7; i++) {
		char c = id[i];

		v = v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	abuf_u8(b, AML_DWORD);
	abuf_u8(b, (uint8_t)(v >> 24));
	abuf_u8(b, (uint8_t)(v >> 16));
	abuf_u8(b, (uint8_t)(v >> 8));
	abuf_u8(b, (uint8_t)v);
}

void aml_name(struct abuf *b, const char *name)
{
	abuf_u8(b, AML_NAME);
	aml_name_string(b, name);
}

/*
 * Scopes, devices, packages and buffers start with a PkgLength that counts itself and
 * everything up to the end of the object, so it is known only when the object closes:
 * aml_open notes where the body starts, aml_close encodes the length (1 to 4 bytes) and
 * moves the body up to make room, as QEMU's aml-build does when a scope is closed.
 */
size_t aml_open(struct abuf *b, uint8_t op)
{
	if (op == AML_DEVICE)
		abuf_u8(b, AML_EXT);
	abuf_u8(b, op);
	return b->len;
}

void aml_close(struct abuf *b, size_t body)
{
	size_t n = b->len - body, total;
	uint8_t enc[4];
	unsigned k;

	if (b->oom)
		return;
	for (k = 1; k < 4 && n + k >= (k == 1 ? 64u : 1u << (4 + 8 * (k - 1))); k++)
		;
	total = n + k;
	if (total > AML_PKG_MAX_LEN) { /* 256 MiB of AML: not from ufvm's few devices */
		b->oom = true;
		return;
	}
	if (k == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)((k - 1) << 6 | (total & 0xf));
		for (unsigned i = 1; i < k; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	abuf_put(b, enc, k); /* grow by k, then shift the body up */
	if (b->oom)
		return;
	memmove(b->p + body + k, b->p + body, n);
	memcpy(b->p + body, enc, k);
}

size_t aml_scope(struct abuf *b, const char *name)
{
	size_t body = aml_open(b, AML_SCOPE);

	aml_name_string(b, name);
	return body;
}

size_t aml_device(struct abuf *b, const char *name)
{
	size_t body = aml_open(b, AML_DEVICE);

	aml_name_string(b, name);
	return body;
}

size_t aml_package(struct abuf *b, uint8_t elements)
{
	size_t body = aml_open(b, AML_PACKAGE);

	abuf_u8(b, elements);
	return body;
}

/* ResourceTemplate () { res }: a Buffer of the descriptors and an End Tag whose checksum
 * byte is 0 ("the checksum is treated as correct"), as iasl writes it. */
void aml_resource_template(struct abuf *b, const struct abuf *res)
{
	size_t body = aml_open(b, AML_BUFFER);

	aml_int(b, res->len + 2);
	abuf_put(b, res->p, res->len);
	abuf_u8(b, 0x79); /* small item: End Tag, 1 byte */
	abuf_u8(b, 0);
	aml_close(b, body);
	if (res->oom)
		b->oom = true;
}

/* IO (Decode16, base, base, 1, len): a fixed range of ports. */
void aml_res_io(struct abuf *r, uint16_t base, uint8_t len)
{
	abuf_u8(r, 0x47); /* small item 0x08 (I/O port), 7 bytes */
	abuf_u8(r, 1);	  /* decodes 16 address bits */
	abuf_le(r, base, 2);
	abuf_le(r, base, 2);
	abuf_u8(r, 1); /* alignment */
	abuf_u8(r, len);
}

/* IRQNoFlags () {irq}: an ISA IRQ, edge-triggered, active high. */
void aml_res_irq_noflags(struct abuf *r, unsigned irq)
{
	abuf_u8(r, 0x22); /* small item 0x04 (IRQ), 2 bytes */
	abuf_le(r, 1u << irq, 2);
}

/* Memory32Fixed (ReadWrite, base, len) */
void aml_res_mem32_fixed(struct abuf *r, uint32_t base, uint32_t len)
{
	abuf_u8(r, 0x86); /* large item 0x06 */
	abuf_le(r, 9, 2);
	abuf_u8(r, 1); /* read-write */
	abuf_le(r, base, 4);
	abuf_le(r, len, 4);
}

/* Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi} */
void aml_res_interrupt(struct abuf *r, uint32_t gsi)
{
	abuf_u8(r, 0x89); /* large item 0x09: extended interrupt */
	abuf_le(r, 6, 2);
	abuf_u8(r, 0x03); /* consumer, edge, active high, exclusive */
	abuf_u8(r, 1);	  /* one interrupt */
	abuf_le(r, gsi, 4);
}
