/* ufvmctl.c: talk to a running ufvm through its control socket (docs/API.md) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/ufvmctl.h"
#include "vmm/vmm.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: ufvmctl [--json] SOCKET COMMAND [ARG]\n"
		   "\n"
		   "Talks to `ufvm run --api SOCKET`. Commands:\n"
		   "  stats              memory, faults and swap counters\n"
		   "  limit SIZE         set the memory limit (256M, 1G; 0 = none)\n"
		   "  reclaim N          reclaim N pages now\n"
		   "  pause | resume     stop / restart the vCPUs\n"
		   "  swapout [--prefetch]  write the whole VM to swap (then read it back with\n"
		   "                     --prefetch; else it comes back on demand)\n"
		   "  swapin             read every swapped page back now\n"
		   "  wss                working-set estimate\n"
		   "  pagemap            page states over guest-physical memory\n"
		   "  dirty              pages written since the last `dirty` (--dirty-track)\n"
		   "  balloon [SIZE]     the balloon (Linux guests): target, actual, guest stats;\n"
		   "                     with SIZE, ask the guest to give SIZE back (0 deflates)\n"
		   "  stop [STATUS]      end the VM with exit status STATUS (default 0)\n"
		   "  top [-n N]         live view, refreshed each second (q or Ctrl-C quits)\n"
		   "  heatmap OUT.png [SECONDS]  picture of page states over address and time\n"
		   "\n"
		   "--json prints the VM's answer as is. Exit status: 0 done, 1 the request\n"
		   "failed or the VM is unreachable, 2 bad usage.\n");
}

static int usage_err(const char *what, const char *arg)
{
	fprintf(stderr, "ufvmctl: %s%s\nTry 'ufvmctl --help' for more information.\n", what, arg);
	return 2;
}

static void print_stats(json_t *a)
{
	json_t *vm = json_object_get(a, "vm"), *pg = json_object_get(a, "pager");
	char b1[32], b2[32], b3[32], b4[32];
	uint64_t lim = uc_u64(pg, "limit_pages") * 4096;

	printf("vm        %s guest RAM, %llu vCPU(s), %s, up %.1f s\n",
	       uc_bytes(uc_u64(vm, "mem_bytes"), b1, sizeof(b1)),
	       (unsigned long long)uc_u64(vm, "cpus"),
	       json_is_true(json_object_get(vm, "paused")) ? "paused" : "running",
	       (double)uc_u64(vm, "uptime_ms") / 1000);
	if (!json_is_object(pg)) {
		printf("pager     off (guest RAM is not managed by ufvm's pager)\n");
		return;
	}
	printf("memory    resident %s, swapped %s, limit %s, memfd holds %s\n",
	       uc_bytes(uc_u64(pg, "resident_pages") * 4096, b1, sizeof(b1)),
	       uc_bytes(uc_u64(pg, "swapped_pages") * 4096, b2, sizeof(b2)),
	       lim ? uc_bytes(lim, b3, sizeof(b3)) : "none",
	       uc_bytes(uc_u64(pg, "memfd_bytes"), b4, sizeof(b4)));
	printf("faults    missing %llu, minor %llu, swap-in %llu (deferred %llu)\n",
	       (unsigned long long)uc_u64(pg, "faults_missing"),
	       (unsigned long long)uc_u64(pg, "faults_minor"),
	       (unsigned long long)uc_u64(pg, "faults_swapin"),
	       (unsigned long long)uc_u64(pg, "faults_deferred"));
	printf("swap      out %s, in %s, readahead %llu pages, clean drops %llu, "
	       "errors %llu write / %llu read\n",
	       uc_bytes(uc_u64(pg, "swapout_bytes"), b1, sizeof(b1)),
	       uc_bytes(uc_u64(pg, "swapin_bytes"), b2, sizeof(b2)),
	       (unsigned long long)uc_u64(pg, "readahead_pages"),
	       (unsigned long long)uc_u64(pg, "clean_drops"),
	       (unsigned long long)uc_u64(pg, "write_errors"),
	       (unsigned long long)uc_u64(pg, "read_errors"));
	printf("reclaim   %llu runs, %llu pages scanned, peak resident %s\n",
	       (unsigned long long)uc_u64(pg, "reclaim_runs"),
	       (unsigned long long)uc_u64(pg, "reclaim_scanned"),
	       uc_bytes(uc_u64(pg, "max_resident_pages") * 4096, b1, sizeof(b1)));
	printf("whole-VM  %llu swap-outs (%llu pages), %llu pages swapped in\n",
	       (unsigned long long)uc_u64(pg, "swapout_all_runs"),
	       (unsigned long long)uc_u64(pg, "swapout_all_pages"),
	       (unsigned long long)uc_u64(pg, "swapin_all_pages"));
}

/* young and dirty counts, and the idle ages of the pages with content. */
static void print_pagemap_summary(const uint8_t *st, int64_t n, json_t *a)
{
	static const char *const bucket[] = {"0",     "1",     "2-3",	 "4-7", "8-15",
					     "16-31", "32-63", "64-127", "128+"};
	uint64_t young = 0, dirty = 0, hist[9] = {0}, aged = 0;
	uint8_t *age = NULL;
	int64_t na = uc_pagemap_decode(a, "age", &age);
	unsigned top = 0;

	for (int64_t i = 0; i < n; i++) {
		unsigned s = st[i] & 0x0f, b = 0;

		young += (st[i] & 0x10) != 0;
		dirty += (st[i] & 0x20) != 0;
		if (na != n || s < 1 || s > 4) /* no age, or no content: new, absent */
			continue;
		for (unsigned v = age[i]; v && b < 8; v >>= 1)
			b++;
		hist[b]++;
		aged++;
	}
	if (json_string_value(json_object_get(a, "source")) &&
	    !strcmp(json_string_value(json_object_get(a, "source")), "pst"))
		printf("flags     young %llu, dirty %llu\n", (unsigned long long)young,
		       (unsigned long long)dirty);
	if (na == n && aged) {
		for (unsigned b = 0; b < 9; b++)
			if (hist[b])
				top = b;
		printf("idle age  (scan intervals, pages with content):");
		for (unsigned b = 0; b <= top; b++)
			printf(" %s: %llu%s", bucket[b], (unsigned long long)hist[b],
			       b < top ? "," : "");
		printf("\n");
	} else if (na != n) {
		printf("idle age  - (access sampling is off)\n");
	}
	free(age);
}

/* Runs of equal state, one line each (at most 40, then a count). */
static void print_pagemap(json_t *a)
{
	static const char *const names[] = {"new",     "resident", "unmapped", "writeback",
					    "swapped", "absent",   "?"};
	uint64_t first = uc_u64(a, "first"), shown = 0, runs = 0;
	uint8_t *st;
	int64_t n = uc_pagemap_decode(a, "state", &st);
	const char *key;
	json_t *v;

	printf("pages %llu..%llu (source: %s):", (unsigned long long)first,
	       (unsigned long long)(first + (uint64_t)(n > 0 ? n : 0)),
	       json_string_value(json_object_get(a, "source")));
	json_object_foreach(json_object_get(a, "counts"), key, v)
	    printf(" %s %lld", key, (long long)json_integer_value(v));
	printf("\n");
	print_pagemap_summary(st, n, a);
	for (int64_t i = 0, j; i < n; i = j) {
		unsigned s = st[i] & 0x0f;

		for (j = i + 1; j < n && (st[j] & 0x0f) == s; j++)
			;
		runs++;
		if (shown++ < 40)
			printf("  0x%010llx-0x%010llx  %-9s %llu pages\n",
			       (unsigned long long)((first + (uint64_t)i) * 4096),
			       (unsigned long long)((first + (uint64_t)j) * 4096),
			       names[s < 6 ? s : 6], (unsigned long long)(j - i));
	}
	if (runs > 40)
		printf("  ... %llu runs in all (--json for every page)\n",
		       (unsigned long long)runs);
	free(st);
}

static void print_wss(json_t *a)
{
	json_t *win = json_object_get(a, "windows"), *h = json_object_get(a, "idle_hist"), *w;
	json_t *wr = json_object_get(a, "write_pages_per_s");
	char b1[32];
	size_t i;

	printf("wss       ");
	json_array_foreach(win, i, w)
	{
		printf("%s%llus: %s", i ? ", " : "", (unsigned long long)uc_u64(w, "seconds"),
		       uc_bytes(uc_u64(w, "pages") * 4096, b1, sizeof(b1)));
		/* a window longer than the VM's sampling history, or than stride intervals */
		if (!uc_u64(w, "covered_ms"))
			printf(" (no sample yet)");
		else if (uc_u64(w, "covered_ms") + 500 < uc_u64(w, "seconds") * 1000)
			printf(" (covers only the last %.1f s)",
			       (double)uc_u64(w, "covered_ms") / 1000);
	}
	printf("\nidle      pages in memory idle >= 2^i intervals of %llu ms:",
	       (unsigned long long)uc_u64(a, "interval_ms"));
	json_array_foreach(h, i, w)
	    printf(" %s", uc_bytes((uint64_t)json_integer_value(w) * 4096, b1, sizeof(b1)));
	printf("\nwrites    %s\n",
	       json_is_integer(wr)
		   ? uc_bytes((uint64_t)json_integer_value(wr) * 4096, b1, sizeof(b1))
		   : "- (run ufvm with --dirty-track)");
	if (json_is_integer(wr))
		printf("          (per second, from KVM's dirty log)\n");
	printf("sampling  %llu scans, %llu pages per sample, scanner CPU %.1f%%, refaults %.1f%%\n",
	       (unsigned long long)uc_u64(a, "scans"),
	       (unsigned long long)uc_u64(a, "sample_pages"),
	       json_number_value(json_object_get(a, "scan_cpu_pct")),
	       json_number_value(json_object_get(a, "refault_pct")));
}

static void print_balloon(json_t *a)
{
	json_t *st = json_object_get(a, "stats"), *d = json_object_get(a, "discarded_pages");
	char b1[32], b2[32];
	const char *key;
	json_t *v;

	printf("balloon   target %s, actual %s (%llu / %llu pages)\n",
	       uc_bytes(uc_u64(a, "target_pages") * 4096, b1, sizeof(b1)),
	       uc_bytes(uc_u64(a, "actual_pages") * 4096, b2, sizeof(b2)),
	       (unsigned long long)uc_u64(a, "target_pages"),
	       (unsigned long long)uc_u64(a, "actual_pages"));
	printf("given     %llu pages inflated (%llu held memory), %llu deflated\n",
	       (unsigned long long)uc_u64(a, "inflated_pages"),
	       (unsigned long long)uc_u64(a, "inflated_freed_pages"),
	       (unsigned long long)uc_u64(a, "deflated_pages"));
	printf("reported  %s free, of which %s held memory and was freed (the rest was never "
	       "touched)\n",
	       uc_bytes(uc_u64(a, "reported_pages") * 4096, b1, sizeof(b1)),
	       uc_bytes(uc_u64(a, "reported_freed_pages") * 4096, b2, sizeof(b2)));
	if (json_is_integer(d))
		printf("pager     %llu pages discarded (back to never-touched)\n",
		       (unsigned long long)json_integer_value(d));
	printf("stats     %llu updates from the guest%s\n",
	       (unsigned long long)uc_u64(a, "stats_updates"),
	       json_is_true(json_object_get(a, "stats_requested")) ? ", fresh ones requested" : "");
	json_object_foreach(st, key, v)
	{
		if (strstr(key, "memory") || !strcmp(key, "disk_caches"))
			printf("  %-18s %s\n", key,
			       uc_bytes((uint64_t)json_integer_value(v), b1, sizeof(b1)));
		else
			printf("  %-18s %llu\n", key, (unsigned long long)json_integer_value(v));
	}
}

static void print_ok(const char *cmd, json_t *a)
{
	char b1[32];

	if (!strcmp(cmd, "stats")) {
		print_stats(a);
	} else if (!strcmp(cmd, "pagemap")) {
		print_pagemap(a);
	} else if (!strcmp(cmd, "wss")) {
		print_wss(a);
	} else if (!strcmp(cmd, "balloon")) {
		print_balloon(a);
	} else if (!strcmp(cmd, "limit")) {
		uint64_t l = uc_u64(a, "limit_bytes");

		if (l)
			printf("limit: %s (%llu pages)\n", uc_bytes(l, b1, sizeof(b1)),
			       (unsigned long long)(l / 4096));
		else
			printf("limit: none\n");
	} else if (!strcmp(cmd, "reclaim")) {
		printf("reclaim: %llu pages (%s) in %llu ms\n",
		       (unsigned long long)uc_u64(a, "reclaimed"),
		       uc_bytes(uc_u64(a, "reclaimed") * 4096, b1, sizeof(b1)),
		       (unsigned long long)uc_u64(a, "ms"));
	} else if (!strcmp(cmd, "swapout") || !strcmp(cmd, "swapin")) {
		printf("%s: %llu pages out, %llu pages in, %llu ms; now resident %s, %llu pages "
		       "swapped\n",
		       cmd, (unsigned long long)uc_u64(a, "pages_out"),
		       (unsigned long long)uc_u64(a, "pages_in"),
		       (unsigned long long)uc_u64(a, "ms"),
		       uc_bytes(uc_u64(a, "resident_pages") * 4096, b1, sizeof(b1)),
		       (unsigned long long)uc_u64(a, "swapped_pages"));
	} else if (!strcmp(cmd, "dirty")) {
		printf("dirty: %llu of %llu pages written since the last harvest (%s)\n",
		       (unsigned long long)uc_u64(a, "dirty_pages"),
		       (unsigned long long)uc_u64(a, "pages"),
		       json_string_value(json_object_get(a, "mode")));
	} else if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume") || !strcmp(cmd, "stop")) {
		printf("%s\n", !strcmp(cmd, "pause")	? "paused"
			       : !strcmp(cmd, "resume") ? "resumed"
							: "stopping");
	} else {
		char *s = json_dumps(a, JSON_INDENT(2) | JSON_SORT_KEYS);

		printf("%s\n", s ? s : "ok");
		free(s);
	}
}

/* Build the request of a one-shot command; NULL (after a message) on bad usage. */
static json_t *make_req(const char *cmd, const char *arg)
{
	uint64_t v;
	unsigned u;

	if (!strcmp(cmd, "limit")) {
		if (!arg || cli_parse_size(arg, &v) < 0)
			return NULL;
		return json_pack("{s:s, s:I}", "cmd", cmd, "bytes", (json_int_t)v);
	}
	if (!strcmp(cmd, "reclaim")) {
		if (!arg || cli_parse_uint(arg, 1, 1u << 31, &u) < 0)
			return NULL;
		return json_pack("{s:s, s:I}", "cmd", cmd, "pages", (json_int_t)u);
	}
	if (!strcmp(cmd, "balloon") && arg) {
		if (cli_parse_size(arg, &v) < 0 || v % 4096)
			return NULL;
		return json_pack("{s:s, s:I}", "cmd", cmd, "pages", (json_int_t)(v / 4096));
	}
	if (!strcmp(cmd, "stop")) {
		if (arg && cli_parse_uint(arg, 0, 255, &u) < 0)
			return NULL;
		return json_pack("{s:s, s:i}", "cmd", cmd, "status", arg ? (int)u : 0);
	}
	if (!strcmp(cmd, "swapout") && arg && strcmp(arg, "--prefetch"))
		return NULL;
	if (!strcmp(cmd, "swapout"))
		return json_pack("{s:s, s:b}", "cmd", cmd, "prefetch", arg != NULL);
	if (arg)
		return NULL;
	return json_pack("{s:s}", "cmd", cmd);
}

int main(int argc, char **argv)
{
	const char *args[4] = {0}, *why = "";
	unsigned nargs = 0, n = 0;
	bool json = false;
	struct uc c;
	json_t *req = NULL, *ans;
	int err, status;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout), 0;
		else if (nargs < 4)
			args[nargs++] = argv[i];
		else
			return usage_err("too many arguments", "");
	}
	if (nargs < 2)
		return usage_err("need a SOCKET and a COMMAND", "");
	if (!strcmp(args[1], "top")) {
		if (nargs == 4 && !strcmp(args[2], "-n") &&
		    cli_parse_uint(args[3], 1, 1u << 30, &n) == 0)
			nargs = 2;
		if (nargs != 2)
			return usage_err("usage: ufvmctl SOCKET top [-n N]", "");
	} else if (!strcmp(args[1], "heatmap")) {
		if (nargs < 3 || (nargs == 4 && (atof(args[3]) < 0.2 || atof(args[3]) > 600)))
			return usage_err(
			    "usage: ufvmctl SOCKET heatmap OUT.png [SECONDS (0.2..600)]", "");
	} else {
		static const char *const known[] = {"stats",   "limit",	  "reclaim", "pause",
						    "resume",  "swapout", "swapin",  "wss",
						    "pagemap", "dirty",	  "stop",    "balloon"};
		bool ok = false;

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			ok |= !strcmp(args[1], known[i]);
		if (!ok)
			return usage_err("unknown command: ", args[1]);
		/* the arguments first: a bad one is a usage error (2) whether or not the VM
		 * is there to ask */
		req = make_req(args[1], nargs > 2 ? args[2] : NULL);
		if (!req || nargs > 3) {
			json_decref(req);
			return usage_err("bad argument for ", args[1]);
		}
	}
	err = uc_connect(&c, args[0]);
	if (err) {
		json_decref(req);
		fprintf(stderr,
			"ufvmctl: %s: cannot connect: %s (is `ufvm run --api %s` running?)\n",
			args[0], strerror(-err), args[0]);
		return 1;
	}
	if (!strcmp(args[1], "top")) {
		status = uc_top(&c, n);
		goto out;
	}
	if (!strcmp(args[1], "heatmap")) {
		status = uc_heatmap(&c, args[2], nargs == 4 ? atof(args[3]) : 5.0, 100);
		goto out;
	}
	ans = uc_call(&c, req, &why);
	status = 1;
	if (!ans) {
		fprintf(stderr, "ufvmctl: %s: %s: %s\n", args[0], args[1], why);
	} else {
		bool ok = json_is_true(json_object_get(ans, "ok"));

		if (json) {
			char *s = json_dumps(ans, JSON_COMPACT);

			printf("%s\n", s ? s : "");
			free(s);
		} else if (ok) {
			print_ok(args[1], ans);
		}
		if (!ok)
			fprintf(stderr, "ufvmctl: %s: %s: %s\n", args[0], args[1],
				json_string_value(json_object_get(ans, "error")));
		status = ok ? 0 : 1;
		json_decref(ans);
	}
out:
	uc_close(&c);
	return status;
}
