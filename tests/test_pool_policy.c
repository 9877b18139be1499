/* test_pool_policy.c: the pool's policies and water-filling, without KVM (pool/policy.c) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pool.h"
#include "tests/check.h"

static struct pool_view vm(uint64_t hi, uint64_t limit)
{
	return (struct pool_view){.lo = POOL_MIN_PAGES, .hi = hi, .shares = 1, .limit = limit};
}

static uint64_t sum_targets(const struct pool_view *v, unsigned n)
{
	uint64_t s = 0;

	for (unsigned i = 0; i < n; i++)
		s += v[i].target;
	return s;
}

static void test_fill(void)
{
	double w[3] = {1, 1, 2};
	uint64_t lo[3] = {10, 10, 10}, hi[3] = {100, 1000, 1000}, out[3];

	/* proportional to weights while within bounds, sums exactly */
	CHECK(pool_fill(400, w, lo, hi, out, 3) == 0);
	CHECK(out[0] == 100 && out[1] == 100 && out[2] == 200);
	CHECK(pool_fill(1001, w, lo, hi, out, 3) == 0);
	CHECK(out[0] == 100 && out[0] + out[1] + out[2] == 1001);
	CHECK(out[2] + 2 >= 2 * out[1] && out[2] <= 2 * out[1] + 2);
	/* below the floors: everyone at lo; above the caps: everyone at hi, the rest returned */
	CHECK(pool_fill(20, w, lo, hi, out, 3) == 0 && out[0] == 10 && out[2] == 10);
	CHECK(pool_fill(5000, w, lo, hi, out, 3) == 5000 - 2100 && out[1] == 1000);
	/* rounding never loses pages: odd totals, three equal claimants */
	w[2] = 1;
	for (uint64_t t = 30; t < 400; t += 7) {
		pool_fill(t, w, lo, hi, out, 3);
		CHECK(out[0] + out[1] + out[2] == t);
	}
}

static void test_static(void)
{
	struct pool_params pp;
	struct pool_view v[3] = {vm(10000, 0), vm(10000, 0), vm(2000, 0)};

	pool_params_default(&pp, POOL_STATIC, 12000);
	pool_decide(&pp, v, 3);
	CHECK(v[0].target == 5000 && v[1].target == 5000 && v[2].target == 2000); /* capped */
	v[0].shares = 3;
	pool_decide(&pp, v, 3);
	CHECK(v[0].target == 7500 && v[1].target == 2500);
	/* a fixed VM keeps its limit and is charged what it holds */
	v[0].shares = 1;
	v[2].fixed = true;
	v[2].limit = 1500;
	v[2].charge = 4000;
	pool_decide(&pp, v, 3);
	CHECK(v[2].target == 1500 && v[0].target == 4000 && v[1].target == 4000);
}

static void test_wss(void)
{
	struct pool_params pp;
	struct pool_view v[3] = {vm(20000, 5000), vm(20000, 5000), vm(20000, 5000)};

	pool_params_default(&pp, POOL_WSS, 15000);
	v[0].active_known = v[1].active_known = v[2].active_known = true;
	v[0].active = 1000; /* wants 1000 * 1.25 + 512 = 1762 */
	v[1].active = 2000; /* 3012 */
	v[2].active = 4000; /* 5512 */
	pool_decide(&pp, v, 3);
	/* they fit: each its want, the rest (4714) in equal shares */
	CHECK(v[0].target >= 1762 + 1571 - 1 && v[0].target <= 1762 + 1572);
	CHECK(v[2].target >= 5512 + 1571 - 1 && v[2].target <= 5512 + 1572);
	CHECK(sum_targets(v, 3) == 15000);
	/* they do not: the same fraction of each want */
	pp.budget = 5143;
	pool_decide(&pp, v, 3);
	CHECK(sum_targets(v, 3) <= 5143);
	CHECK(fabs((double)v[2].target / 5512 - (double)v[1].target / 3012) < 0.01);
	CHECK(v[0].target >= POOL_MIN_PAGES);
	/* not measured yet: an equal share */
	v[1].active_known = false;
	pp.budget = 30000;
	pool_decide(&pp, v, 3);
	CHECK(v[1].target >= 10000);
}

/* rho = S / (P * (f + k (1 - f))) with f = min(1, A / P) */
static double rho(const struct pool_view *x, double tax)
{
	double p = (double)x->target, f = fmin(1, (double)x->active / p);

	return (double)x->shares / (p * (f + (1 - f) / (1 - tax)));
}

static void test_tax(void)
{
	struct pool_params pp;
	struct pool_view v[3] = {vm(100000, 0), vm(100000, 0), vm(100000, 0)};

	pool_params_default(&pp, POOL_TAX, 30000);
	for (unsigned i = 0; i < 3; i++)
		v[i].active_known = true;
	v[0].active = 0;      /* all idle */
	v[1].active = 100000; /* all active */
	v[2].active = 8000;   /* partly */
	pool_decide(&pp, v, 3);
	CHECK(sum_targets(v, 3) == 30000);
	/* the equilibrium ESX's min-rho reclaim converges to: equal rho */
	CHECK(fabs(rho(&v[0], 0.75) / rho(&v[1], 0.75) - 1) < 0.01);
	CHECK(fabs(rho(&v[2], 0.75) / rho(&v[1], 0.75) - 1) < 0.01);
	/* the idle VM keeps 1 / k = 1 - tau of what the active one has */
	CHECK(fabs((double)v[0].target / (double)v[1].target - 0.25) < 0.01);
	/* tax 0: plain shares */
	pp.tax = 0;
	pool_decide(&pp, v, 3);
	CHECK(v[0].target == 10000 && v[1].target == 10000 && v[2].target == 10000);
}

static void test_pressure(void)
{
	struct pool_params pp;
	struct pool_view v[3] = {vm(100000, 10000), vm(100000, 10000), vm(100000, 10000)};

	pool_params_default(&pp, POOL_PRESSURE, 30000);
	for (unsigned i = 0; i < 3; i++) /* footprints far above the limits: growth uncapped */
		v[i].resident = 10000, v[i].swapped = 50000;
	v[0].refault = 0.5;   /* thrashing: backs off, at most doubling */
	v[1].refault = 0;     /* idle memory */
	v[2].refault = 0.005; /* below the target */
	pool_decide(&pp, v, 3);
	/* it does not fit: the least stalled gives half of its room above lo first */
	CHECK(sum_targets(v, 3) <= 30000);
	CHECK(v[0].target > 10000);
	CHECK(v[1].target == 10000 - (10000 - POOL_MIN_PAGES) / 2);
	CHECK(v[1].target < v[2].target || v[2].target < 10000);
	/* with room to spare, growth is senpai's: stall / target / 20, squared (and capped) */
	pp.budget = 100000;
	for (unsigned i = 0; i < 3; i++)
		v[i].limit = 10000, v[i].quiet = 0;
	v[0].refault = 0.1; /* 10x the target: factor (10 / 20)^2 = 0.25 */
	pool_decide(&pp, v, 3);
	CHECK(v[0].target == 12500);
	CHECK(v[1].target == 10000 && v[1].quiet == 1); /* no probe before probe_ticks */
	/* a quiet VM without stall is probed down by max_probe (1%) */
	v[1].quiet = pp.probe_ticks;
	v[1].refault = 0;
	pool_decide(&pp, v, 3);
	CHECK(v[1].target == 9900);
	/* growth stops at the footprint and an eighth more (at least 1024 pages) */
	v[0].limit = 10000, v[0].refault = 0.5, v[0].resident = 9000, v[0].swapped = 1000;
	pool_decide(&pp, v, 3);
	CHECK(v[0].target == 10000 + 10000 / 8);
	v[0].resident = 3000, v[0].swapped = 0; /* a footprint below the limit: it keeps it */
	pool_decide(&pp, v, 3);
	CHECK(v[0].target == 10000);
	v[0].resident = 4000, v[0].swapped = 0; /* at least 1024 pages above the footprint */
	v[0].limit = 3500;
	pool_decide(&pp, v, 3);
	CHECK(v[0].target == 4000 + 1024);
}

/* Invariants for every policy on random VMs: bounds, and the budget respected. */
static void test_random(void)
{
	srand(7);
	for (int round = 0; round < 3000; round++) {
		struct pool_params pp;
		struct pool_view v[8];
		unsigned n = 1 + (unsigned)rand() % 8;
		uint64_t fixed = 0, budget = 1024 + (uint64_t)rand() % 200000, sum = 0, lo = 0;

		pool_params_default(&pp, (enum pool_policy)(round % POOL_NPOLICIES), budget);
		for (unsigned i = 0; i < n; i++) {
			v[i] = vm(POOL_MIN_PAGES + (uint64_t)rand() % 100000, 0);
			v[i].limit = v[i].lo + (uint64_t)rand() % (v[i].hi - v[i].lo + 1);
			v[i].resident = (uint64_t)rand() % (v[i].limit + 1);
			v[i].shares = 1 + (uint64_t)rand() % 4;
			v[i].active_known = rand() % 2;
			v[i].active = (uint64_t)rand() % (v[i].hi + 1);
			v[i].refault = (double)(rand() % 100) / 100;
			v[i].quiet = (unsigned)rand() % 6;
			v[i].fixed = rand() % 5 == 0;
			v[i].charge = v[i].limit;
		}
		pool_decide(&pp, v, n);
		for (unsigned i = 0; i < n; i++) {
			if (v[i].fixed) {
				CHECK(v[i].target == v[i].limit);
				fixed += v[i].charge;
				continue;
			}
			CHECK(v[i].target >= v[i].lo && v[i].target <= v[i].hi);
			sum += v[i].target;
			lo += v[i].lo;
		}
		/* within what the fixed ones leave, unless even the floors do not fit */
		CHECK(sum <= (budget > fixed ? budget - fixed : 0) || sum == lo);
	}
}

int main(void)
{
	enum pool_policy p;

	test_fill();
	test_static();
	test_wss();
	test_tax();
	test_pressure();
	test_random();
	CHECK(pool_policy_parse("tax", &p) == 0 && p == POOL_TAX);
	CHECK(pool_policy_parse("taxes", &p) < 0);
	CHECK(!strcmp(pool_policy_name(POOL_PRESSURE), "pressure"));
	CHECK_DONE();
}
