/* client.c: ufvmpool's client side: status, ps, top across VMs, and the pool's requests */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool/pool.h"
#include "tools/ufvmctl.h"

static volatile sig_atomic_t quit;

static void on_quit(int sig)
{
	(void)sig;
	quit = 1;
}

static bool cancelled(struct uc *c)
{
	(void)c;
	return quit;
}

static double jd(json_t *o, const char *k)
{
	json_t *j = json_object_get(o, k);

	return json_is_number(j) ? json_number_value(j) : 0;
}

/* "123.4M" (MiB), or "-" for null */
static const char *mib(json_t *o, const char *k, char *buf, size_t n)
{
	json_t *j = json_object_get(o, k);

	if (!json_is_number(j))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.1fM", json_number_value(j) / 1048576);
	return buf;
}

static void print_status(json_t *st, FILE *f, unsigned events)
{
	json_t *vms = json_object_get(st, "vms"), *v, *evs = json_object_get(st, "events");
	char a[24], b[24], c[24], d[24], e[24];
	size_t i, n = json_array_size(evs);

	fprintf(f, "pool  policy %s, budget %s, charged %s, resident %s, t %.1f s%s\n",
		json_string_value(json_object_get(st, "policy")),
		mib(st, "budget_bytes", a, sizeof(a)), mib(st, "charged_bytes", b, sizeof(b)),
		mib(st, "resident_bytes", c, sizeof(c)), jd(st, "t"),
		json_is_true(json_object_get(st, "over_budget")) ? "  OVER BUDGET" : "");
	fprintf(f, "%-12s %-8s %9s %9s %9s %9s %9s %7s %8s %9s %8s %8s\n", "NAME", "STATE",
		"RESIDENT", "SWAPPED", "LIMIT", "TARGET", "WSS", "STALL%", "REFAULT%", "FAULTS/s",
		"IN MB/s", "OUT MB/s");
	json_array_foreach(vms, i, v)
	{
		const char *state = json_string_value(json_object_get(v, "state"));
		bool gone = state && !strcmp(state, "gone");

		fprintf(f, "%-12s %-8s %9s %9s %9s %9s %9s %7.1f %8.1f %9.0f %8.1f %8.1f\n",
			json_string_value(json_object_get(v, "name")), state,
			gone ? "-" : mib(v, "resident_bytes", a, sizeof(a)),
			gone ? "-" : mib(v, "swapped_bytes", b, sizeof(b)),
			gone ? "-" : mib(v, "limit_bytes", c, sizeof(c)),
			gone ? "-" : mib(v, "target_bytes", d, sizeof(d)),
			gone ? "-" : mib(v, "wss_bytes", e, sizeof(e)), jd(v, "stall_pct"),
			jd(v, "refault_pct"), jd(v, "faults_per_s"),
			jd(v, "swapin_bytes_per_s") / 1e6, jd(v, "swapout_bytes_per_s") / 1e6);
		if (json_string_length(json_object_get(v, "why")))
			fprintf(f, "%-12s   %s\n", "",
				json_string_value(json_object_get(v, "why")));
	}
	for (i = n > events ? n - events : 0; i < n; i++) {
		json_t *x = json_array_get(evs, i);

		fprintf(f, "%s%8.2f s  %s%s%s\n",
			i == (n > events ? n - events : 0) ? "events\n" : "", jd(x, "t"),
			json_string_value(json_object_get(x, "vm")),
			json_string_length(json_object_get(x, "vm")) ? ": " : "",
			json_string_value(json_object_get(x, "what")));
	}
}

/* ps: each VMM process's RSS as ps counts it, RssAnon + RssShmem (guest RAM is shmem). */
static void print_ps(json_t *st)
{
	json_t *vms = json_object_get(st, "vms"), *v;
	char a[24], b[24], c[24], d[24];
	size_t i;

	printf("%-12s %8s %10s %10s %10s %14s %10s  %s\n", "NAME", "PID", "RSS", "RssAnon",
	       "RssShmem", "GUEST-RESIDENT", "SWAPPED", "STATE");
	json_array_foreach(vms, i, v)
	{
		json_t *an = json_object_get(v, "rss_anon_bytes"),
		       *sh = json_object_get(v, "rss_shmem_bytes");
		char rss[24] = "-";

		if (json_is_integer(an) && json_is_integer(sh))
			snprintf(rss, sizeof(rss), "%.2fM",
				 (double)(json_integer_value(an) + json_integer_value(sh)) /
				     1048576);
		snprintf(a, sizeof(a), "%.2fM", jd(v, "rss_anon_bytes") / 1048576);
		snprintf(b, sizeof(b), "%.2fM", jd(v, "rss_shmem_bytes") / 1048576);
		bool gone = !strcmp(json_string_value(json_object_get(v, "state")), "gone");

		printf("%-12s %8d %10s %10s %10s %14s %10s  %s\n",
		       json_string_value(json_object_get(v, "name")),
		       (int)json_integer_value(json_object_get(v, "pid")), rss,
		       json_is_integer(an) ? a : "-", json_is_integer(sh) ? b : "-",
		       gone ? "-" : mib(v, "resident_bytes", c, sizeof(c)),
		       gone ? "-" : mib(v, "swapped_bytes", d, sizeof(d)),
		       json_string_value(json_object_get(v, "state")));
	}
}

static json_t *call(struct uc *c, json_t *req, const char *what)
{
	const char *why;
	json_t *ans = uc_call(c, req, &why);

	if (!ans) {
		fprintf(stderr, "ufvmpool: %s: %s: %s\n", c->path, what, why);
		return NULL;
	}
	if (!json_is_true(json_object_get(ans, "ok"))) {
		fprintf(stderr, "ufvmpool: %s: %s: %s\n", c->path, what,
			json_string_value(json_object_get(ans, "error")));
		json_decref(ans);
		return NULL;
	}
	return ans;
}

static int top(struct uc *c, unsigned iterations)
{
	struct sigaction sa = {.sa_handler = on_quit};
	bool tty = isatty(1);

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	c->cancel = cancelled;
	for (unsigned i = 0; !quit && (!iterations || i < iterations); i++) {
		json_t *st = call(c, json_pack("{s:s}", "cmd", "status"), "status");

		if (!st)
			return quit ? 0 : 1;
		if (tty)
			printf("\033[H\033[J");
		else if (i)
			printf("\n");
		print_status(st, stdout, tty ? 8 : 0);
		fflush(stdout);
		json_decref(st);
		if (iterations && i + 1 == iterations)
			break;
		for (int k = 0; k < 10 && !quit; k++)
			poll(NULL, 0, 100);
	}
	return 0;
}

int pool_client(int argc, char **argv)
{
	bool json = argc > 1 && !strcmp(argv[1], "--json");
	const char *sock, *cmd;
	json_t *req = NULL, *ans;
	struct uc c;
	int a = json ? 2 : 1, err;

	if (argc < a + 2) {
		fprintf(stderr, "ufvmpool: SOCKET COMMAND expected (ufvmpool --help)\n");
		return 2;
	}
	sock = argv[a];
	cmd = argv[a + 1];
	a += 2;
	/* arguments first: bad usage is 2 whether or not the pool is there */
	if (!strcmp(cmd, "status") || !strcmp(cmd, "ps") || !strcmp(cmd, "stop")) {
		if (a != argc)
			goto usage;
		req = json_pack("{s:s}", "cmd", !strcmp(cmd, "stop") ? "stop" : "status");
	} else if (!strcmp(cmd, "top")) {
		if (!(a == argc ||
		      (a + 2 == argc && !strcmp(argv[a], "-n") && atoi(argv[a + 1]) > 0)))
			goto usage;
	} else if (!strcmp(cmd, "start")) {
		json_t *args = json_array();
		int k = a + 1;

		if (a >= argc)
			goto usage;
		req = json_pack("{s:s, s:s}", "cmd", "start", "name", argv[a]);
		if (k + 1 < argc && !strcmp(argv[k], "--shares"))
			json_object_set_new(req, "shares", json_integer(atoi(argv[k + 1]))), k += 2;
		if (k >= argc || strcmp(argv[k], "--"))
			goto usage_free;
		for (k++; k < argc; k++)
			json_array_append_new(args, json_string(argv[k]));
		json_object_set_new(req, "args", args);
	} else if (!strcmp(cmd, "attach")) {
		if (!(a + 2 == argc || (a + 4 == argc && !strcmp(argv[a + 2], "--shares"))))
			goto usage;
		req = json_pack("{s:s, s:s, s:s}", "cmd", "attach", "name", argv[a], "socket",
				argv[a + 1]);
		if (a + 4 == argc)
			json_object_set_new(req, "shares", json_integer(atoi(argv[a + 3])));
	} else if (!strcmp(cmd, "detach")) {
		if (a + 1 != argc)
			goto usage;
		req = json_pack("{s:s, s:s}", "cmd", "detach", "name", argv[a]);
	} else if (!strcmp(cmd, "mark")) {
		if (a + 1 != argc && a + 2 != argc)
			goto usage;
		req = json_pack("{s:s, s:s}", "cmd", "mark", "label", argv[a]);
		if (a + 2 == argc)
			json_object_set_new(req, "name", json_string(argv[a + 1]));
	} else if (!strcmp(cmd, "set")) {
		req = json_pack("{s:s}", "cmd", "set");
		while (a < argc) {
			if (a + 1 < argc && !strcmp(argv[a], "budget"))
				json_object_set_new(req, "budget", json_string(argv[a + 1])),
				    a += 2;
			else if (a + 1 < argc && !strcmp(argv[a], "policy"))
				json_object_set_new(req, "policy", json_string(argv[a + 1])),
				    a += 2;
			else if (a + 2 < argc && !strcmp(argv[a], "shares"))
				json_object_set_new(req, "name", json_string(argv[a + 1])),
				    json_object_set_new(req, "shares",
							json_integer(atoi(argv[a + 2]))),
				    a += 3;
			else
				goto usage_free;
		}
	} else {
		fprintf(stderr, "ufvmpool: unknown command '%s' (ufvmpool --help)\n", cmd);
		return 2;
	}
	err = uc_connect(&c, sock);
	if (err < 0) {
		json_decref(req);
		fprintf(stderr, "ufvmpool: %s: cannot connect: %s\n", sock, strerror(-err));
		return 1;
	}
	if (!strcmp(cmd, "top")) {
		err = top(&c, a == argc ? 0 : (unsigned)atoi(argv[a + 1]));
		uc_close(&c);
		return err;
	}
	ans = call(&c, req, cmd);
	uc_close(&c);
	if (!ans)
		return 1;
	if (json) {
		char *s = json_dumps(ans, JSON_COMPACT);

		printf("%s\n", s ? s : "");
		free(s);
	} else if (!strcmp(cmd, "status")) {
		print_status(ans, stdout, 10);
	} else if (!strcmp(cmd, "ps")) {
		print_ps(ans);
	} else if (!strcmp(cmd, "start")) {
		printf("%s: %s, control socket %s\n", argv[json ? 4 : 3],
		       json_string_value(json_object_get(ans, "state")),
		       json_string_value(json_object_get(ans, "socket")));
	} else if (!strcmp(cmd, "set")) {
		printf("budget %.1f MiB, policy %s\n", jd(ans, "budget_bytes") / 1048576,
		       json_string_value(json_object_get(ans, "policy")));
	}
	json_decref(ans);
	return 0;
usage_free:
	json_decref(req);
usage:
	fprintf(stderr, "ufvmpool: %s: bad arguments (ufvmpool --help)\n", cmd);
	return 2;
}
