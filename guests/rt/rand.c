/* rand.c: xoshiro256** and the bit of libm the zipf sampler needs (log, exp, pow) */
#include "rt.h"

void rt_rand_seed(struct rt_rand *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++) {
		seed += 0x9e3779b97f4a7c15ULL;
		r->s[i] = rt_mix64(seed);
	}
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t rt_rand_next(struct rt_rand *r)
{
	uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t rt_rand_below(struct rt_rand *r, uint64_t n)
{
	/* Lemire's multiply-shift; the bias (< n / 2^64) does not matter here */
	return (uint64_t)(((unsigned __int128)rt_rand_next(r) * n) >> 64);
}

double rt_rand_double(struct rt_rand *r)
{
	return (double)(rt_rand_next(r) >> 11) * 0x1.0p-53;
}

static const double ln2 = 0.69314718055994530942;

/* log(x) = e ln 2 + 2 atanh((m - 1) / (m + 1)) with m in [sqrt(1/2), sqrt(2)) */
double rt_log(double x)
{
	union {
		double d;
		uint64_t u;
	} v = {.d = x};
	int e;
	double m, s, s2, sum = 0, term;

	if (!(x > 0))
		return -__builtin_inf();
	e = (int)((v.u >> 52) & 0x7ff) - 1023;
	v.u = (v.u & ~(0x7ffULL << 52)) | (1023ULL << 52); /* m in [1, 2) */
	m = v.d;
	if (m > 1.41421356237309504880) {
		m /= 2;
		e++;
	}
	s = (m - 1) / (m + 1);
	s2 = s * s;
	term = s;
	for (int k = 1; k < 30; k += 2) { /* |s| < 0.172: s^29 is below double precision */
		sum += term * (1.0 / k);  /* a constant once the loop is unrolled */
		term *= s2;
	}
	return e * ln2 + 2 * sum;
}

/* exp(x) = 2^k exp(r) with |r| <= ln2 / 2, exp(r) by its Taylor series */
double rt_exp(double x)
{
	union {
		double d;
		uint64_t u;
	} v;
	double r, sum = 1, term = 1;
	int k;

	if (x > 709)
		return __builtin_inf();
	if (x < -708)
		return 0;
	k = (int)(x / ln2 + (x < 0 ? -0.5 : 0.5));
	r = x - k * ln2;
	for (int i = 1; i < 18; i++) { /* |r| <= 0.35: r^18 / 18! is negligible */
		term *= r * (1.0 / i);
		sum += term;
	}
	v.u = (uint64_t)(k + 1023) << 52;
	return sum * v.d;
}

double rt_pow(double x, double y)
{
	if (y == 0)
		return 1;
	if (x <= 0)
		return 0;
	return rt_exp(y * rt_log(x));
}
