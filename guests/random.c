/* random.c: random 8-byte read-modify-writes over N MiB, uniform or zipf, verified */
#include "rt.h"

static const char usage[] =
    "usage: random [mib=N (64)] [dist=uniform|zipf (uniform)] [theta=T (0.99, 0<T<1)]"
    " [accesses=A (4M)] [seed=S (1)]\n";

#define WORDS_PER_PAGE (UFVM_PAGE_SIZE / 8)

/*
 * Each word holds a 32-bit tag of its (page, word) position in the high half
 * and its access count in the low half; a shadow array counts accesses per
 * page. A lost or misplaced page shows up as a bad tag on the next access,
 * and a lost write as a page whose counts do not add up to its shadow count.
 */
static inline uint64_t tag(uint64_t page, uint64_t word, uint64_t seed)
{
	return rt_mix64((page << 9 | word) ^ seed) & 0xffffffff00000000ULL;
}

/* Gray et al., "Quickly generating billion-record synthetic databases" (1994) */
struct zipf {
	uint64_t n;
	double theta, alpha, zetan, eta, half_pow_theta;
};

static void zipf_init(struct zipf *z, uint64_t n, double theta)
{
	double zeta2 = 1 + rt_pow(0.5, theta);

	z->n = n;
	z->theta = theta;
	z->zetan = 0;
	for (uint64_t i = 1; i <= n; i++)
		z->zetan += 1 / rt_pow((double)i, theta);
	z->alpha = 1 / (1 - theta);
	z->eta = (1 - rt_pow(2.0 / (double)n, 1 - theta)) / (1 - zeta2 / z->zetan);
	z->half_pow_theta = rt_pow(0.5, theta);
}

static uint64_t zipf_next(const struct zipf *z, struct rt_rand *r)
{
	double u = rt_rand_double(r), uz = u * z->zetan;
	uint64_t k;

	if (uz < 1)
		return 0;
	if (uz < 1 + z->half_pow_theta)
		return 1 < z->n - 1 ? 1 : z->n - 1;
	k = (uint64_t)((double)z->n * rt_pow(z->eta * u - z->eta + 1, z->alpha));
	return k < z->n ? k : z->n - 1;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

int main(int argc, char **argv)
{
	uint64_t mib = 64, accesses = 4 << 20, seed = 1, theta_u = 990000;
	const char *dist = "uniform";
	struct rt_opt opts[] = {{"mib", RT_OPT_U64, &mib},
				{"dist", RT_OPT_STR, &dist},
				{"theta", RT_OPT_MICRO, &theta_u},
				{"accesses", RT_OPT_U64, &accesses},
				{"seed", RT_OPT_U64, &seed}};
	uint64_t npages, *mem, *shadow, stride = 1, bad = 0, lost = 0, touched = 0, hottest = 0, t0,
					t1, t2, t3;
	int zipfian;
	struct zipf z = {0};
	struct rt_rand rng;
	char a[32], b[32];

	if (rt_parse_opts(argc, argv, opts, RT_ARRAY_SIZE(opts)) < 0 || mib == 0 ||
	    mib > (1ULL << 30) || (strcmp(dist, "uniform") && strcmp(dist, "zipf")) ||
	    theta_u == 0 || theta_u >= 1000000 || accesses == 0) {
		printf("%s", usage);
		return 2;
	}
	zipfian = strcmp(dist, "zipf") == 0;
	npages = mib * RT_MIB / UFVM_PAGE_SIZE;
	mem = rt_alloc(mib * RT_MIB, 2 * RT_MIB);
	shadow = rt_alloc(npages * 8, UFVM_PAGE_SIZE);
	if (!mem || !shadow) {
		printf("random: mib=%lu does not fit in the free guest RAM\n%s", mib, usage);
		return 2;
	}
	printf("random: %lu MiB (%lu pages) at %p, %s", mib, npages, (void *)mem, dist);
	if (zipfian)
		printf(" theta=%lu.%06lu", theta_u / 1000000, theta_u % 1000000);
	printf(", %lu accesses, seed %lu\n", accesses, seed);

	t0 = rt_clock_ns();
	for (uint64_t p = 0; p < npages; p++) {
		shadow[p] = 0;
		for (uint64_t w = 0; w < WORDS_PER_PAGE; w++)
			mem[p * WORDS_PER_PAGE + w] = tag(p, w, seed);
	}
	if (zipfian) {
		zipf_init(&z, npages, (double)theta_u / 1e6);
		/* spread the popular ranks over the region: rank * stride mod n is a bijection */
		stride = 0x9e3779b1ULL % npages;
		while (npages > 1 && gcd(stride, npages) != 1)
			stride++;
	}
	t1 = rt_clock_ns();
	rt_mark("init-done");
	printf("random: init %s ms\n", rt_fmt_ms(a, sizeof(a), t1 - t0));

	rt_rand_seed(&rng, seed);
	for (uint64_t i = 0; i < accesses; i++) {
		uint64_t p =
		    zipfian ? zipf_next(&z, &rng) * stride % npages : rt_rand_below(&rng, npages);
		uint64_t w = rt_rand_below(&rng, WORDS_PER_PAGE);
		volatile uint64_t *word = &mem[p * WORDS_PER_PAGE + w];
		uint64_t v = *word;

		if ((v & 0xffffffff00000000ULL) != tag(p, w, seed) && bad++ < 8)
			printf("random: access %lu: bad tag at %p: 0x%016lx\n", i, (void *)word, v);
		*word = v + 1;
		shadow[p]++;
	}
	t2 = rt_clock_ns();
	rt_mark("access-done");

	for (uint64_t p = 0; p < npages; p++) {
		uint64_t count = 0;

		for (uint64_t w = 0; w < WORDS_PER_PAGE; w++) {
			uint64_t v = mem[p * WORDS_PER_PAGE + w];

			if ((v & 0xffffffff00000000ULL) != tag(p, w, seed) && bad++ < 8)
				printf("random: verify: bad tag at %p: 0x%016lx\n",
				       (void *)&mem[p * WORDS_PER_PAGE + w], v);
			count += v & 0xffffffff;
		}
		if (count != shadow[p] && lost++ < 8)
			printf("random: page %p: counts add up to %lu, expected %lu\n",
			       (void *)&mem[p * WORDS_PER_PAGE], count, shadow[p]);
		touched += shadow[p] != 0;
		hottest = shadow[p] > hottest ? shadow[p] : hottest;
	}
	t3 = rt_clock_ns();
	rt_mark("verify-done");

	printf("random: %lu accesses in %s ms: %s accesses/s, %lu of %lu pages touched\n", accesses,
	       rt_fmt_ms(a, sizeof(a), t2 - t1), rt_fmt_rate(b, sizeof(b), accesses, 1, t2 - t1),
	       touched, npages);
	printf("random: hottest page got %lu accesses (%lu.%02lu%%)\n", hottest,
	       rt_muldiv(hottest, 100, accesses), rt_muldiv(hottest, 10000, accesses) % 100);
	printf("random: verify %s ms\n", rt_fmt_ms(a, sizeof(a), t3 - t2));
	printf("random: %s (%lu bad tags, %lu pages with wrong counts)\n",
	       bad || lost ? "FAILED" : "ok", bad, lost);
	return bad || lost ? 1 : 0;
}
