/* pool.h: the memory pool: several VMs share one budget of resident guest RAM (pool/README.md) */
#ifndef UFVM_POOL_H
#define UFVM_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <sys/types.h>

#include <jansson.h>

#define POOL_PAGE      4096ULL
#define POOL_MIN_PAGES 1024u /* 4 MiB: the smallest memory limit a VM accepts */
#define POOL_NAME_MAX  32    /* VM names: [A-Za-z0-9_.-], 1..31 bytes */

/* ---- policy.c: how the budget is divided; pure functions of measurements ----------
 * Every figure is in 4 KiB pages. The policy only says what each VM should get;
 * pool.c moves memory there without ever letting the total pass the budget. */
enum pool_policy { POOL_STATIC, POOL_WSS, POOL_TAX, POOL_PRESSURE, POOL_NPOLICIES };

struct pool_params {
	enum pool_policy policy;
	uint64_t budget;	       /* pages */
	double tax;		       /* tax: idle memory tax rate tau, 0 <= tau < 1 (ESX: 0.75) */
	double headroom;	       /* wss: share added to the working set (0.25) */
	uint64_t headroom_min;	       /* wss: pages added at least (512: 2 MiB) */
	double pressure;	       /* pressure: target share of time stalled (0.01) */
	double max_probe, coeff_probe; /* senpai: shrink at most 1% per probe ... */
	double max_backoff, coeff_backoff; /* ... grow at most 100% per tick */
	unsigned probe_ticks;		   /* ticks without pressure between probes (4) */
	double max_give; /* pressure: share of its room above lo a VM gives per tick (0.5) */
};

/* What a policy sees of one VM. In: everything but target; out: target (and quiet). */
struct pool_view {
	uint64_t lo, hi;   /* bounds of the target: POOL_MIN_PAGES, guest RAM */
	uint64_t shares;   /* weight, >= 1 */
	uint64_t limit;	   /* its limit now */
	uint64_t resident; /* pages in memory */
	uint64_t swapped;
	uint64_t active; /* pages touched lately (the working set), when active_known */
	bool active_known;
	double refault; /* share of time its vCPUs spent on swap-in faults since the last
			 * tick: the pressure policy's signal */
	unsigned quiet; /* pressure: ticks since its limit last moved (kept by the caller) */
	bool fixed;	/* not the policy's to move (cannot shrink, unresponsive): it keeps
			 * its limit and is charged `charge` */
	uint64_t charge;
	uint64_t target; /* out */
};

/* Fill v[i].target for every VM (fixed ones keep their limit). The targets of the
 * others sum to at most the budget left by the fixed ones (when that is below the
 * sum of their lo, each gets lo: the caller reports the pool over budget). */
void pool_decide(const struct pool_params *pp, struct pool_view *v, unsigned n);
/*
 * Water-filling: split `total` among n claimants in proportion to weights w (all
 * > 0), each between lo[i] and hi[i] (lo <= hi), into out[]. When total is below
 * the sum of lo, everyone gets lo. Returns what is left over when everyone is at hi.
 */
uint64_t pool_fill(uint64_t total, const double *w, const uint64_t *lo, const uint64_t *hi,
		   uint64_t *out, unsigned n);
const char *pool_policy_name(enum pool_policy p);
int pool_policy_parse(const char *s, enum pool_policy *p); /* 0 or -EINVAL */
void pool_params_default(struct pool_params *pp, enum pool_policy policy, uint64_t budget);

#endif

/* ---- vmlink.c: one VM's control socket, without blocking: requests out, answers in order */
enum plink_req { PLINK_STATS, PLINK_WSS, PLINK_LIMIT };
#define PLINK_QUEUE 16 /* requests in flight at most */
/* An answer is one line of at most PLINK_LINE_MAX bytes (a `stats` answer is about 1.3
 * KiB); a VM that sends a longer one is dropped (-EMSGSIZE), so a flooding peer cannot
 * make the pool's memory grow. PLINK_IN_MAX bounds what is read before the complete
 * answers are taken. */
#define PLINK_LINE_MAX (64u << 10)
#define PLINK_IN_MAX   (4 * PLINK_LINE_MAX)

struct pool_link {
	int fd; /* -1: not connected */
	char *in, *out;
	size_t inlen, incap, outlen, outoff, outcap;
	struct {
		enum plink_req kind;
		uint64_t arg, sent_ns;
	} q[PLINK_QUEUE];
	unsigned qhead, qlen;
};

void plink_init(struct pool_link *l);
/* Connect to a control socket; *peer gets the VM's pid (SO_PEERCRED). 0, or -errno:
 * -ENOENT or -ECONNREFUSED (nobody serves it yet), -EAGAIN (try again). */
int plink_connect(struct pool_link *l, const char *path, pid_t *peer);
void plink_close(struct pool_link *l);
/* Queue a request ({"cmd":"stats"}, "wss", or "limit" with arg bytes) stamped now;
 * -ENOBUFS when PLINK_QUEUE are in flight, -ENOMEM. */
int plink_send(struct pool_link *l, enum plink_req kind, uint64_t arg, uint64_t now);
bool plink_busy(const struct pool_link *l, enum plink_req kind); /* one of kind in flight */
uint64_t plink_oldest(const struct pool_link *l); /* stamp of the oldest in flight; 0: none */
/* Socket I/O when poll() says so: 0, or -EPIPE when the VM is gone, -EMSGSIZE when it
 * sends a line longer than PLINK_LINE_MAX (or -errno). */
int plink_flush(struct pool_link *l);
int plink_read(struct pool_link *l);
bool plink_wants_write(const struct pool_link *l);
/* The next complete answer: 1 with *ans (the caller's to decref) and what it
 * answers; 0 when none is complete; -EBADMSG when a line is not a JSON object or
 * answers nothing asked (the link is then out of step: close it). */
int plink_next(struct pool_link *l, json_t **ans, enum plink_req *kind, uint64_t *arg,
	       uint64_t *sent_ns);

/* ---- pool.c: the VMs and moving memory within the budget; answers.c: what they
 * answer; status.c: the `status` answer ---- */
#define POOL_MAX_VMS 64
#define POOL_EVENTS  32 /* the latest events, for `status` */

enum pool_vm_state {
	VM_WAITING,  /* `start` asked; waits until the budget has room for 4 MiB */
	VM_LAUNCHED, /* the pool started it; its control socket is not up yet */
	VM_UP,	     /* connected */
	VM_GONE,     /* exited, or its socket closed; charged nothing */
};

struct pool_vm {
	char name[POOL_NAME_MAX];
	char sock[108];
	char **argv; /* VM_WAITING: ufvm run's arguments after the pool's own (owned) */
	pid_t pid;   /* the VMM's process (SO_PEERCRED for attached VMs); 0 unknown */
	bool child;  /* the pool started it: it reaps and stops it */
	bool reaped;
	int wstatus; /* waitpid's status, when reaped */
	enum pool_vm_state state;
	struct pool_link link;
	uint64_t t_added, t_up, t_gone; /* ns on the pool's clock */
	char gone_why[160];
	unsigned reconnects;
	uint64_t reconnect_ns;
	/* the VM's latest answers (pages, counters) */
	bool have_stats, have_wss, sampling, paused;
	uint64_t mem_pages, cpus, resident, swapped, limit, write_errors, reclaim_stalled;
	uint64_t wss_pages, wss_covered_ms;
	uint64_t c_stall, c_refault, c_faults, c_swapins, c_in, c_out, t_sample;
	/* since the previous stats: shares of vCPU time stalled on memory (swap-ins and
	 * waiting for room) and spent on swap-ins alone, rates per second */
	double stall, refault, fault_rate, swapin_rate, in_rate, out_rate;
	/* since the last decision: ns of vCPU time stalled and on swap-ins, s of vCPU time */
	double stall_acc, refault_acc, stall_acc_s;
	/* control */
	uint64_t shares, target, launch_limit;
	uint64_t boot_charge;  /* attached, until its first stats: its VMM's RssAnon +
				* RssShmem (pages) */
	uint64_t limit_want;   /* the limit last asked for (in force once answered) */
	uint64_t limit_hold;   /* charged after lowering the limit, until stats say more */
	uint64_t limit_hold_t; /* ... stats asked after this time */
	unsigned quiet;
	bool late, stuck;
	bool stats_failed; /* its latest stats answer failed: it counts as late */
	uint64_t over_t, over_res;
	char stuck_why[160];
};

struct pool_event {
	double t;
	char vm[POOL_NAME_MAX];
	char what[200];
};

struct pool {
	struct pool_params pp;
	unsigned interval_ms, late_ms, stuck_ms;
	uint64_t t0; /* CLOCK_MONOTONIC ns at start: the pool's clock starts at 0 */
	struct pool_vm *vm[POOL_MAX_VMS];
	unsigned nvm;
	bool round_open;
	uint64_t round_deadline, next_tick;
	bool over_budget;
	struct pool_event ev[POOL_EVENTS];
	unsigned nev;
	/* outputs */
	FILE *series;
	bool series_csv;
	bool quiet_log; /* events not echoed to stderr */
	/* starting VMs */
	char dir[200];	 /* sockets NAME.sock and output NAME.log of started VMs */
	char ufvm[4096]; /* the ufvm binary */
	bool exit_when_done, stopping;
	unsigned started; /* VMs the pool started, ever */
};

uint64_t pool_now(const struct pool *p); /* ns since the pool started */
/* A VM's charge against the budget now: what it holds or may take without asking. */
uint64_t pool_charge(const struct pool_vm *v);
/* Add a VM: attached (sock) or to start (argv, owned on success). -errno with *why. */
int pool_add(struct pool *p, const char *name, const char *sock, char **argv, uint64_t shares,
	     const char **why);
struct pool_vm *pool_find(struct pool *p, const char *name);
void pool_forget(struct pool *p, struct pool_vm *v); /* detach: its limit stays */
/* An event: logged to stderr, the series and the status ring. */
void pool_event(struct pool *p, const struct pool_vm *v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* What an attached VM that has not answered its first stats holds: boot_charge. */
void pool_measure_unknown(struct pool_vm *v);
/* Ask every VM for fresh measurements (once per interval). */
void pool_tick(struct pool *p);
/* Run the policy and move memory: lower limits now, raise them as room appears. */
void pool_decide_now(struct pool *p);
/* Hand out what the budget has free: to VMs below their target, to VMs waiting to start. */
void pool_grant(struct pool *p);
/* An answer from v's control socket (ans is borrowed). */
void pool_answer(struct pool *p, struct pool_vm *v, json_t *ans, enum plink_req kind, uint64_t arg,
		 uint64_t sent_ns);
/* v's socket closed or failed: reconnect once, else it is gone. */
void pool_link_lost(struct pool *p, struct pool_vm *v, int err);
void pool_set_gone(struct pool *p, struct pool_vm *v, const char *why);
/* Late answers and VMs that do not shrink: checked each loop. */
void pool_watch(struct pool *p);
/* Every VM's state as JSON (for status; new reference). */
json_t *pool_status_json(struct pool *p);
/* RssAnon and RssShmem of a process, from /proc/PID/status; false when unknown. */
bool pool_proc_rss(pid_t pid, uint64_t *anon, uint64_t *shmem);
const char *pool_state_name(const struct pool_vm *v);

/* ---- loop.c: `ufvmpool run` until stopped (signal, `stop`) or, with exit_when_done,
 * until every VM it started has exited; its exit status. ---- */
struct pool_api;
int pool_loop(struct pool *p, struct pool_api *api);

/* ---- launch.c: the VMs the pool starts ---- */
/* Guest RAM in pages from ufvm run's arguments (--mem, default 64M); -EINVAL with *why
 * when they hold something the pool owns (--api, --mem-limit) or a bad --mem. */
int pool_guest_pages(char **argv, uint64_t *pages, const char **why);
/* Start v (VM_WAITING) with a memory limit of `limit` pages; -errno. */
int pool_launch(struct pool *p, struct pool_vm *v, uint64_t limit);
/* Reap exited children (SIGCHLD). */
void pool_reap(struct pool *p);
/* Stop every child (SIGTERM, then SIGKILL after `grace_ms`), reaping them. */
void pool_stop_children(struct pool *p, unsigned grace_ms);
/* The ufvm binary next to ours (installed) or in the build tree, else "ufvm". */
void pool_find_ufvm(char *out, size_t n);

/* ---- series.c: the time series (JSON lines, or CSV) ---- */
int pool_series_open(struct pool *p, const char *path); /* -errno */
void pool_series_sample(struct pool *p);		/* one line per VM, and one for the pool */
void pool_series_event(struct pool *p, const struct pool_event *e);
void pool_series_close(struct pool *p);

/* ---- server.c (the socket) and api.c (its requests): the pool's own socket, JSON
 * lines like the VMs' (pool/README.md) ---- */
struct pool_api;
/* Listen at path (mode 0600; a stale socket is replaced). -errno with *why. */
int pool_api_open(struct pool_api **out, const char *path, const char **why);
void pool_api_close(struct pool_api *a); /* NULL is a no-op; removes the socket */
/* The descriptors to poll (at most 1 + 16), and their handling after poll(). */
unsigned pool_api_pollfds(struct pool_api *a, struct pollfd *pf);
void pool_api_handle(struct pool_api *a, struct pool *p, const struct pollfd *pf, unsigned n);
/* One request line in, one answer line out (malloc'd, newline-terminated); NULL: no memory. */
char *pool_request(struct pool *p, const char *line, size_t len, size_t *outlen);
/* "256M", "1G", or bytes: 0 or -EINVAL. */
int pool_parse_size(const char *s, uint64_t *out);
