/* control_map.c: the `pagemap` request: one state byte per guest page, base64 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <jansson.h>

#include "vmm/vmm.h"

/* Page codes on the wire (docs/API.md): enum pst_state, or CTL_PAGE_ABSENT when
 * the source only knows whether the page is in memory. */
#define CTL_PAGE_RESIDENT 1 /* PST_RESIDENT */
#define CTL_PAGE_ABSENT	  5

static const char *const code_names[] = {"new",	      "resident", "unmapped",
					 "writeback", "swapped",  "absent"};

static char *base64(const uint8_t *b, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) |
			     (i + 2 < n ? b[i + 2] : 0);

		*o++ = t[v >> 18 & 63];
		*o++ = t[v >> 12 & 63];
		*o++ = i + 1 < n ? t[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? t[v & 63] : '=';
	}
	*o = '\0';
	return s;
}

/*
 * Without the pager the kernel's view is the honest source: mincore() on the
 * shared memfd mapping tells which pages have content in memory, without
 * faulting any in. With it, the page-state table says everything.
 */
static int pagemap_mincore(const struct mm_mem *m, uint64_t first, uint64_t n, uint8_t *code)
{
	if (mincore(m->hva + first * 4096, n * 4096, code) < 0)
		return -errno;
	for (uint64_t i = 0; i < n; i++)
		code[i] = (code[i] & 1) ? CTL_PAGE_RESIDENT : CTL_PAGE_ABSENT;
	return 0;
}

struct json_t *ctl_pagemap(struct ctl_ctx *c, struct json_t *req)
{
	uint64_t npages = c->vm->mem->size / 4096, first = 0, count;
	uint64_t counts[6] = {0};
	json_t *jf = json_object_get(req, "first"), *jc = json_object_get(req, "count");
	json_t *r = NULL, *cj;
	struct mm_pager *p = c->vm->mem->pager;
	uint8_t *code, *age = NULL;
	struct mm_wss w;
	char *s, *as = NULL;
	int err;

	if ((jf && (!json_is_integer(jf) || json_integer_value(jf) < 0 ||
		    (uint64_t)json_integer_value(jf) >= npages)) ||
	    (jc && (!json_is_integer(jc) || json_integer_value(jc) < 1)))
		return json_pack("{s:b, s:s}", "ok", 0, "error",
				 "bad argument: 'first' must be a page number inside guest RAM "
				 "and 'count' a positive integer");
	if (jf)
		first = (uint64_t)json_integer_value(jf);
	count = npages - first;
	if (jc && (uint64_t)json_integer_value(jc) < count)
		count = (uint64_t)json_integer_value(jc);
	code = malloc(count);
	if (!code)
		return NULL;
	if (p && mm_pager_wss(p, &w) == 0 && !(age = malloc(count)))
		goto out;
	err = p ? mm_pager_pagemap(p, first, count, code, age)
		: pagemap_mincore(c->vm->mem, first, count, code);
	if (err) {
		r = json_pack("{s:b, s:s+}", "ok", 0, "error",
			      "pagemap: reading page states failed: ", strerror(-err));
		goto out;
	}
	for (uint64_t i = 0; i < count; i++) {
		unsigned k = code[i] & 0x0f; /* the low nibble is the state, above are flags */

		counts[k < 6 ? k : 5]++;
	}
	s = base64(code, count);
	if (!s || (age && !(as = base64(age, count)))) {
		free(s);
		goto out;
	}
	cj = json_object();
	for (unsigned i = 0; i < 6; i++)
		if (counts[i])
			json_object_set_new(cj, code_names[i], json_integer((json_int_t)counts[i]));
	r = json_pack("{s:b, s:I, s:I, s:i, s:s, s:s, s:s, s:o, s:o}", "ok", 1, "first",
		      (json_int_t)first, "count", (json_int_t)count, "page_size", 4096, "source",
		      p ? "pst" : "mincore", "encoding", "base64", "state", s, "age",
		      as ? json_string(as) : json_null(), "counts", cj);
	free(s);
	free(as);
out:
	free(code);
	free(age);
	return r;
}

/* The `dirty` request: pages written since the previous one (KVM's dirty log). */
struct json_t *ctl_dirty(struct ctl_ctx *c, struct json_t *req)
{
	struct dirty *d = c->vm->dirty;
	uint64_t *bits;
	int64_t n;
	char *s;
	json_t *r;

	(void)req;
	if (!d)
		return json_pack(
		    "{s:b, s:s}", "ok", 0, "error",
		    "not available: dirty tracking is off (run ufvm with --dirty-track)");
	bits = calloc((d->npages + 63) / 64, 8);
	if (!bits)
		return NULL;
	n = dirty_harvest(d, bits);
	if (n < 0) {
		free(bits);
		return json_pack("{s:b, s:s+}", "ok", 0, "error",
				 "dirty: harvest failed: ", strerror((int)-n));
	}
	s = base64((const uint8_t *)bits, (d->npages + 7) / 8); /* x86: words are little-endian */
	free(bits);
	if (!s)
		return NULL;
	r = json_pack("{s:b, s:s, s:I, s:I, s:s, s:s}", "ok", 1, "mode", dirty_mode_name(d->mode),
		      "pages", (json_int_t)d->npages, "dirty_pages", (json_int_t)n, "encoding",
		      "base64-bitmap", "bitmap", s);
	free(s);
	return r;
}
