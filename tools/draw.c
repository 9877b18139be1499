/* draw.c: ufvmctl's pictures: an RGB image, rectangles, a 3x5 font, colour ramps, PNG output */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <string.h>

#include "tools/ufvmctl.h"

/*
 * Idle age to colour: warm for pages in memory (pale yellow = just used, then
 * orange, red, purple), cool for swapped ones (pale cyan to dark teal). The ramps
 * run on log2(1 + 4 * age): a row whose pages are idle a quarter of an
 * interval on average already stands apart from a hot one (early on, only the
 * few pages the sampler has tested can have aged), and rows idle 64 intervals
 * and more on average share the darkest colour.
 */
const uint8_t draw_warm[DRAW_RAMP_STOPS][3] = {{255, 250, 165}, {255, 215, 80}, {255, 165, 40},
					       {240, 105, 40},	{210, 50, 65},	{175, 35, 105},
					       {140, 30, 125},	{110, 25, 120}, {85, 20, 105}};
const uint8_t draw_cool[DRAW_RAMP_STOPS][3] = {{210, 255, 250}, {150, 240, 235}, {90, 220, 225},
					       {50, 190, 205},	{30, 160, 185},	 {20, 130, 165},
					       {15, 108, 145},	{10, 88, 125},	 {8, 70, 108}};

double draw_age_pos(double age)
{
	double p = log2(1 + 4 * age);

	return p < DRAW_RAMP_STOPS - 1 ? p : DRAW_RAMP_STOPS - 1;
}

void draw_ramp_at(const uint8_t r[DRAW_RAMP_STOPS][3], double p, double out[3])
{
	unsigned i = (unsigned)p;
	double f = p - i;

	if (i >= DRAW_RAMP_STOPS - 1)
		i = DRAW_RAMP_STOPS - 2, f = 1;
	for (int k = 0; k < 3; k++)
		out[k] = r[i][k] + (r[i + 1][k] - r[i][k]) * f;
}

/* 3x5 glyphs, rows top to bottom, 3 bits each (MSB left). */
static unsigned glyph(char ch)
{
	static const char *const chars = "0123456789abcdefghijklmnopqrstuvwxyz.-:/()+,";
	static const unsigned short g[] = {
	    075557, 026227, 071747, 071717, 055711, 074717, 074757, 071111, 075757, 075717, 025755,
	    065656, 034443, 065556, 074647, 074644, 034553, 055755, 072227, 011152, 055655, 044447,
	    057755, 065555, 025552, 065644, 025563, 065655, 034216, 072222, 055557, 055552, 055775,
	    055255, 055222, 071247, 000002, 000700, 002020, 011244, 024442, 021112, 002720, 000024};
	const char *p = ch >= 'A' && ch <= 'Z' ? strchr(chars, ch - 'A' + 'a') : strchr(chars, ch);

	return p && ch ? g[p - chars] : 0;
}

void draw_fill(struct draw_img *m, unsigned x, unsigned y, unsigned w, unsigned h, const uint8_t *c)
{
	for (unsigned j = y; j < y + h && j < m->h; j++)
		for (unsigned i = x; i < x + w && i < m->w; i++)
			memcpy(m->px + ((size_t)j * m->w + i) * 3, c, 3);
}

/* Text at 2x scale: 8 px per character. */
void draw_text(struct draw_img *m, unsigned x, unsigned y, const char *s)
{
	static const uint8_t ink[3] = {225, 225, 225};

	for (; *s; s++, x += 8)
		for (unsigned r = 0; r < 5; r++)
			for (unsigned b = 0; b < 3; b++)
				if (glyph(*s) >> ((4 - r) * 3 + (2 - b)) & 1)
					draw_fill(m, x + b * 2, y + r * 2, 2, 2, ink);
}

unsigned draw_text_w(const char *s)
{
	return 8 * (unsigned)strlen(s);
}

int draw_write_png(const struct draw_img *m, const char *path)
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
