/* main.c: ufvmpool: `run` a pool (its event loop), or talk to one, or plot its time series */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <wordexp.h>

#include "pool/pool.h"

int pool_client(int argc, char **argv);	   /* client.c */
int pool_plot_main(int argc, char **argv); /* plot.c */

static const char usage[] =
    "usage: ufvmpool run --budget SIZE [--policy static|wss|tax|pressure] [OPTIONS]\n"
    "       ufvmpool [--json] SOCKET status|ps|top [-n N]\n"
    "       ufvmpool SOCKET start NAME [--shares N] -- UFVM-RUN-ARGS... GUEST.elf\n"
    "       ufvmpool SOCKET attach NAME VM-SOCKET [--shares N] | detach NAME\n"
    "       ufvmpool SOCKET set [budget SIZE] [policy P] [shares NAME N] | mark LABEL [NAME] | "
    "stop\n"
    "       ufvmpool plot SERIES.jsonl OUT.png [--title TEXT]\n"
    "\n"
    "Shares one budget of resident guest RAM among VMs, moving memory between them by\n"
    "their memory limits (pool/README.md). Options of run:\n"
    "  --budget SIZE       resident guest RAM of all VMs together (>= 4M)\n"
    "  --policy P          static (equal shares, the default), wss (working set +\n"
    "                      headroom), tax (ESX's idle memory tax), pressure (senpai)\n"
    "  --start NAME[:SHARES]=ARGS  start `ufvm run ARGS` under the pool (ARGS split as by\n"
    "                      a shell, without command substitution); repeatable\n"
    "  --attach NAME[:SHARES]=SOCKET  manage a running VM through its control socket\n"
    "  --api PATH          serve the pool's own socket (status, start, ...; mode 0600)\n"
    "  --series FILE       every VM's resident, swapped, limit, WSS, rates per decision,\n"
    "                      and events: JSON lines, or CSV for a .csv name\n"
    "  --dir DIR           sockets and output of started VMs (default: a new\n"
    "                      directory $TMPDIR/ufvmpool.PID)\n"
    "  --interval MS       decide every MS ms (default 500)\n"
    "  --late MS           a VM silent this long is charged what it holds (default 3000)\n"
    "  --stuck MS          a VM above its limit this long, not shrinking, is reported\n"
    "                      and charged what it holds (default 3000)\n"
    "  --tax RATE          tax: idle memory tax rate in %, 0..99 (default 75)\n"
    "  --headroom PCT      wss: headroom over the working set in % (default 25)\n"
    "  --pressure PCT      pressure: target share of time stalled, % (default 1)\n"
    "  --ufvm PATH         the ufvm binary for started VMs (default: next to ufvmpool)\n"
    "  --exit-when-done    exit when every started VM has exited (status 0 if all did\n"
    "                      with 0, else 1)\n"
    "  -q                  events not echoed to stderr\n";

/* NAME[:SHARES]=REST */
static int split_spec(char *spec, char **name, uint64_t *shares, char **rest)
{
	char *eq = strchr(spec, '='), *colon;

	if (!eq)
		return -EINVAL;
	*eq = '\0';
	*rest = eq + 1;
	*name = spec;
	*shares = 1;
	colon = strchr(spec, ':');
	if (colon) {
		char *end;

		*colon = '\0';
		errno = 0;
		*shares = strtoull(colon + 1, &end, 10);
		if (errno || *end || !*shares)
			return -EINVAL;
	}
	return 0;
}

static char **words(const char *s)
{
	wordexp_t we;
	char **argv;

	if (wordexp(s, &we, WRDE_NOCMD) != 0)
		return NULL;
	argv = calloc(we.we_wordc + 1, sizeof(*argv));
	for (size_t i = 0; argv && i < we.we_wordc; i++)
		argv[i] = strdup(we.we_wordv[i]);
	wordfree(&we);
	return argv;
}

static unsigned num(const char *opt, const char *s, unsigned lo, unsigned hi, bool *bad)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s ? s : "", &end, 10);
	if (!s || errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "ufvmpool: %s: '%s' is not an integer in %u..%u\n", opt, s ? s : "",
			lo, hi);
		*bad = true;
		return lo;
	}
	return (unsigned)v;
}

static int run_main(int argc, char **argv)
{
	static struct pool pool;
	struct pool *p = &pool;
	struct pool_api *api = NULL;
	const char *api_path = NULL, *series = NULL, *why;
	char *starts[POOL_MAX_VMS], *attaches[POOL_MAX_VMS];
	unsigned ns = 0, na = 0, tax = 75, head = 25, press = 1;
	uint64_t budget = 0;
	enum pool_policy pol = POOL_STATIC;
	bool bad = false, made_dir = false;
	int rc;

	p->interval_ms = 500;
	p->late_ms = 3000;
	p->stuck_ms = 3000;
	pool_find_ufvm(p->ufvm, sizeof(p->ufvm));
	for (int i = 2; i < argc && !bad; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;

		if (!strcmp(a, "--budget")) {
			if (!v || pool_parse_size(v, &budget) < 0 || budget < (4ULL << 20)) {
				fprintf(stderr,
					"ufvmpool: --budget: '%s' is not a size of at least "
					"4M like 1G\n",
					v ? v : "");
				bad = true;
			}
		} else if (!strcmp(a, "--policy")) {
			if (!v || pool_policy_parse(v, &pol) < 0) {
				fprintf(stderr,
					"ufvmpool: --policy: '%s' is not static, wss, tax or "
					"pressure\n",
					v ? v : "");
				bad = true;
			}
		} else if (!strcmp(a, "--start") || !strcmp(a, "--attach")) {
			if (!v || (a[2] == 's' ? ns : na) == POOL_MAX_VMS) {
				fprintf(stderr, "ufvmpool: %s: NAME=... expected (at most 64)\n",
					a);
				bad = true;
			} else if (a[2] == 's') {
				starts[ns++] = argv[i + 1];
			} else {
				attaches[na++] = argv[i + 1];
			}
		} else if (!strcmp(a, "--api")) {
			api_path = v;
		} else if (!strcmp(a, "--series")) {
			series = v;
		} else if (!strcmp(a, "--dir")) {
			if (v)
				snprintf(p->dir, sizeof(p->dir), "%s", v);
		} else if (!strcmp(a, "--ufvm")) {
			if (v)
				snprintf(p->ufvm, sizeof(p->ufvm), "%s", v);
		} else if (!strcmp(a, "--interval")) {
			p->interval_ms = num(a, v, 50, 60000, &bad);
		} else if (!strcmp(a, "--late")) {
			p->late_ms = num(a, v, 100, 600000, &bad);
		} else if (!strcmp(a, "--stuck")) {
			p->stuck_ms = num(a, v, 100, 600000, &bad);
		} else if (!strcmp(a, "--tax")) {
			tax = num(a, v, 0, 99, &bad);
		} else if (!strcmp(a, "--headroom")) {
			head = num(a, v, 0, 1000, &bad);
		} else if (!strcmp(a, "--pressure")) {
			press = num(a, v, 1, 100, &bad);
		} else {
			takes = false;
			if (!strcmp(a, "--exit-when-done")) {
				p->exit_when_done = true;
			} else if (!strcmp(a, "-q")) {
				p->quiet_log = true;
			} else {
				fprintf(stderr, "ufvmpool: run: unknown option '%s'\n%s", a, usage);
				return 2;
			}
		}
		if (takes && !v && !bad) {
			fprintf(stderr, "ufvmpool: %s needs a value\n", a);
			bad = true;
		}
		i += takes;
	}
	if (!bad && !budget) {
		fprintf(stderr, "ufvmpool: run: --budget SIZE is required\n");
		bad = true;
	}
	if (bad)
		return 2;
	pool_params_default(&p->pp, pol, budget / POOL_PAGE);
	p->pp.tax = tax / 100.0;
	p->pp.headroom = head / 100.0;
	p->pp.pressure = press / 100.0;
	p->t0 = 0;
	p->t0 = pool_now(p);
	if (*p->dir && mkdir(p->dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "ufvmpool: --dir %s: cannot create: %s\n", p->dir, strerror(errno));
		return 2;
	}
	if (!*p->dir) {
		const char *t = getenv("TMPDIR");

		snprintf(p->dir, sizeof(p->dir), "%s/ufvmpool.%d", t && *t ? t : "/tmp",
			 (int)getpid());
		if (mkdir(p->dir, 0700) < 0) {
			fprintf(stderr, "ufvmpool: %s: cannot create: %s\n", p->dir,
				strerror(errno));
			return 1;
		}
		made_dir = true;
	}
	if (series && (rc = pool_series_open(p, series)) < 0) {
		fprintf(stderr, "ufvmpool: --series %s: cannot create: %s\n", series,
			strerror(-rc));
		return 2;
	}
	if (api_path && (rc = pool_api_open(&api, api_path, &why)) < 0) {
		fprintf(stderr, "ufvmpool: --api %s: %s (%s)\n", api_path, why, strerror(-rc));
		return rc == -EADDRINUSE ? 1 : 2;
	}
	pool_event(p, NULL, "pool of %" PRIu64 " MiB, policy %s, deciding every %u ms",
		   p->pp.budget / 256, pool_policy_name(pol), p->interval_ms);
	for (unsigned i = 0; i < na + ns; i++) {
		char *name, *rest, **av = NULL;
		uint64_t shares;
		bool start = i >= na;

		if (split_spec(start ? starts[i - na] : attaches[i], &name, &shares, &rest) < 0) {
			fprintf(stderr, "ufvmpool: %s: expected NAME[:SHARES]=%s\n",
				start ? "--start" : "--attach", start ? "ARGS" : "SOCKET");
			rc = 2;
			goto out;
		}
		if (start && (!(av = words(rest)) || !av[0])) {
			fprintf(stderr, "ufvmpool: --start %s: cannot split '%s' into arguments\n",
				name, rest);
			free(av);
			rc = 2;
			goto out;
		}
		rc = pool_add(p, name, start ? NULL : rest, av, shares, &why);
		if (rc < 0) {
			fprintf(stderr, "ufvmpool: %s %s: %s\n", start ? "--start" : "--attach",
				name, why);
			for (char **w = av; w && *w; w++)
				free(*w);
			free(av);
			rc = rc == -ENOENT || rc == -ECONNREFUSED ? 1 : 2;
			goto out;
		}
	}
	rc = pool_loop(p, api);
out:
	if (rc)
		pool_stop_children(p, 5000);
	pool_api_close(api);
	pool_series_close(p);
	if (made_dir) {
		for (unsigned i = 0; i < p->nvm; i++) { /* sockets are gone; logs stay */
			unlink(p->vm[i]->sock);
		}
		rmdir(p->dir); /* only if empty: started VMs' logs are kept */
	}
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "run"))
		return run_main(argc, argv);
	if (!strcmp(argv[1], "plot"))
		return pool_plot_main(argc - 1, argv + 1);
	return pool_client(argc, argv);
}
