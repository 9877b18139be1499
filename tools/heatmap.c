/* heatmap.c: `ufvmctl SOCKET heatmap OUT.png`: page states over guest-physical address and time */
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/ufvmctl.h"

#define ROWS_MAX 384 /* address buckets (image rows before scaling) */
#define MAIN_W	 720 /* width of the time axis, px */
#define LEFT	 64
#define TOP	 28
#define BOTTOM	 56
#define STRIP	 28 /* the "now" column on the right */

struct img {
	unsigned w, h;
	uint8_t *px; /* RGB */
};

static const uint8_t state_rgb[7][3] = {
    {22, 22, 30},    /* new: never touched */
    {250, 170, 40},  /* resident */
    {235, 110, 180}, /* unmapped (zapped, young test pending) */
    {170, 80, 255},  /* writeback */
    {40, 110, 235},  /* swapped */
    {45, 55, 85},    /* absent: new or swapped, the source cannot tell */
    {128, 128, 128}, /* unknown code */
};
static const char *const state_name[6] = {"new",       "resident", "unmapped",
					  "writeback", "swapped",  "absent"};

/* A resident page's colour by idle age: hot yellow, cooling to red, then purple. */
static void age_rgb(unsigned age, uint8_t out[3])
{
	static const uint8_t ramp[4][3] = {
	    {255, 245, 130}, {250, 170, 40}, {210, 60, 40}, {100, 30, 110}};
	unsigned i = age == 0 ? 0 : age < 3 ? 1 : age < 8 ? 2 : 3;

	memcpy(out, ramp[i], 3);
}

/* 3x5 glyphs, rows top to bottom, 3 bits each (MSB left). */
static unsigned glyph(char ch)
{
	static const char *const chars = "0123456789abcdefghijklmnopqrstuvwxyz.-:/()";
	static const unsigned short g[] = {
	    075557, 026227, 071747, 071717, 055711, 074717, 074757, 071111, 075757, 075717, 025755,
	    065656, 034443, 065556, 074647, 074644, 034553, 055755, 072227, 011152, 055655, 044447,
	    057755, 065555, 025552, 065644, 025563, 065655, 034216, 072222, 055557, 055552, 055775,
	    055255, 055222, 071247, 000002, 000700, 002020, 011244, 024442, 021112};
	const char *p = ch >= 'A' && ch <= 'Z' ? strchr(chars, ch - 'A' + 'a') : strchr(chars, ch);

	return p && ch ? g[p - chars] : 0;
}

static void fill(struct img *m, unsigned x, unsigned y, unsigned w, unsigned h, const uint8_t *c)
{
	for (unsigned j = y; j < y + h && j < m->h; j++)
		for (unsigned i = x; i < x + w && i < m->w; i++)
			memcpy(m->px + ((size_t)j * m->w + i) * 3, c, 3);
}

/* Text at 2x scale: 8 px per character. */
static void text(struct img *m, unsigned x, unsigned y, const char *s)
{
	static const uint8_t ink[3] = {225, 225, 225};

	for (; *s; s++, x += 8)
		for (unsigned r = 0; r < 5; r++)
			for (unsigned b = 0; b < 3; b++)
				if (glyph(*s) >> ((4 - r) * 3 + (2 - b)) & 1)
					fill(m, x + b * 2, y + r * 2, 2, 2, ink);
}

/* Average colour of pages [a, b) of one sample. */
static void bucket_rgb(const uint8_t *st, const uint8_t *age, uint64_t a, uint64_t b,
		       uint8_t out[3])
{
	unsigned sum[3] = {0};

	for (uint64_t i = a; i < b; i++) {
		unsigned s = st[i] & 0x0f;
		uint8_t c[3];

		if (s == 1 && age)
			age_rgb(age[i], c);
		else
			memcpy(c, state_rgb[s < 6 ? s : 6], 3);
		for (int k = 0; k < 3; k++)
			sum[k] += c[k];
	}
	for (int k = 0; k < 3; k++)
		out[k] = (uint8_t)(sum[k] / (b - a ? b - a : 1));
}

static int write_png(const struct img *m, const char *path)
{
	FILE *f = fopen(path, "wb");
	png_structp png =
	    f ? png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL) : NULL;
	png_infop info = png ? png_create_info_struct(png) : NULL;
	int err = -EIO;

	if (!info)
		goto out;
	if (setjmp(png_jmpbuf(png)))
		goto out;
	png_init_io(png, f);
	png_set_IHDR(png, info, m->w, m->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (unsigned y = 0; y < m->h; y++)
		png_write_row(png, m->px + (size_t)y * m->w * 3);
	png_write_end(png, NULL);
	err = 0;
out:
	if (png)
		png_destroy_write_struct(&png, info ? &info : NULL);
	if (f && fclose(f) != 0 && !err)
		err = -errno;
	return f ? err : -errno;
}

/* One pagemap sample: the state bytes (and ages, or NULL); page count or -1. */
static int64_t sample(struct uc *c, uint8_t **st, uint8_t **age, const char **why)
{
	json_t *a = uc_cmd(c, "pagemap", why);
	int64_t n = -1;

	*st = *age = NULL;
	if (a && json_is_true(json_object_get(a, "ok"))) {
		n = uc_pagemap_decode(a, "state", st);
		if (uc_pagemap_decode(a, "age", age) != n) {
			free(*age);
			*age = NULL;
		}
	} else if (a) {
		*why = json_string_value(json_object_get(a, "error"));
		*why = *why ? strdup(*why) : "bad answer"; /* outlives a (a tiny leak, once) */
	}
	json_decref(a);
	return n;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* Axes, legend and title around the plotted area. */
static void decorate(struct img *m, uint64_t npages, unsigned rows, unsigned rh, unsigned w,
		     double seconds, bool ages)
{
	char s[48];

	text(m, 4, 6,
	     ages ? "ufvm page age and state: address down, time right"
		  : "ufvm page state: address down, time right");
	for (unsigned q = 0; q <= 4; q++) {
		snprintf(s, sizeof(s), "%llum", (unsigned long long)(npages * 4096 * q / 4 >> 20));
		text(m, 4, TOP + rows * rh * q / 4 - (q ? 10 : 0), s);
	}
	text(m, LEFT, TOP + rows * rh + 4, "0s");
	snprintf(s, sizeof(s), "%.1fs", seconds);
	text(m, LEFT + w - 8 * (unsigned)strlen(s), TOP + rows * rh + 4, s);
	text(m, LEFT + w + 4, TOP - 12, "now");
	unsigned x = 4;

	for (unsigned i = 0; i < 6; i++) {
		fill(m, x, m->h - 18, 12, 12, state_rgb[i]);
		text(m, x + 16, m->h - 17, state_name[i]);
		x += 16 + 8 * (unsigned)strlen(state_name[i]) + 12;
	}
	if (ages) { /* resident pages are coloured by idle age instead */
		static const char *const age_name[4] = {"0", "1-2", "3-7", "8 up"};
		static const unsigned age_of[4] = {0, 1, 3, 8};

		text(m, x, m->h - 17, "age:");
		x += 8 * 4 + 8;
		for (unsigned i = 0; i < 4; i++) {
			uint8_t c[3];

			age_rgb(age_of[i], c);
			fill(m, x, m->h - 18, 12, 12, c);
			text(m, x + 16, m->h - 17, age_name[i]);
			x += 16 + 8 * (unsigned)strlen(age_name[i]) + 10;
		}
	}
}

int uc_heatmap(struct uc *c, const char *png, double seconds, unsigned interval_ms)
{
	unsigned ns = (unsigned)(seconds * 1000 / interval_ms + 0.5), rows = 1, rh = 1, cw = 1,
		 w = 1;
	uint8_t *st, *age, *last = NULL, *last_age = NULL;
	const char *why = "";
	struct img m = {0};
	int64_t npages = -1;
	int err, status = 1;

	if (ns < 2)
		ns = 2;
	for (unsigned t = 0; t < ns; t++) {
		int64_t n = sample(c, &st, &age, &why);
		uint64_t per;

		if (n <= 0 || (npages > 0 && n != npages))
			goto fail;
		if (!m.px) { /* size the picture from the first sample */
			npages = n;
			rows = npages < ROWS_MAX ? (unsigned)npages : ROWS_MAX;
			rh = ROWS_MAX / rows;
			cw = MAIN_W / ns ? MAIN_W / ns : 1;
			w = cw * ns;
			m.w = LEFT + w + 8 + STRIP + 8;
			m.h = TOP + rows * rh + BOTTOM;
			m.px = calloc((size_t)m.w * m.h, 3);
			if (!m.px)
				goto fail;
		}
		per = ((uint64_t)npages + rows - 1) / rows;
		for (unsigned r = 0; r < rows; r++) {
			uint64_t a = r * per,
				 b = a + per < (uint64_t)npages ? a + per : (uint64_t)npages;
			uint8_t rgb[3];

			bucket_rgb(st, age, a, b > a ? b : a, rgb);
			fill(&m, LEFT + t * cw, TOP + r * rh, cw, rh, rgb);
			if (t == ns - 1)
				fill(&m, LEFT + w + 8, TOP + r * rh, STRIP, rh, rgb);
		}
		free(last);
		free(last_age);
		last = st;
		last_age = age;
		if (t + 1 < ns)
			sleep_ms(interval_ms);
	}
	decorate(&m, (uint64_t)npages, rows, rh, w, seconds, last_age != NULL);
	err = write_png(&m, png);
	if (err) {
		fprintf(stderr, "ufvmctl: %s: cannot write: %s\n", png, strerror(-err));
		goto out;
	}
	printf("heatmap: %s: %u samples of %lld pages over %.1f s (%ux%u px)\n", png, ns,
	       (long long)npages, seconds, m.w, m.h);
	status = 0;
	goto out;
fail:
	free(st);
	free(age);
	fprintf(stderr, "ufvmctl: %s: heatmap: pagemap failed: %s\n", c->path, why);
out:
	free(last);
	free(last_age);
	free(m.px);
	return status;
}
