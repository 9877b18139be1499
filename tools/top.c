/* top.c: `ufvmctl SOCKET top`: a live one-screen view of a VM's memory, each second */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "tools/ufvmctl.h"

static volatile sig_atomic_t quit;
static struct termios saved;
static bool tty_in, tty_out;

static void on_signal(int sig)
{
	(void)sig;
	quit = 1;
}

static void term_restore(void)
{
	if (tty_out)
		fputs("\033[?25h\n", stdout); /* cursor back */
	if (tty_in)
		tcsetattr(0, TCSANOW, &saved);
	fflush(stdout);
}

static void term_setup(void)
{
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll wakes up */

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	tty_out = isatty(1);
	tty_in = tty_out && isatty(0) && tcgetattr(0, &saved) == 0;
	if (tty_in) {
		struct termios raw = saved;

		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO); /* keys without Enter, no echo */
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		tcsetattr(0, TCSANOW, &raw);
	}
	if (tty_out)
		fputs("\033[?25l", stdout); /* hide the cursor while redrawing */
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

/* WSS of the shortest window, if the VM reports one. */
static const char *wss_text(struct uc *c, char *buf, size_t n)
{
	const char *why;
	json_t *a = uc_cmd(c, "wss", &why), *w;

	snprintf(buf, n, "-");
	w = json_array_get(json_object_get(a, "windows"), 0);
	if (json_is_true(json_object_get(a, "ok")) && w)
		uc_bytes(uc_u64(w, "pages") * 4096, buf, n);
	json_decref(a);
	return buf;
}

static void draw(json_t *st, const struct sample *a, const struct sample *b, const char *wss,
		 unsigned line)
{
	json_t *vm = json_object_get(st, "vm");
	double dt = b->t - a->t > 0 ? b->t - a->t : 1;
	char r[32], s[32], l[32], m[32];
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
	if (!tty_out) {
		if (line % 20 == 0)
			printf("%8s %12s %12s %10s %9s %9s %12s %12s %s\n", "uptime", "resident",
			       "swapped", "faults/s", "in MB/s", "out MB/s", "WSS", "limit",
			       "state");
		printf("%7.1fs %12s %12s %10.0f %9.1f %9.1f %12s %12s %s\n",
		       (double)uc_u64(vm, "uptime_ms") / 1000, r, s,
		       (double)(b->faults - a->faults) / dt, (double)(b->in_b - a->in_b) / dt / 1e6,
		       (double)(b->out_b - a->out_b) / dt / 1e6, wss, l,
		       paused ? "paused" : "running");
		fflush(stdout);
		return;
	}
	printf("\033[H\033[J"); /* home, clear: one screen, redrawn in place */
	printf("\033[1mufvm %s\033[0m  %s guest RAM, %llu vCPU(s), %s, up %.0f s\n\n", "top", m,
	       (unsigned long long)uc_u64(vm, "cpus"), paused ? "\033[33mpaused\033[0m" : "running",
	       (double)uc_u64(vm, "uptime_ms") / 1000);
	printf("  resident  %12s     limit     %12s\n", r, l);
	printf("  swapped   %12s     WSS       %12s\n", s, wss);
	printf("  faults/s  %12.0f\n", (double)(b->faults - a->faults) / dt);
	printf("  swap-in   %9.1f MB/s   swap-out  %9.1f MB/s\n",
	       (double)(b->in_b - a->in_b) / dt / 1e6, (double)(b->out_b - a->out_b) / dt / 1e6);
	printf("\n  q or Ctrl-C quits\n");
	fflush(stdout);
}

static void take(json_t *st, struct sample *x)
{
	x->t = now_s();
	x->faults = uc_pager(st, "faults_missing") + uc_pager(st, "faults_minor") +
		    uc_pager(st, "faults_swapin");
	x->in_b = uc_pager(st, "swapin_bytes");
	x->out_b = uc_pager(st, "swapout_bytes");
}

int uc_top(struct uc *c, unsigned iterations)
{
	struct sample prev = {0}, cur;
	const char *why = "";
	int status = 0;
	char wss[32];

	term_setup();
	for (unsigned i = 0; !quit && (!iterations || i < iterations); i++) {
		json_t *st = uc_cmd(c, "stats", &why);
		struct pollfd pf = {.fd = 0, .events = POLLIN};
		double until;

		if (!st || !json_is_true(json_object_get(st, "ok"))) {
			json_decref(st);
			status = 1;
			break;
		}
		take(st, &cur);
		if (i == 0)
			prev = cur;
		draw(st, &prev, &cur, wss_text(c, wss, sizeof(wss)), i);
		json_decref(st);
		prev = cur;
		if (iterations && i + 1 == iterations)
			break;
		until = now_s() + 1.0;
		while (!quit && now_s() < until) {
			int ms = (int)((until - now_s()) * 1000) + 1;

			if (poll(&pf, tty_in ? 1 : 0, ms) > 0) {
				char k = 0;

				if (read(0, &k, 1) == 1 && (k == 'q' || k == 'Q'))
					quit = 1;
			}
		}
	}
	term_restore();
	if (status)
		fprintf(stderr, "ufvmctl: %s: top: %s\n", c->path, *why ? why : "stats failed");
	return status;
}
