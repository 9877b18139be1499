/* ufvmctl.h: the control client's connection and its commands */
#ifndef UFVM_UFVMCTL_H
#define UFVM_UFVMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct uc {
	const char *path;
	int fd;
	char *buf; /* bytes received past the last answer */
	size_t len, cap;
	int err; /* why the last call failed: -errno; -EPIPE: the VM closed the connection */
	/*
	 * Optional: asked while a call waits (at least every 100 ms, after every
	 * signal, and whenever cancel_fd is readable); true abandons the call with
	 * -ECANCELED. cancel_fd is -1 when there is none.
	 */
	bool (*cancel)(struct uc *c);
	int cancel_fd;
};

/* Connect to the control socket; -errno. */
int uc_connect(struct uc *c, const char *path);
void uc_close(struct uc *c);
/*
 * Send req (a JSON object; reference stolen) and return the answer object, or
 * NULL with *why set (static or in a buffer that lives until the next call)
 * and c->err when the connection failed, the call was cancelled or the answer
 * is not JSON (-EBADMSG).
 */
json_t *uc_call(struct uc *c, json_t *req, const char **why);
/* Shortcut for {"cmd": cmd}. */
json_t *uc_cmd(struct uc *c, const char *cmd, const char **why);
/* Integer member (0 when missing), and a member of the "pager" object. */
uint64_t uc_u64(json_t *o, const char *key);
uint64_t uc_pager(json_t *stats, const char *key);
/* Decode the base64 `state` of a pagemap answer into *out (malloc'd); page count, or -1. */
int64_t uc_pagemap_decode(json_t *ans, const char *field, uint8_t **out);
/* "12.3 MiB" style, into buf. */
const char *uc_bytes(uint64_t b, char *buf, size_t n);

/* top.c: live view until q, Ctrl-C or SIGTERM, `iterations` samples (0 = forever) or
 * the VM's end (status 0, said on stdout); 1 when a request fails. */
int uc_top(struct uc *c, unsigned iterations);
/* heatmap.c: sample page states for `seconds`, write a PNG; exit status. */
int uc_heatmap(struct uc *c, const char *png, double seconds, unsigned interval_ms);

/* draw.c: the heatmap's drawing primitives; coordinates are pixels, clipped to the image */
struct draw_img {
	unsigned w, h;
	uint8_t *px; /* RGB, w * h * 3 bytes, rows top to bottom */
};
/* A w x h rectangle of colour c (3 bytes) at (x, y). */
void draw_fill(struct draw_img *m, unsigned x, unsigned y, unsigned w, unsigned h,
	       const uint8_t *c);
/* Text in a 3x5 font at 2x scale, 10 px high with its top at y: letters (either case),
 * digits and .-:/()+, (anything else is a space). */
void draw_text(struct draw_img *m, unsigned x, unsigned y, const char *s);
unsigned draw_text_w(const char *s); /* its width: 8 px per character */
/* The idle-age ramps (warm: in memory, cool: swapped), DRAW_RAMP_STOPS colours each. */
#define DRAW_RAMP_STOPS 9
extern const uint8_t draw_warm[DRAW_RAMP_STOPS][3], draw_cool[DRAW_RAMP_STOPS][3];
/* A mean idle age's position on a ramp, 0 .. DRAW_RAMP_STOPS - 1. */
double draw_age_pos(double age);
/* The colour at position p (0 .. DRAW_RAMP_STOPS - 1) of ramp r, interpolated. */
void draw_ramp_at(const uint8_t r[DRAW_RAMP_STOPS][3], double p, double out[3]);
/* Write m as an 8-bit RGB PNG file; 0 or -errno (-EIO when libpng fails). */
int draw_write_png(const struct draw_img *m, const char *path);

#endif
