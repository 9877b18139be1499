/* plot.c: `ufvmpool plot`: a pool's time series as a PNG: resident memory stacked per VM, events */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pool.h"
#include "tools/ufvmctl.h"

#define MAXVM	16
#define MAXEV	40
#define W	1100
#define PLOT_X	80  /* left of the plot area */
#define PLOT_Y	40  /* its top */
#define PLOT_H	360 /* stacked resident memory */
#define STALL_H 90  /* stall share, below */

struct sample {
	double t, budget;
	double res[MAXVM], stall[MAXVM];
	bool up[MAXVM];
};

struct series {
	char vm[MAXVM][POOL_NAME_MAX];
	unsigned nvm;
	struct sample *s;
	size_t n, cap;
	struct {
		double t;
		char text[96];
	} ev[MAXEV];
	unsigned nev, ev_dropped;
	double t_end;
};

static const uint8_t palette[8][3] = {{86, 180, 233},  {230, 159, 0},  {0, 158, 115},
				      {204, 121, 167}, {240, 228, 66}, {213, 94, 0},
				      {0, 114, 178},   {170, 170, 170}};
static const uint8_t bg[3] = {24, 24, 28}, axis[3] = {110, 110, 120}, grid[3] = {45, 45, 52},
		     budget_c[3] = {255, 255, 255}, event_c[3] = {200, 60, 60};

static int vm_index(struct series *S, const char *name)
{
	for (unsigned i = 0; i < S->nvm; i++)
		if (!strcmp(S->vm[i], name))
			return (int)i;
	if (S->nvm == MAXVM)
		return -1;
	snprintf(S->vm[S->nvm], POOL_NAME_MAX, "%s", name);
	return (int)S->nvm++;
}

static struct sample *cur(struct series *S, double t)
{
	if (S->n && S->s[S->n - 1].t == t)
		return &S->s[S->n - 1];
	if (S->n == S->cap) {
		size_t c = S->cap ? S->cap * 2 : 256;
		struct sample *n = realloc(S->s, c * sizeof(*n));

		if (!n)
			return NULL;
		S->s = n;
		S->cap = c;
	}
	memset(&S->s[S->n], 0, sizeof(S->s[0]));
	S->s[S->n].t = t;
	if (S->n)
		S->s[S->n].budget = S->s[S->n - 1].budget;
	return &S->s[S->n++];
}

/* Events worth a marker: not the bookkeeping ones. */
static bool notable(const char *vm, const char *what, bool all)
{
	(void)vm;
	return all || (strncmp(what, "to start", 8) && strncmp(what, "attached", 8) &&
		       strncmp(what, "up:", 3) && strncmp(what, "started", 7) &&
		       strncmp(what, "pool of", 7) && strncmp(what, "answers again", 13));
}

static int load(struct series *S, const char *path, bool all)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	int err = 0;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		json_t *o = json_loads(line, 0, NULL), *pool, *ev;
		double t = json_number_value(json_object_get(o, "t"));
		struct sample *x;
		int i;

		if (!json_is_object(o)) {
			json_decref(o);
			continue;
		}
		S->t_end = t > S->t_end ? t : S->t_end;
		if ((ev = json_object_get(o, "event")) && json_is_string(ev)) {
			const char *vm = json_string_value(json_object_get(o, "vm"));

			if (notable(vm ? vm : "", json_string_value(ev), all)) {
				if (S->nev == MAXEV) {
					S->ev_dropped++;
				} else {
					S->ev[S->nev].t = t;
					snprintf(S->ev[S->nev].text, sizeof(S->ev[0].text),
						 "%s%s%s", vm && *vm ? vm : "",
						 vm && *vm ? ": " : "", json_string_value(ev));
					S->nev++;
				}
			}
		} else if ((pool = json_object_get(o, "pool"))) {
			if ((x = cur(S, t)))
				x->budget =
				    json_number_value(json_object_get(pool, "budget_bytes"));
		} else if (json_is_string(json_object_get(o, "vm")) &&
			   (i = vm_index(S, json_string_value(json_object_get(o, "vm")))) >= 0) {
			if (!(x = cur(S, t))) {
				err = -ENOMEM;
				json_decref(o);
				break;
			}
			x->res[i] = json_number_value(json_object_get(o, "resident_bytes"));
			x->stall[i] = json_number_value(json_object_get(o, "stall_pct"));
			x->up[i] = true;
		}
		json_decref(o);
	}
	free(line);
	fclose(f);
	return err;
}

static double nice_step(double range, unsigned ticks)
{
	double raw = range / ticks, p = pow(10, floor(log10(raw))), m = raw / p;

	return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
}

static void vline(struct draw_img *m, unsigned x, unsigned y0, unsigned y1, const uint8_t *c,
		  bool dashed)
{
	for (unsigned y = y0; y < y1; y++)
		if (!dashed || (y / 4) % 2 == 0)
			draw_fill(m, x, y, 1, 1, c);
}

static void draw(struct draw_img *m, struct series *S, const char *title)
{
	unsigned pw = W - PLOT_X - 30, sy = PLOT_Y + PLOT_H + 30, leg = sy + STALL_H + 40;
	double tmax = S->t_end > 0 ? S->t_end : 1, ymax = 1, step;
	char buf[128];

	for (size_t k = 0; k < S->n; k++) {
		double tot = 0;

		for (unsigned i = 0; i < S->nvm; i++)
			tot += S->s[k].res[i];
		ymax = fmax(ymax, fmax(tot, S->s[k].budget));
	}
	ymax *= 1.08;
	draw_fill(m, 0, 0, m->w, m->h, bg);
	draw_text(m, PLOT_X, 12, title);
	/* grid and y axis (MiB) */
	step = nice_step(ymax / 1048576, 6);
	for (double v = 0; v * 1048576 <= ymax; v += step) {
		unsigned y = PLOT_Y + PLOT_H - (unsigned)(v * 1048576 / ymax * PLOT_H);

		draw_fill(m, PLOT_X, y, pw, 1, grid);
		snprintf(buf, sizeof(buf), "%g", v);
		draw_text(m, PLOT_X - 8 - draw_text_w(buf), y - 5, buf);
	}
	draw_text(m, 8, PLOT_Y - 4, "MiB");
	/* stacked resident memory: each column shows the latest sample at its time */
	for (unsigned x = 0; x < pw; x++) {
		double t = tmax * x / pw, base = 0;
		size_t k = 0;

		while (k + 1 < S->n && S->s[k + 1].t <= t)
			k++;
		if (!S->n || S->s[k].t > t)
			continue;
		for (unsigned i = 0; i < S->nvm; i++) {
			unsigned y0 = (unsigned)(base / ymax * PLOT_H),
				 y1 = (unsigned)((base + S->s[k].res[i]) / ymax * PLOT_H);

			if (y1 > y0)
				draw_fill(m, PLOT_X + x, PLOT_Y + PLOT_H - y1, 1, y1 - y0,
					  palette[i % 8]);
			base += S->s[k].res[i];
		}
		if (S->s[k].budget > 0)
			draw_fill(m, PLOT_X + x,
				  PLOT_Y + PLOT_H - (unsigned)(S->s[k].budget / ymax * PLOT_H), 1,
				  2, budget_c);
		/* stall share per VM, below: a dot per VM and column */
		for (unsigned i = 0; i < S->nvm; i++)
			if (S->s[k].up[i])
				draw_fill(m, PLOT_X + x,
					  sy + STALL_H - 1 -
					      (unsigned)(fmin(S->s[k].stall[i], 100) / 100 *
							 (STALL_H - 2)),
					  1, 2, palette[i % 8]);
	}
	draw_fill(m, PLOT_X, PLOT_Y + PLOT_H, pw, 1, axis);
	draw_fill(m, PLOT_X, sy, pw, 1, grid);
	draw_fill(m, PLOT_X, sy + STALL_H, pw, 1, axis);
	draw_text(m, 8, sy + STALL_H / 2 - 12, "stall");
	draw_text(m, 8, sy + STALL_H / 2 + 2, "pct");
	draw_text(m, PLOT_X - 8 - draw_text_w("100"), sy - 5, "100");
	draw_text(m, PLOT_X - 8 - draw_text_w("0"), sy + STALL_H - 5, "0");
	/* x axis (seconds), under both panels */
	step = nice_step(tmax, 10);
	for (double t = 0; t <= tmax; t += step) {
		unsigned x = PLOT_X + (unsigned)(t / tmax * pw);

		snprintf(buf, sizeof(buf), "%g", t);
		draw_fill(m, x, PLOT_Y + PLOT_H, 1, 5, axis);
		draw_text(m, x - draw_text_w(buf) / 2, PLOT_Y + PLOT_H + 8, buf);
		draw_fill(m, x, sy + STALL_H, 1, 5, axis);
		draw_text(m, x - draw_text_w(buf) / 2, sy + STALL_H + 8, buf);
	}
	draw_text(m, PLOT_X + pw - draw_text_w("seconds"), sy + STALL_H + 22, "seconds");
	/* events: a numbered dashed line each, listed below */
	for (unsigned e = 0; e < S->nev; e++) {
		unsigned x = PLOT_X + (unsigned)(S->ev[e].t / tmax * (pw - 1));

		vline(m, x, PLOT_Y, sy + STALL_H, event_c, true);
		snprintf(buf, sizeof(buf), "%u", e + 1);
		draw_text(m, x + 2, PLOT_Y + 2 + (e % 4) * 12, buf);
	}
	/* legend: VMs, budget, then the events */
	for (unsigned i = 0, x = PLOT_X; i < S->nvm; i++) {
		draw_fill(m, x, leg, 14, 10, palette[i % 8]);
		draw_text(m, x + 20, leg, S->vm[i]);
		x += 20 + draw_text_w(S->vm[i]) + 24;
	}
	draw_fill(m, W - 220, leg + 4, 14, 2, budget_c);
	draw_text(m, W - 200, leg, "budget");
	for (unsigned e = 0; e < S->nev; e++) {
		snprintf(buf, sizeof(buf), "%2u  %6.1f s  %.105s", e + 1, S->ev[e].t,
			 S->ev[e].text);
		draw_text(m, 16, leg + 22 + e * 14, buf);
	}
	if (S->ev_dropped) {
		snprintf(buf, sizeof(buf), "(%u more events not shown)", S->ev_dropped);
		draw_text(m, 16, leg + 22 + S->nev * 14, buf);
	}
}

int pool_plot_main(int argc, char **argv)
{
	struct series S = {0};
	struct draw_img m = {.w = W};
	const char *title = "resident guest memory per VM (stacked) and stall share (%)";
	bool all = false;
	int err;

	if (argc < 3) {
		fprintf(stderr, "usage: ufvmpool plot SERIES.jsonl OUT.png [--title TEXT] "
				"[--all-events]\n");
		return 2;
	}
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--title") && i + 1 < argc) {
			title = argv[++i];
		} else if (!strcmp(argv[i], "--all-events")) {
			all = true;
		} else {
			fprintf(stderr, "ufvmpool: plot: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	err = load(&S, argv[1], all);
	if (err < 0 || !S.n) {
		fprintf(stderr, "ufvmpool: plot: %s: %s\n", argv[1],
			err < 0 ? strerror(-err)
				: "no samples (is it a pool's JSON lines series?)");
		free(S.s);
		return err == -ENOENT || err == 0 ? 2 : 1;
	}
	m.h = PLOT_Y + PLOT_H + 30 + STALL_H + 40 + 22 + (S.nev + 1) * 14 + 16;
	m.px = calloc((size_t)m.w * m.h, 3);
	if (!m.px) {
		free(S.s);
		return 1;
	}
	draw(&m, &S, title);
	err = draw_write_png(&m, argv[2]);
	if (err < 0)
		fprintf(stderr, "ufvmpool: plot: %s: %s\n", argv[2], strerror(-err));
	free(m.px);
	free(S.s);
	return err < 0 ? 1 : 0;
}
