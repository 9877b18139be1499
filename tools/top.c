/* top.c: `ufvmctl SOCKET top`: a live one-screen view of a VM's memory, each second */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "tools/ufvmctl.h"

#define TOP_LINES 8 /* the screen's lines */

/*
 * Signals only set flags, except SIGTSTP: its handler must put the terminal
 * back before the process stops, so it does that itself with async-signal-safe
 * calls (write, tcsetattr, sigaction, raise), then stops for real.
 */
static volatile sig_atomic_t quit, resized, continued;
static struct termios saved;
static bool tty_in, tty_out;
static volatile sig_atomic_t raw_on; /* our raw mode (and hidden cursor) are in force */

static void on_quit(int sig)
{
	(void)sig;
	quit = 1;
}

static void on_winch(int sig)
{
	(void)sig;
	resized = 1;
}

static void on_cont(int sig)
{
	(void)sig;
	continued = 1;
}

/* The terminal as we found it, cursor shown (async-signal-safe). */
static void term_cooked(void)
{
	if (!raw_on)
		return;
	if (tty_out)
		(void)!write(1, "\033[?25h\n", 7);
	if (tty_in)
		tcsetattr(0, TCSADRAIN, &saved);
	raw_on = 0;
}

/* Keys without Enter, no echo, cursor hidden; only in the foreground, where
 * tcsetattr does not stop us with SIGTTOU. */
static void term_raw(void)
{
	sigset_t tstp, old;

	if (raw_on || !tty_out || tcgetpgrp(1) != getpgrp())
		return;
	sigemptyset(&tstp);
	sigaddset(&tstp, SIGTSTP);
	sigprocmask(SIG_BLOCK, &tstp, &old); /* raw_on must tell the truth when it stops us */
	if (tty_in) {
		struct termios raw = saved;

		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		tcsetattr(0, TCSADRAIN, &raw);
	}
	(void)!write(1, "\033[?25l", 6);
	raw_on = 1;
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static void on_tstp(int sig)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL}, mine = {.sa_handler = on_tstp};
	int e = errno;
	sigset_t s;

	term_cooked();
	sigaction(sig, &dfl, NULL);
	sigemptyset(&s);
	sigaddset(&s, sig);
	sigprocmask(SIG_UNBLOCK, &s, NULL);
	raise(sig); /* stops here until SIGCONT */
	sigemptyset(&mine.sa_mask);
	sigaction(sig, &mine, NULL);
	continued = 1; /* the main loop goes raw again and redraws */
	errno = e;
}

static void term_setup(void)
{
	struct sigaction sa = {.sa_handler = on_quit}; /* no SA_RESTART: waits wake up */

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	tty_out = isatty(1);
	tty_in = tty_out && isatty(0) && tcgetattr(0, &saved) == 0;
	if (!tty_out)
		return;
	sa.sa_handler = on_winch;
	sigaction(SIGWINCH, &sa, NULL);
	sa.sa_handler = on_cont;
	sigaction(SIGCONT, &sa, NULL);
	sa.sa_handler = on_tstp;
	sigaction(SIGTSTP, &sa, NULL);
	term_raw();
}

static void term_restore(void)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};

	fflush(stdout);
	if (tty_out)
		sigaction(SIGTSTP, &dfl, NULL); /* nothing to restore any more */
	term_cooked();
}

/* Read pending keys: q quits. */
static void keys(void)
{
	char k[16];
	ssize_t n;

	if (!tty_in || !raw_on)
		return;
	while ((n = read(0, k, sizeof(k))) > 0)
		for (ssize_t i = 0; i < n; i++)
			if (k[i] == 'q' || k[i] == 'Q')
				quit = 1;
}

/* While a request waits: keys and signals end it. */
static bool top_cancel(struct uc *c)
{
	(void)c;
	keys();
	return quit;
}

struct sample {
	double t;
	uint64_t faults, in_b, out_b;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Rates between two samples as text; "-" until there are two. */
static void rates(const struct sample *a, const struct sample *b, bool have, char f[16],
		  char in[16], char out[16])
{
	double dt = b->t - a->t > 0 ? b->t - a->t : 1;

	if (!have) {
		strcpy(f, "-");
		strcpy(in, "-");
		strcpy(out, "-");
		return;
	}
	snprintf(f, 16, "%.0f", (double)(b->faults - a->faults) / dt);
	snprintf(in, 16, "%.1f", (double)(b->in_b - a->in_b) / dt / 1e6);
	snprintf(out, 16, "%.1f", (double)(b->out_b - a->out_b) / dt / 1e6);
}

/* Print lines on the terminal from its top-left corner, clipped to its size. */
static void screen(char lines[][160], unsigned n)
{
	struct winsize ws = {0};
	unsigned rows = 24, cols = 80;

	if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
		rows = ws.ws_row, cols = ws.ws_col;
	printf("\033[H\033[J"); /* home, clear: one screen, redrawn in place */
	for (unsigned i = 0; i < n && i < rows; i++) {
		/* the last row gets no newline: it would scroll the screen */
		printf("%s%.*s%s%s", i ? "" : "\033[1m", (int)(cols < 159 ? cols : 159), lines[i],
		       i ? "" : "\033[0m", i + 1 < n && i + 1 < rows ? "\n" : "");
	}
	fflush(stdout);
}

static void draw(json_t *st, const struct sample *a, const struct sample *b, bool have,
		 const char *wss, unsigned line)
{
	json_t *vm = json_object_get(st, "vm");
	char r[32], s[32], l[32], m[32], f[16], in[16], out[16], L[TOP_LINES][160];
	uint64_t lim = uc_pager(st, "limit_pages") * 4096;
	bool paused = json_is_true(json_object_get(vm, "paused"));

	uc_bytes(uc_pager(st, "resident_pages") * 4096, r, sizeof(r));
	uc_bytes(uc_pager(st, "swapped_pages") * 4096, s, sizeof(s));
	uc_bytes(uc_u64(vm, "mem_bytes"), m, sizeof(m));
	snprintf(l, sizeof(l), "none");
	if (lim)
		uc_bytes(lim, l, sizeof(l));
	if (!json_is_object(json_object_get(st, "pager"))) /* no pager: nothing to count */
		snprintf(r, sizeof(r), "-"), snprintf(s, sizeof(s), "-"),
		    snprintf(l, sizeof(l), "-");
	rates(a, b, have, f, in, out);
	if (!tty_out) {
		if (line % 20 == 0)
			printf("%8s %12s %12s %10s %9s %9s %12s %12s %s\n", "uptime", "resident",
			       "swapped", "faults/s", "in MB/s", "out MB/s", "WSS", "limit",
			       "state");
		printf("%7.1fs %12s %12s %10s %9s %9s %12s %12s %s\n",
		       (double)uc_u64(vm, "uptime_ms") / 1000, r, s, f, in, out, wss, l,
		       paused ? "paused" : "running");
		fflush(stdout);
		return;
	}
	snprintf(L[0], sizeof(L[0]), "ufvm top  %s guest RAM, %llu vCPU(s), %s, up %.0f s", m,
		 (unsigned long long)uc_u64(vm, "cpus"), paused ? "PAUSED" : "running",
		 (double)uc_u64(vm, "uptime_ms") / 1000);
	snprintf(L[1], sizeof(L[1]), "%s", "");
	snprintf(L[2], sizeof(L[2]), "  resident  %12s     limit     %12s", r, l);
	snprintf(L[3], sizeof(L[3]), "  swapped   %12s     WSS       %12s", s, wss);
	snprintf(L[4], sizeof(L[4]), "  faults/s  %12s", f);
	snprintf(L[5], sizeof(L[5]), "  swap-in   %9s MB/s   swap-out  %9s MB/s", in, out);
	snprintf(L[6], sizeof(L[6]), "%s", "");
	snprintf(L[7], sizeof(L[7]), "  q or Ctrl-C quits");
	screen(L, TOP_LINES);
}

static void take(json_t *st, struct sample *x)
{
	x->t = now_s();
	x->faults = uc_pager(st, "faults_missing") + uc_pager(st, "faults_minor") +
		    uc_pager(st, "faults_swapin");
	x->in_b = uc_pager(st, "swapin_bytes");
	x->out_b = uc_pager(st, "swapout_bytes");
}

/* stats, and the WSS of the shortest window if the VM reports one; NULL with c->err. */
static json_t *sample(struct uc *c, char *wss, size_t n, const char **why)
{
	json_t *st = uc_cmd(c, "stats", why), *a, *w;

	if (!st)
		return NULL;
	if (!json_is_true(json_object_get(st, "ok"))) {
		*why = "stats failed";
		json_decref(st);
		return NULL;
	}
	a = uc_cmd(c, "wss", why);
	if (!a) {
		json_decref(st);
		return NULL;
	}
	snprintf(wss, n, "-");
	w = json_array_get(json_object_get(a, "windows"), 0);
	if (json_is_true(json_object_get(a, "ok")) && w)
		uc_bytes(uc_u64(w, "pages") * 4096, wss, n);
	json_decref(a);
	return st;
}

/* Until the next sample is due: keys, and signals that want a redraw now. */
static void pause_until(double until)
{
	struct pollfd pf = {.fd = 0, .events = POLLIN};

	while (!quit && !resized && !continued && now_s() < until) {
		int ms = (int)((until - now_s()) * 1000) + 1;

		if (poll(&pf, tty_in && raw_on ? 1 : 0, ms) > 0) {
			if (pf.revents & (POLLHUP | POLLERR | POLLNVAL))
				quit = 1; /* the terminal went away */
			keys();
		}
	}
}

int uc_top(struct uc *c, unsigned iterations)
{
	struct sample prev = {0}, cur;
	const char *why = "";
	bool ended = false;
	int status = 0;
	char wss[32];

	term_setup();
	c->cancel = top_cancel;
	c->cancel_fd = tty_in && raw_on ? 0 : -1; /* keys, in the foreground */
	for (unsigned i = 0; !quit && (!iterations || i < iterations); i++) {
		json_t *st;

		if (continued) {
			continued = 0;
			term_raw();
			c->cancel_fd = tty_in && raw_on ? 0 : -1;
		}
		resized = 0;
		st = sample(c, wss, sizeof(wss), &why);
		if (!st) {
			ended = c->err == -EPIPE;
			status = quit || ended ? 0 : 1;
			break;
		}
		take(st, &cur);
		draw(st, &prev, &cur, i > 0, wss, i);
		json_decref(st);
		prev = cur;
		if (iterations && i + 1 == iterations)
			break;
		pause_until(cur.t + 1.0);
	}
	term_restore();
	if (ended)
		printf("top: %s: the VM has ended (its control socket closed)\n", c->path);
	fflush(stdout);
	if (status)
		fprintf(stderr, "ufvmctl: %s: top: %s\n", c->path, *why ? why : "stats failed");
	return status;
}
