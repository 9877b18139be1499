/* swap_store.c: the swap store: slots, and the backend, chosen once at open, that holds the pages
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"

/*
 * The pager sees slots and runs of pages (struct swap_io) only; where the
 * pages live is the backend's business: the io_uring file (swap_file.c) or a
 * memcached cluster (swap_memcached.c, linked into the ufvm-memcached build
 * only: libmemcached has no static library, and the static ufvm starts
 * faster). The slot allocator and the tags stay here and in the pager, so a
 * backend only stores and fetches.
 */
struct swap_store {
	const struct swap_backend *be;
	void *impl;
	struct swap_slots *slots;
};

#define MEMCACHED_SCHEME "memcached://"

static _Thread_local char open_why[SWAP_WHY_LEN];

char *swap_open_why(void)
{
	return open_why;
}

bool swap_is_memcached(const char *path)
{
	return path && !strncmp(path, MEMCACHED_SCHEME, strlen(MEMCACHED_SCHEME));
}

const struct swap_backend *swap_backend_for(const char *path)
{
	if (!swap_is_memcached(path))
		return &swap_file_backend;
	return &swap_memcached_backend ? &swap_memcached_backend : NULL;
}

int swap_open(struct swap_store **out, const struct swap_opts *o, uint64_t max_pages)
{
	static const struct swap_opts defaults;
	struct swap_store *s;
	int err;

	if (!o)
		o = &defaults;
	open_why[0] = 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->be = swap_backend_for(o->path);
	err = -EPROTONOSUPPORT; /* memcached:// in a build without the backend */
	if (!s->be) {
		snprintf(open_why, sizeof(open_why), "this ufvm was built without libmemcached");
		goto err_free;
	}
	err = swap_slots_create(&s->slots, max_pages);
	if (err)
		goto err_free;
	err = s->be->open(&s->impl, o, max_pages);
	if (err)
		goto err_slots;
	*out = s;
	return 0;

err_slots:
	swap_slots_destroy(s->slots);
err_free:
	free(s);
	return err;
}

void swap_close(struct swap_store *s)
{
	if (!s)
		return;
	s->be->close(s->impl);
	swap_slots_destroy(s->slots);
	free(s);
}

const char *swap_backend_name(const struct swap_store *s)
{
	return s->be->name;
}

int swap_write(struct swap_store *s, struct swap_io *ios, unsigned n)
{
	if (n && !ios)
		return -EINVAL;
	return n ? s->be->write(s->impl, ios, n) : 0;
}

int swap_read(struct swap_store *s, struct swap_io *ios, unsigned n)
{
	if (n && !ios)
		return -EINVAL;
	if (!n)
		return 0;
	return n == 1 ? s->be->read(s->impl, ios) : s->be->read_many(s->impl, ios, n);
}

void swap_get_stats(const struct swap_store *s, struct swap_stats *st)
{
	s->be->get_stats(s->impl, st);
}

unsigned swap_servers(const struct swap_store *s, struct swap_server_stats *out, unsigned max)
{
	return s->be->servers ? s->be->servers(s->impl, out, max) : 0;
}

bool swap_reads_concurrent(const struct swap_store *s)
{
	return s->be->concurrent_reads;
}

bool swap_wants_discard(const struct swap_store *s)
{
	return s->be->discard != NULL;
}

void swap_inject_error(struct swap_store *s, bool write, int err, uint64_t after)
{
	if (s->be->inject)
		s->be->inject(s->impl, write, err, after);
}

/* The swap_slot_*() calls the pager uses; the allocator itself is swap_slots.c. */
int64_t swap_slot_alloc(struct swap_store *s)
{
	return swap_slots_get(s->slots, 1);
}

int64_t swap_slot_alloc_run(struct swap_store *s, uint32_t n)
{
	return swap_slots_get(s->slots, n);
}

void swap_slot_free(struct swap_store *s, uint64_t slot)
{
	swap_slots_put(s->slots, slot);
}

void swap_discard(struct swap_store *s, uint64_t slot, uint64_t pfn)
{
	if (!swap_slots_test(s->slots, slot))
		return;
	swap_slots_put(s->slots, slot);
	if (s->be->discard)
		s->be->discard(s->impl, slot, pfn);
}

int swap_slots_freeze(struct swap_store *s, bool drop)
{
	return drop ? swap_slots_drop(s->slots) : swap_slots_to_file(s->slots);
}

uint64_t swap_slots_used(const struct swap_store *s)
{
	return swap_slots_count(s->slots);
}

bool swap_slot_in_use(const struct swap_store *s, uint64_t slot)
{
	return swap_slots_test(s->slots, slot);
}

void swap_describe(const char *path, char *buf, size_t len)
{
	if (swap_is_memcached(path))
		snprintf(buf, len, "swap %s", path);
	else if (path)
		snprintf(buf, len, "swap file %s", path);
	else
		snprintf(buf, len, "swap file (an unlinked file in %s)", swap_default_dir());
}

const char *swap_why(const struct swap_store *s)
{
	const char *w = s && s->be->why ? s->be->why(s->impl) : NULL;

	return w ? w : "";
}
