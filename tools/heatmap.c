/* heatmap.c: `ufvmctl SOCKET heatmap OUT.png`: idle age and state over guest-physical address and
 * time */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/ufvmctl.h"

#define ROWS_MAX 384 /* address buckets (image rows before scaling) */
#define MAIN_W	 720 /* width of the time axis, px */
#define LEFT	 64
#define TOP	 28
#define BOTTOM	 92
#define STRIP	 24 /* the "now" columns on the right: age, then state */
#define RIGHT	 (8 + STRIP + 4 + STRIP + 8)
#define RAMP_W	 168 /* an age ramp in the legend */

/* One sample: when it was asked for (seconds since the first) and its rows' colours. */
struct shot {
	double t;
	uint8_t *rgb; /* [rows][3] */
};

enum { S_NEW, S_RESIDENT, S_UNMAPPED, S_WRITEBACK, S_SWAPPED, S_ABSENT, S_UNKNOWN };

static const uint8_t bg_rgb[3] = {44, 44, 52};
static const uint8_t state_rgb[7][3] = {
    {10, 10, 14},    /* new: never touched */
    {250, 170, 40},  /* resident */
    {235, 110, 180}, /* unmapped (zapped, young test pending) */
    {170, 80, 255},  /* writeback */
    {40, 110, 235},  /* swapped */
    {70, 80, 110},   /* absent: new or swapped, the source cannot tell */
    {128, 128, 128}, /* unknown code */
};
static const char *const state_name[6] = {"new",       "resident", "unmapped",
					  "writeback", "swapped",  "absent"};

/*
 * The colour of pages [a, b) of one sample: each group of pages (in memory,
 * swapped, new, absent) weighs by its share of the row; in memory and swapped
 * pages take the colour of their mean idle age when the VM reports ages, else
 * of their states. state_only: the colour of the most common state (the state
 * strip: a blend of two states' colours would read as a third state).
 */
static void bucket_rgb(const uint8_t *st, const uint8_t *age, uint64_t a, uint64_t b,
		       bool state_only, uint8_t out[3])
{
	double sum[3] = {0}, mem_age = 0, swap_age = 0, c[3];
	uint64_t nmem = 0, nswap = 0, n = b > a ? b - a : 1;

	if (state_only) {
		uint64_t count[7] = {0};
		unsigned best = 0;

		for (uint64_t i = a; i < b; i++)
			count[(st[i] & 0x0f) < 6 ? (st[i] & 0x0f) : 6]++;
		for (unsigned s = 1; s < 7; s++)
			if (count[s] > count[best])
				best = s;
		memcpy(out, state_rgb[best], 3);
		return;
	}

	for (uint64_t i = a; i < b; i++) {
		unsigned s = st[i] & 0x0f;
		bool mem = s == S_RESIDENT || s == S_UNMAPPED || s == S_WRITEBACK;

		if (!state_only && age && mem) {
			nmem++;
			mem_age += age[i];
		} else if (!state_only && age && s == S_SWAPPED) {
			nswap++;
			swap_age += age[i];
		} else {
			for (int k = 0; k < 3; k++)
				sum[k] += state_rgb[s < 6 ? s : 6][k];
		}
	}
	if (nmem) {
		draw_ramp_at(draw_warm, draw_age_pos(mem_age / (double)nmem), c);
		for (int k = 0; k < 3; k++)
			sum[k] += c[k] * (double)nmem;
	}
	if (nswap) {
		draw_ramp_at(draw_cool, draw_age_pos(swap_age / (double)nswap), c);
		for (int k = 0; k < 3; k++)
			sum[k] += c[k] * (double)nswap;
	}
	for (int k = 0; k < 3; k++)
		out[k] = (uint8_t)(sum[k] / (double)n + 0.5);
}

/* One pagemap sample: the state bytes (and ages, or NULL); page count or -1. */
static int64_t sample(struct uc *c, uint8_t **st, uint8_t **age, const char **why)
{
	static char msg[256];
	json_t *a = uc_cmd(c, "pagemap", why);
	int64_t n = -1;

	*st = *age = NULL;
	if (!a) {
		snprintf(msg, sizeof(msg), "pagemap failed: %s", *why);
		*why = msg;
	} else if (json_is_true(json_object_get(a, "ok"))) {
		n = uc_pagemap_decode(a, "state", st);
		if (uc_pagemap_decode(a, "age", age) != n) {
			free(*age);
			*age = NULL;
		}
		if (n <= 0)
			*why = "pagemap failed: the page states are not base64";
	} else {
		const char *e = json_string_value(json_object_get(a, "error"));

		snprintf(msg, sizeof(msg), "pagemap failed: %s", e ? e : "bad answer");
		*why = msg;
	}
	json_decref(a);
	return n;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
	double d = t - now_s();
	struct timespec ts;

	if (d <= 0)
		return;
	ts.tv_sec = (time_t)d;
	ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
}

/* The sampler's scan interval and pages per sample (wss), after its first scan
 * (waited for up to 3 s: a VM that just started); 0s when it is off. */
static void sampler(struct uc *c, uint64_t *interval_ms, uint64_t *sample_pages)
{
	*interval_ms = *sample_pages = 0;
	for (unsigned i = 0; i < 30 && !*sample_pages; i++) {
		const char *why;
		json_t *a = uc_cmd(c, "wss", &why);
		bool ok = json_is_true(json_object_get(a, "ok"));

		*interval_ms = ok ? uc_u64(a, "interval_ms") : 0;
		*sample_pages = ok ? uc_u64(a, "sample_pages") : 0;
		json_decref(a);
		if (!ok)
			break;
		if (!*sample_pages)
			sleep_until(now_s() + 0.1);
	}
}

/*
 * Pages per row. The sampler tests 16-page block b in phase b % stride
 * (docs/API.md), one phase per interval: a row of whole periods of 16 * stride
 * pages holds the same share of every phase, so rows compare fairly even
 * before every page has been tested once (else a row's contiguous phases show
 * as stripes). Plain rows without sampling, or when periods would be too few.
 */
static uint64_t row_pages(uint64_t npages, uint64_t sample_pages)
{
	uint64_t stride = 1, period, m, plain = (npages + ROWS_MAX - 1) / ROWS_MAX;

	if (!sample_pages)
		return plain;
	while (stride * sample_pages * 3 < npages * 2) /* the power of 2 nearest npages/sample */
		stride *= 2;
	period = 16 * stride;
	if (npages / period < 16)
		return plain;
	m = (npages / period + ROWS_MAX - 1) / ROWS_MAX;
	return m * period;
}

/* The time axis: real seconds since the first sample, at a round step. */
static void time_axis(struct draw_img *m, unsigned y, double total)
{
	static const double steps[] = {0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300};
	static const uint8_t tick[3] = {160, 160, 160};
	double step = steps[sizeof(steps) / sizeof(steps[0]) - 1];
	char s[24];

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (total / steps[i] <= 8) {
			step = steps[i];
			break;
		}
	for (unsigned k = 0; k * step <= total + 1e-9; k++) {
		unsigned x = LEFT + (unsigned)(k * step / total * MAIN_W + 0.5);

		snprintf(s, sizeof(s), step < 1 ? "%.1fs" : "%.0fs", k * step);
		draw_fill(m, x, y, 1, 5, tick);
		if (x + draw_text_w(s) / 2 < LEFT + MAIN_W + 16)
			draw_text(m, x > draw_text_w(s) / 2 ? x - draw_text_w(s) / 2 : 0, y + 7, s);
	}
}

/* One ramp in the legend, labelled with mean ages. */
static unsigned legend_ramp(struct draw_img *m, unsigned x, unsigned y, const char *name,
			    const uint8_t r[DRAW_RAMP_STOPS][3])
{
	static const double marks[] = {0, 1, 4, 16};

	draw_text(m, x, y + 1, name);
	x += draw_text_w(name) + 8;
	for (unsigned i = 0; i < RAMP_W; i++) {
		double c[3];
		uint8_t px[3];

		draw_ramp_at(r, (double)i / (RAMP_W - 1) * (DRAW_RAMP_STOPS - 1), c);
		for (int k = 0; k < 3; k++)
			px[k] = (uint8_t)(c[k] + 0.5);
		draw_fill(m, x + i, y, 1, 12, px);
	}
	for (unsigned i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
		char s[8];
		unsigned at =
		    x + (unsigned)(draw_age_pos(marks[i]) / (DRAW_RAMP_STOPS - 1) * (RAMP_W - 1));

		snprintf(s, sizeof(s), "%.0f", marks[i]);
		draw_text(m, i ? at - draw_text_w(s) / 2 : at, y + 15, s);
	}
	draw_text(m, x + RAMP_W - draw_text_w("64+"), y + 15, "64+");
	return x + RAMP_W + 24;
}

/* Axes, legend and title around the plotted area. */
static void decorate(struct draw_img *m, uint64_t npages, unsigned rows, unsigned rh, double total,
		     unsigned nshots, bool ages, uint64_t interval_ms)
{
	unsigned x = 4, y = TOP + rows * rh;
	char s[96];

	draw_text(m, 4, 6,
		  ages ? "ufvm idle age by address and time: warm in memory, cool swapped"
		       : "ufvm page state by address and time");
	for (unsigned q = 0; q <= 4; q++) {
		snprintf(s, sizeof(s), "%llum", (unsigned long long)(npages * 4096 * q / 4 >> 20));
		draw_text(m, 4, TOP + rows * rh * q / 4 - (q ? 10 : 0), s);
	}
	time_axis(m, y + 2, total);
	snprintf(s, sizeof(s), "%u samples in %.1f s", nshots, total);
	draw_text(m, LEFT + MAIN_W - draw_text_w(s), y + 24, s);
	draw_text(m, LEFT + MAIN_W + 8 + STRIP + 2 - draw_text_w("now") / 2, TOP - 12, "now");
	y = m->h - 54;
	if (ages) {
		x = legend_ramp(m, x, y, "in memory", draw_warm);
		x = legend_ramp(m, x, y, "swapped", draw_cool);
		if (interval_ms)
			snprintf(s, sizeof(s), "mean idle age, x %llu ms",
				 (unsigned long long)interval_ms);
		else
			snprintf(s, sizeof(s), "mean idle age, scans");
		draw_text(m, 4, y - 16, s);
		draw_text(m, 4 + draw_text_w(s) + 16, y - 16, "right: now, age then state");
	}
	x = 4;
	y = m->h - 18;
	draw_text(m, x, y + 1, "state:");
	x += draw_text_w("state:") + 8;
	for (unsigned i = 0; i < 6; i++) {
		draw_fill(m, x, y, 12, 12, state_rgb[i]);
		draw_text(m, x + 16, y + 1, state_name[i]);
		x += 16 + draw_text_w(state_name[i]) + 12;
	}
}

/* Colour one sample's rows (per pages each) into rgb. */
static void shade(const uint8_t *st, const uint8_t *age, uint64_t npages, unsigned rows,
		  uint64_t per, bool state_only, uint8_t *rgb)
{
	for (unsigned r = 0; r < rows; r++) {
		uint64_t a = r * per, b = a + per < npages ? a + per : npages;

		bucket_rgb(st, age, a, b > a ? b : a, state_only, rgb + r * 3);
	}
}

/* Draw the samples, each from its own time to the next one's (real time, not slots). */
static void plot(struct draw_img *m, const struct shot *sh, unsigned n, double total, unsigned rows,
		 unsigned rh)
{
	for (unsigned i = 0; i < n; i++) {
		double t1 = i + 1 < n ? sh[i + 1].t : total;
		unsigned x0 = (unsigned)(sh[i].t / total * MAIN_W + 0.5);
		unsigned x1 = (unsigned)(t1 / total * MAIN_W + 0.5);

		if (x1 <= x0)
			x1 = x0 + 1;
		if (x1 > MAIN_W)
			x1 = MAIN_W;
		for (unsigned r = 0; r < rows && x0 < x1; r++)
			draw_fill(m, LEFT + x0, TOP + r * rh, x1 - x0, rh, sh[i].rgb + r * 3);
	}
}

/*
 * Sample every interval_ms on a fixed schedule (a slow sample skips the
 * deadlines it missed rather than sleeping a fixed time after each one), for
 * `seconds`, then draw the samples at their real times.
 */
int uc_heatmap(struct uc *c, const char *png, double seconds, unsigned interval_ms)
{
	double t0, iv = interval_ms / 1000.0, total;
	unsigned rows = 1, rh = 1, nshots = 0, cap = 0;
	uint8_t *st = NULL, *age = NULL, *last = NULL, *last_age = NULL;
	uint64_t scan_ms, sample_pages, per = 1;
	struct shot *sh = NULL;
	const char *why = "out of memory";
	struct draw_img m = {0};
	int64_t npages = -1;
	int err, status = 1;

	sampler(c, &scan_ms, &sample_pages);
	t0 = now_s();
	for (;;) {
		double t = now_s() - t0, next;
		int64_t n = sample(c, &st, &age, &why);

		if (n > 0 && npages > 0 && n != npages)
			why = "the number of pages changed";
		if (n <= 0 || (npages > 0 && n != npages))
			goto fail;
		if (npages < 0) {
			npages = n;
			per = row_pages((uint64_t)n, sample_pages);
			rows = (unsigned)(((uint64_t)n + per - 1) / per);
			rh = ROWS_MAX / rows;
		}
		if (nshots == cap) {
			struct shot *g = realloc(sh, (cap = cap ? cap * 2 : 64) * sizeof(*sh));

			if (!g)
				goto fail;
			sh = g;
		}
		sh[nshots].t = t;
		sh[nshots].rgb = malloc((size_t)rows * 3);
		if (!sh[nshots].rgb)
			goto fail;
		shade(st, age, (uint64_t)npages, rows, per, false, sh[nshots++].rgb);
		free(last);
		free(last_age);
		last = st;
		last_age = age;
		st = age = NULL;
		/* the next deadline still ahead */
		next = (floor((now_s() - t0) / iv) + 1) * iv;
		if (next >= seconds && nshots >= 2)
			break;
		sleep_until(t0 + next);
	}
	total = now_s() - t0;
	total = total > seconds ? total : seconds;
	m.w = LEFT + MAIN_W + RIGHT;
	m.h = TOP + rows * rh + BOTTOM;
	m.px = malloc((size_t)m.w * m.h * 3);
	if (!m.px)
		goto fail;
	for (size_t i = 0; i < (size_t)m.w * m.h; i++)
		memcpy(m.px + i * 3, bg_rgb, 3);
	plot(&m, sh, nshots, total, rows, rh);
	{
		uint8_t *now = malloc((size_t)rows * 3);

		if (!now)
			goto fail;
		shade(last, NULL, (uint64_t)npages, rows, per, true, now);
		for (unsigned r = 0; r < rows; r++) {
			draw_fill(&m, LEFT + MAIN_W + 8, TOP + r * rh, STRIP, rh,
				  sh[nshots - 1].rgb + r * 3);
			draw_fill(&m, LEFT + MAIN_W + 8 + STRIP + 4, TOP + r * rh, STRIP, rh,
				  now + r * 3);
		}
		free(now);
	}
	decorate(&m, (uint64_t)npages, rows, rh, total, nshots, last_age != NULL, scan_ms);
	err = draw_write_png(&m, png);
	if (err) {
		fprintf(stderr, "ufvmctl: %s: cannot write: %s\n", png, strerror(-err));
		goto out;
	}
	printf("heatmap: %s: %u samples of %lld pages over %.1f s (%ux%u px)\n", png, nshots,
	       (long long)npages, total, m.w, m.h);
	status = 0;
	goto out;
fail:
	fprintf(stderr, "ufvmctl: %s: heatmap: %s\n", c->path, why);
out:
	free(st);
	free(age);
	free(last);
	free(last_age);
	for (unsigned i = 0; i < nshots; i++)
		free(sh[i].rgb);
	free(sh);
	free(m.px);
	return status;
}
