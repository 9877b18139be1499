/* control_balloon.c: the control socket's `balloon` request: set the target, report the balloon */
#include <errno.h>
#include <string.h>

#include <jansson.h>
#include <linux/virtio_balloon.h>

#include "devices/dev.h"
#include "vmm/vmm.h"

/* VIRTIO_BALLOON_S_* tags by name, as a host would chart them. */
static const char *const stat_names[] = {
    "swap_in",	    "swap_out",		"major_faults", "minor_faults",	  "free_memory",
    "total_memory", "available_memory", "disk_caches",	"hugetlb_allocs", "hugetlb_failures",
};

static json_t *err_msg(const char *msg)
{
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

/* The guest's statistics from its last buffer: only the tags it reported. */
static json_t *stats_json(const struct vio_balloon_info *in)
{
	json_t *o = json_object();

	for (unsigned t = 0; t < sizeof(stat_names) / sizeof(stat_names[0]); t++)
		if (in->stats[t] != UINT64_MAX)
			json_object_set_new(o, stat_names[t],
					    json_integer((json_int_t)in->stats[t]));
	return o;
}

static json_t *info_json(struct ctl_ctx *c, struct vio_balloon *b, bool requested)
{
	struct mm_pager *p = c->vm->mem->pager;
	struct vio_balloon_info in;
	struct mm_pager_stats st;
	json_t *r;

	vio_balloon_get_info(b, &in);
	r = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:b}", "ok", 1, "target_pages",
		      (json_int_t)in.target_pages, "actual_pages", (json_int_t)in.actual_pages,
		      "target_bytes", (json_int_t)in.target_pages * 4096, "inflated_pages",
		      (json_int_t)in.inflated_pages, "deflated_pages",
		      (json_int_t)in.deflated_pages, "reported_pages",
		      (json_int_t)(in.reported_bytes / 4096), "stats", stats_json(&in),
		      "stats_updates", (json_int_t)in.stats_updates, "stats_requested", requested);
	json_object_set_new(r, "inflated_freed_pages",
			    json_integer((json_int_t)in.inflated_freed_pages));
	json_object_set_new(r, "reported_freed_pages",
			    json_integer((json_int_t)in.reported_freed_pages));
	if (p)
		mm_pager_get_stats(p, &st);
	json_object_set_new(r, "discarded_pages",
			    p ? json_integer((json_int_t)st.discarded_pages) : json_null());
	return r;
}

/*
 * {"cmd": "balloon"}: the balloon's state, with the statistics of the guest's
 * last buffer; the held buffer is handed back so the next answer has fresh
 * ones. {"cmd": "balloon", "pages": N}: ask the guest to hold N pages (0
 * deflates it fully); the guest inflates or deflates at its own pace.
 */
json_t *ctl_balloon(struct ctl_ctx *c, json_t *req)
{
	struct vio_balloon *b = c->vm->balloon;
	json_t *j = json_object_get(req, "pages");
	uint64_t max = c->vm->mem->size / 4096;
	bool requested = false;

	if (j && (!json_is_integer(j) || json_integer_value(j) < 0 ||
		  (uint64_t)json_integer_value(j) > max)) {
		char msg[160];

		snprintf(msg, sizeof(msg),
			 "bad argument: 'pages' must be an integer in 0..%llu (guest RAM in 4 KiB "
			 "pages; 0 deflates fully)",
			 (unsigned long long)max);
		return err_msg(msg);
	}
	if (!b)
		return err_msg("not available: this VM has no balloon (ELF guests have none; "
			       "Linux guests lose it with --no-balloon)");
	if (j) {
		if (vio_balloon_set_target(b, (uint32_t)json_integer_value(j)) < 0)
			return err_msg("bad argument: 'pages' is larger than guest RAM");
	} else {
		requested = vio_balloon_request_stats(b) == 0;
	}
	return info_json(c, b, requested);
}
