/* policy.c: how the pool divides its budget: static, wss, tax and pressure (pool/README.md) */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pool.h"

static const char *const names[POOL_NPOLICIES] = {"static", "wss", "tax", "pressure"};

const char *pool_policy_name(enum pool_policy p)
{
	return (unsigned)p < POOL_NPOLICIES ? names[p] : "?";
}

int pool_policy_parse(const char *s, enum pool_policy *p)
{
	for (unsigned i = 0; i < POOL_NPOLICIES; i++)
		if (!strcmp(s, names[i])) {
			*p = (enum pool_policy)i;
			return 0;
		}
	return -EINVAL;
}

void pool_params_default(struct pool_params *pp, enum pool_policy policy, uint64_t budget)
{
	*pp = (struct pool_params){
	    .policy = policy,
	    .budget = budget,
	    .tax = 0.75,	 /* ESX's default idle memory tax */
	    .headroom = 0.25,	 /* working set + 25% ... */
	    .headroom_min = 512, /* ... and at least 2 MiB more */
	    .pressure = 0.01,	 /* 10 ms stalled per second */
	    .max_probe = 0.01,	 /* senpai's defaults */
	    .coeff_probe = 10,
	    .max_backoff = 1.0,
	    .coeff_backoff = 20,
	    .probe_ticks = 4,
	    .max_give = 0.5,
	};
}

/* A claimant's share at level x: monotone non-decreasing in x. */
typedef double (*level_fn)(const void *ctx, unsigned i, double x);

/*
 * Split total among n so that out[i] = clamp(f(i, x), lo, hi) for the x that
 * makes them sum to total (bisection; f is monotone), rounded down, and the
 * pages lost to rounding handed out one by one to those below hi. Returns what
 * is left when everyone is at hi.
 */
static uint64_t fill_by(uint64_t total, level_fn f, const void *ctx, const uint64_t *lo,
			const uint64_t *hi, uint64_t *out, unsigned n)
{
	uint64_t sum_lo = 0, sum_hi = 0, sum = 0;
	double a = 0, b = 1;

	for (unsigned i = 0; i < n; i++)
		sum_lo += lo[i], sum_hi += hi[i];
	if (total <= sum_lo || total >= sum_hi) {
		for (unsigned i = 0; i < n; i++)
			out[i] = total <= sum_lo ? lo[i] : hi[i];
		return total >= sum_hi ? total - sum_hi : 0;
	}
	for (;;) { /* an upper level where the sum reaches total */
		double s = 0;

		for (unsigned i = 0; i < n; i++)
			s += fmin(fmax(f(ctx, i, b), (double)lo[i]), (double)hi[i]);
		if (s >= (double)total || b > 1e18)
			break;
		a = b;
		b *= 2;
	}
	for (int it = 0; it < 100; it++) {
		double m = (a + b) / 2, s = 0;

		for (unsigned i = 0; i < n; i++)
			s += fmin(fmax(f(ctx, i, m), (double)lo[i]), (double)hi[i]);
		if (s > (double)total)
			b = m;
		else
			a = m;
	}
	for (unsigned i = 0; i < n; i++) {
		double v = fmin(fmax(f(ctx, i, a), (double)lo[i]), (double)hi[i]);

		out[i] = (uint64_t)v;
		if (out[i] < lo[i])
			out[i] = lo[i];
		sum += out[i];
	}
	for (unsigned i = 0; sum < total; i = (i + 1) % n) { /* rounding: at most n pages */
		bool any = false;

		for (unsigned j = 0; j < n && sum < total; j++)
			if (out[j] < hi[j])
				out[j]++, sum++, any = true;
		if (!any)
			break;
	}
	return 0;
}

static double linear(const void *ctx, unsigned i, double x)
{
	return ((const double *)ctx)[i] * x;
}

uint64_t pool_fill(uint64_t total, const double *w, const uint64_t *lo, const uint64_t *hi,
		   uint64_t *out, unsigned n)
{
	return fill_by(total, linear, w, lo, hi, out, n);
}

/* The VMs the policy may move, gathered: their bounds and results. */
struct movable {
	unsigned n, idx[64];
	uint64_t lo[64], hi[64], out[64];
	double w[64];
};

static uint64_t clampu(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* static: equal shares (weighted by shares), each up to its guest RAM. */
static void decide_static(struct pool_view *v, struct movable *m, uint64_t avail)
{
	for (unsigned k = 0; k < m->n; k++)
		m->w[k] = (double)v[m->idx[k]].shares;
	pool_fill(avail, m->w, m->lo, m->hi, m->out, m->n);
}

/*
 * wss: each VM its working set plus headroom (a VM not measured yet: an equal
 * share); what is left by shares. When the wants do not fit, each gets the same
 * fraction of its want.
 */
static void decide_wss(const struct pool_params *pp, struct pool_view *v, struct movable *m,
		       uint64_t avail)
{
	uint64_t want[64], sum = 0, rest[64], zero[64] = {0}, extra[64];

	for (unsigned k = 0; k < m->n; k++) {
		const struct pool_view *x = &v[m->idx[k]];
		uint64_t w = avail / m->n;

		if (x->active_known)
			w = (uint64_t)((double)x->active * (1 + pp->headroom)) + pp->headroom_min;
		want[k] = clampu(w, m->lo[k], m->hi[k]);
		sum += want[k];
	}
	if (sum > avail) {
		for (unsigned k = 0; k < m->n; k++)
			m->w[k] = (double)want[k];
		pool_fill(avail, m->w, m->lo, want, m->out, m->n);
		return;
	}
	for (unsigned k = 0; k < m->n; k++) {
		m->w[k] = (double)v[m->idx[k]].shares;
		rest[k] = m->hi[k] - want[k];
	}
	pool_fill(avail - sum, m->w, zero, rest, extra, m->n);
	for (unsigned k = 0; k < m->n; k++)
		m->out[k] = want[k] + extra[k];
}

/*
 * tax (Waldspurger, OSDI'02, section 5): ESX reclaims from the VM with the
 * lowest ratio rho = S / (P * (f + k * (1 - f))), k = 1 / (1 - tau): shares S per
 * page P, where the idle pages (1 - f of them) cost k times as much. Reclaiming
 * from the lowest rho until none is lower than another's settles where every
 * rho is equal: with A = f * P active pages, P's cost is P up to A and
 * A + k * (P - A) beyond, so at the common level x = 1 / rho each VM holds
 * P = S * x while that is within A, else A + (S * x - A) / k. Found by bisection
 * on x. A VM not measured yet counts as all active (plain shares).
 */
struct tax_ctx {
	double s[64], a[64], inv_k;
};

static double tax_level(const void *ctx, unsigned i, double x)
{
	const struct tax_ctx *t = ctx;
	double c = t->s[i] * x;

	return c <= t->a[i] ? c : t->a[i] + (c - t->a[i]) * t->inv_k;
}

static void decide_tax(const struct pool_params *pp, struct pool_view *v, struct movable *m,
		       uint64_t avail)
{
	struct tax_ctx t = {.inv_k = 1 - pp->tax};

	for (unsigned k = 0; k < m->n; k++) {
		const struct pool_view *x = &v[m->idx[k]];

		t.s[k] = (double)x->shares;
		t.a[k] = x->active_known ? (double)x->active : INFINITY;
	}
	fill_by(avail, tax_level, &t, m->lo, m->hi, m->out, m->n);
}

/*
 * pressure (Meta's TMO, its senpai controller): each tick, a VM that stalled on
 * swap-ins (refaults) more than the target share of the time backs off (its limit
 * grows by a factor rising with the square of the excess, at most max_backoff); one
 * that stalled less, and held still probe_ticks ticks, is probed (shrinks by at
 * most max_probe). Senpai reads PSI, which also counts reclaim; here time a fault
 * waited for room under the limit is not counted: a VM writing new data at its
 * limit waits for reclaim whatever its limit, and counted, it kept memory that
 * the others then refaulted for. A VM grows to its footprint (resident + swapped)
 * and an eighth more at most: a thrashing VM's stall asks for far more than it
 * could hold, and that excess was taken from a VM that had just stopped stalling,
 * which then thrashed in turn. Senpai sets each cgroup apart; here they share a
 * budget: when the growth does not fit, the VMs that stall least give up to
 * max_give (half) of their room above lo each, least stalled first, and what is
 * still missing is cut from the growth pro rata. Memory so moves toward the VMs
 * stalled most. Memory nobody asks for stays free.
 */
static void senpai_step(const struct pool_params *pp, struct pool_view *x, uint64_t *want)
{
	double s = x->refault, t = pp->pressure, f;

	*want = x->limit;
	if (s >= t) {
		f = s / t / pp->coeff_backoff;
		f = fmin(f * f * pp->max_backoff, pp->max_backoff);
		*want = x->limit + (uint64_t)((double)x->limit * f);
		x->quiet = 0;
	} else if (x->quiet + 1 >= pp->probe_ticks) {
		f = t / fmax(s, 1e-9) / pp->coeff_probe;
		f = fmin(f * f * pp->max_probe, pp->max_probe);
		*want = x->limit - (uint64_t)((double)x->limit * f);
		x->quiet = 0;
	} else {
		x->quiet++;
	}
}

struct stall_order {
	const struct pool_view *v;
	const struct movable *m;
};

static int by_stall(const void *a, const void *b, void *ctx)
{
	const struct stall_order *o = ctx;
	double x = o->v[o->m->idx[*(const unsigned *)a]].refault;
	double y = o->v[o->m->idx[*(const unsigned *)b]].refault;

	return x < y ? -1 : x > y;
}

static void decide_pressure(const struct pool_params *pp, struct pool_view *v, struct movable *m,
			    uint64_t avail)
{
	uint64_t want[64], sum = 0, grow = 0, need;
	unsigned order[64];

	for (unsigned k = 0; k < m->n; k++) {
		struct pool_view *x = &v[m->idx[k]];

		if (!x->limit) { /* not running yet: an equal share to start with */
			want[k] = clampu(avail / m->n, m->lo[k], m->hi[k]);
		} else {
			uint64_t foot = x->resident + x->swapped, cap;

			senpai_step(pp, x, &want[k]);
			/* no growth past what it could use: its footprint (pages with content)
			 * and an eighth more, at least 4 MiB, for pages it is yet to touch */
			cap = foot + (foot / 8 > 1024 ? foot / 8 : 1024);
			if (want[k] > x->limit && want[k] > cap)
				want[k] = cap > x->limit ? cap : x->limit;
			want[k] = clampu(want[k], m->lo[k], m->hi[k]);
		}
		sum += want[k];
		if (want[k] > x->limit)
			grow += want[k] - x->limit;
		order[k] = k;
	}
	need = sum > avail ? sum - avail : 0;
	/* least stalled first: those not growing give up to max_give of their room */
	qsort_r(order, m->n, sizeof(order[0]), by_stall, &(struct stall_order){v, m});
	for (unsigned j = 0; j < m->n && need; j++) {
		unsigned k = order[j];
		struct pool_view *x = &v[m->idx[k]];
		uint64_t room, give;

		if (want[k] > x->limit || want[k] <= m->lo[k])
			continue;
		room = want[k] - m->lo[k];
		give = (uint64_t)((double)room * pp->max_give);
		if (give < 1)
			give = room < 256 ? room : 256;
		give = give < need ? give : need;
		want[k] -= give;
		need -= give;
	}
	for (unsigned k = 0; k < m->n; k++) {
		struct pool_view *x = &v[m->idx[k]];

		m->out[k] = want[k];
		if (need && grow && want[k] > x->limit) {
			uint64_t inc = want[k] - x->limit,
				 cut = (uint64_t)((double)inc * (double)need / (double)grow);

			m->out[k] = clampu(want[k] - (cut < inc ? cut : inc), m->lo[k], m->hi[k]);
		}
	}
	/* what is still above the budget (it shrank, say) comes off the biggest */
	for (;;) {
		unsigned big = 0;

		sum = 0;
		for (unsigned k = 0; k < m->n; k++) {
			sum += m->out[k];
			if (m->out[k] - m->lo[k] > m->out[big] - m->lo[big])
				big = k;
		}
		if (sum <= avail || m->out[big] <= m->lo[big])
			break;
		m->out[big] -=
		    sum - avail < m->out[big] - m->lo[big] ? sum - avail : m->out[big] - m->lo[big];
	}
}

void pool_decide(const struct pool_params *pp, struct pool_view *v, unsigned n)
{
	struct movable m = {0};
	uint64_t fixed = 0, avail;

	for (unsigned i = 0; i < n; i++) {
		if (v[i].fixed || m.n == 64) {
			v[i].target = v[i].limit;
			fixed += v[i].charge;
			continue;
		}
		m.idx[m.n] = i;
		m.lo[m.n] = v[i].lo;
		m.hi[m.n] = v[i].hi > v[i].lo ? v[i].hi : v[i].lo;
		m.n++;
	}
	if (!m.n)
		return;
	avail = pp->budget > fixed ? pp->budget - fixed : 0;
	switch (pp->policy) {
	case POOL_WSS:
		decide_wss(pp, v, &m, avail);
		break;
	case POOL_TAX:
		decide_tax(pp, v, &m, avail);
		break;
	case POOL_PRESSURE:
		decide_pressure(pp, v, &m, avail);
		break;
	default:
		decide_static(v, &m, avail);
	}
	for (unsigned k = 0; k < m.n; k++)
		v[m.idx[k]].target = m.out[k];
}
