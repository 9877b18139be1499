/* badbuf.c: hypercalls with a valid argument struct but bad buffers must fail with an error */
#include "rt.h"

static int failures;

static const char *err_name(int64_t ret)
{
	switch (ret) {
	case -UFVM_EFAULT:
		return "EFAULT";
	case -UFVM_EINVAL:
		return "EINVAL";
	case -UFVM_ENOSYS:
		return "ENOSYS";
	}
	return ret < 0 ? "unknown error" : "no error";
}

static void expect(const char *what, int64_t ret, int64_t want)
{
	int ok = ret == want;

	printf("badbuf: %-46s -> ret %ld (%s): %s\n", what, ret, err_name(ret),
	       ok ? "ok" : "WRONG");
	if (!ok) {
		printf("badbuf:   expected %ld (%s)\n", want, err_name(want));
		failures++;
	}
}

static int64_t write_raw(uint64_t buf, uint64_t len)
{
	struct ufvm_hc_write hc = {.buf = buf, .len = len, .ret = 12345};

	rt_hypercall(UFVM_HC_WRITE, &hc);
	return hc.ret;
}

static int64_t mark_raw(uint64_t label, uint64_t len)
{
	struct ufvm_hc_mark hc = {.label = label, .len = len, .ret = 12345};

	rt_hypercall(UFVM_HC_MARK, &hc);
	return hc.ret;
}

int main(int argc, char **argv)
{
	uint64_t end = rt_boot->mem_size;
	static const char msg[] = "badbuf: a good write still works\n";

	(void)argc;
	(void)argv;

	expect("write, buf just past the end of RAM", write_raw(end, 16), -UFVM_EFAULT);
	expect("write, buf straddling the end of RAM", write_raw(end - 8, 16), -UFVM_EFAULT);
	expect("write, buf at 0xfffff000", write_raw(0xfffff000, 16), -UFVM_EFAULT);
	expect("write, buf + len wraps around 2^64", write_raw(~0ULL - 7, 16), -UFVM_EFAULT);
	expect("write, len 2^64 - 1", write_raw(UFVM_IMAGE_BASE, ~0ULL), -UFVM_EINVAL);
	expect("write, len UFVM_WRITE_MAX + 1", write_raw(UFVM_IMAGE_BASE, UFVM_WRITE_MAX + 1),
	       -UFVM_EINVAL);
	expect("mark, label past the end of RAM", mark_raw(end, 4), -UFVM_EFAULT);
	expect("mark, label wraps around 2^64", mark_raw(~0ULL - 1, 4), -UFVM_EFAULT);
	expect("mark, len 0", mark_raw((uint64_t) "x", 0), -UFVM_EINVAL);
	expect("mark, len UFVM_MARK_MAX + 1", mark_raw((uint64_t)msg, UFVM_MARK_MAX + 1),
	       -UFVM_EINVAL);
	expect("write, a good buffer", write_raw((uint64_t)msg, sizeof(msg) - 1),
	       (int64_t)sizeof(msg) - 1);
	printf("badbuf: %s (%d wrong results)\n", failures ? "FAILED" : "ok", failures);
	return failures ? 1 : 0;
}
