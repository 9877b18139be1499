/* test_swap_store.c: swap file I/O: round trips, O_DIRECT, per-io errors, injected failures */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/swap_test.h"

static struct swap_store *open_qd(unsigned qdepth, uint64_t max_pages)
{
	struct swap_opts o = {.qdepth = qdepth};
	struct swap_store *s;

	CHECK_EQ(swap_open(&s, &o, max_pages), 0);
	return s;
}

/* Write npages pages tagged tag0.. as one io at slot; return the buffer. */
static void *write_tagged(struct swap_store *s, uint64_t slot, uint32_t npages, uint64_t tag0)
{
	char *buf = page_alloc(npages);
	struct swap_io io = {.slot = slot, .npages = npages, .buf = buf};
	uint32_t i;

	for (i = 0; i < npages; i++)
		fill_page(buf + (size_t)i * PAGE, tag0 + i);
	CHECK_EQ(swap_write(s, &io, 1), 0);
	CHECK_EQ(io.res, 0);
	return buf;
}

static void check_slot(struct swap_store *s, uint64_t slot, uint64_t tag)
{
	char *buf = page_alloc(1), *want = page_alloc(1);
	struct swap_io io = {.slot = slot, .npages = 1, .buf = buf};

	CHECK_EQ(swap_read(s, &io, 1), 0);
	fill_page(want, tag);
	CHECK(page_sum(buf) == page_sum(want));
	free(want);
	free(buf);
}

static void check_zero(struct swap_store *s, uint64_t slot)
{
	char *buf = page_alloc(1), *zero = calloc(1, PAGE);
	struct swap_io io = {.slot = slot, .npages = 1, .buf = buf};

	memset(buf, 0xff, PAGE);
	CHECK_EQ(swap_read(s, &io, 1), 0);
	CHECK(memcmp(buf, zero, PAGE) == 0);
	free(zero);
	free(buf);
}

static void test_open(void)
{
	char dir[] = "/tmp/ufvm-test-swap-XXXXXX", path[64];
	struct swap_opts o = {0};
	struct swap_store *s;
	struct stat st;

	CHECK(mkdtemp(dir));
	o.qdepth = 5000;
	CHECK_EQ(swap_open(&s, &o, 16), -EINVAL);
	o.qdepth = 0;
	o.path = "/nonexistent-dir/swap";
	CHECK_EQ(swap_open(&s, &o, 16), -ENOENT);

	/* A named file: sized for max_pages, but sparse; unwritten slots read as zeros. */
	snprintf(path, sizeof(path), "%s/swap", dir);
	o.path = path;
	CHECK_EQ(swap_open(&s, &o, 1 << 16), 0);
	free(write_tagged(s, 100, 3, 7));
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_size, (1LL << 16) * PAGE);
	CHECK(st.st_blocks * 512 < 1 << 20);
	check_slot(s, 102, 9);
	check_zero(s, 99);
	check_zero(s, (1 << 16) - 1);
	swap_close(s);
	CHECK(stat(path, &st) < 0 && errno == ENOENT); /* created by us: removed at close */

	/* An existing file is never truncated: one with data is refused, an empty one used. */
	{
		int fd = open(path, O_CREAT | O_WRONLY, 0600);

		CHECK_EQ(write(fd, "data", 4), 4);
		CHECK_EQ(swap_open(&s, &o, 16), -EEXIST);
		CHECK_EQ(stat(path, &st), 0);
		CHECK_EQ(st.st_size, 4);
		CHECK_EQ(ftruncate(fd, 0), 0);
		close(fd);
		CHECK_EQ(swap_open(&s, &o, 16), 0);
		swap_close(s);
		CHECK_EQ(unlink(path), 0); /* not ours: left in place */
	}
	o.path = "/dev/null";
	CHECK_EQ(swap_open(&s, &o, 16), -EINVAL); /* neither a file nor a block device */
	o.path = path;

	/* No path: an unlinked file under $TMPDIR that leaves nothing behind. */
	setenv("TMPDIR", dir, 1);
	CHECK_EQ(swap_open(&s, NULL, 64), 0);
	free(write_tagged(s, 0, 1, 1));
	CHECK_EQ(rmdir(dir), 0); /* fails if the file is still linked there */
	check_slot(s, 0, 1);
	unsetenv("TMPDIR");
	swap_close(s);
}

/* Many single pages, far more than the queue depth, written and read in one call each. */
static void test_single_pages(void)
{
	enum { N = 300 };
	struct swap_store *s = open_qd(4, 4096);
	struct swap_io ios[N];
	char *buf = page_alloc(N), *back = page_alloc(N);
	uint64_t slot[N], sum[N];
	struct swap_stats st;
	int i;

	for (i = 0; i < N; i++) {
		slot[i] = (uint64_t)swap_slot_alloc(s);
		fill_page(buf + (size_t)i * PAGE, 1000 + (uint64_t)i);
		sum[i] = page_sum(buf + (size_t)i * PAGE);
		ios[i] =
		    (struct swap_io){.slot = slot[i], .npages = 1, .buf = buf + (size_t)i * PAGE};
	}
	CHECK_EQ(swap_write(s, ios, N), 0);
	swap_get_stats(s, &st);
	CHECK_EQ(st.pages_written, N);
	CHECK(st.submits >= N / 4); /* never more than 4 in flight */
	/* Read back in reverse order into another buffer. */
	for (i = 0; i < N; i++)
		ios[i] = (struct swap_io){.slot = slot[N - 1 - i],
					  .npages = 1,
					  .buf = back + (size_t)(N - 1 - i) * PAGE,
					  .res = 1};
	CHECK_EQ(swap_read(s, ios, N), 0);
	for (i = 0; i < N; i++) {
		CHECK_EQ(ios[i].res, 0);
		CHECK(page_sum(back + (size_t)i * PAGE) == sum[i]);
	}
	swap_get_stats(s, &st);
	CHECK_EQ(st.pages_read, N);
	CHECK_EQ(st.write_errors + st.read_errors, 0);
	swap_close(s);
	free(buf);
	free(back);
}

/* Runs of 1..64 pages, one io each; read back page by page, then as runs. */
static void test_runs(void)
{
	enum { NRUN = 64 };
	struct swap_store *s = open_qd(8, 8192);
	struct swap_io ios[NRUN], *pages = calloc(NRUN * (NRUN + 1) / 2, sizeof(*pages));
	char *buf[NRUN], *back = page_alloc(NRUN * (NRUN + 1) / 2);
	struct swap_stats st;
	unsigned r, i, k = 0;

	for (r = 0; r < NRUN; r++) {
		int64_t first = swap_slot_alloc_run(s, r + 1);

		CHECK(first >= 0);
		buf[r] = page_alloc(r + 1);
		for (i = 0; i <= r; i++)
			fill_page(buf[r] + i * PAGE, (uint64_t)first + i);
		ios[r] = (struct swap_io){.slot = (uint64_t)first, .npages = r + 1, .buf = buf[r]};
	}
	CHECK_EQ(swap_write(s, ios, NRUN), 0);
	swap_get_stats(s, &st);
	CHECK_EQ(st.pages_written, NRUN * (NRUN + 1) / 2);
	CHECK(st.submits < 2 * NRUN);
	for (r = 0; r < NRUN; r++)
		for (i = 0; i <= r; i++, k++)
			pages[k] = (struct swap_io){
			    .slot = ios[r].slot + i, .npages = 1, .buf = back + (size_t)k * PAGE};
	CHECK_EQ(swap_read(s, pages, k), 0);
	for (r = 0, k = 0; r < NRUN; r++)
		for (i = 0; i <= r; i++, k++)
			CHECK(page_sum(back + (size_t)k * PAGE) == page_sum(buf[r] + i * PAGE));
	for (r = 0; r < NRUN; r++) {
		memset(buf[r], 0, (size_t)(r + 1) * PAGE);
		ios[r].res = 1;
	}
	CHECK_EQ(swap_read(s, ios, NRUN), 0);
	for (r = 0; r < NRUN; r++) {
		for (i = 0; i <= r; i++)
			check_slot(s, ios[r].slot + i, ios[r].slot + i);
		free(buf[r]);
	}
	swap_close(s);
	free(pages);
	free(back);
}

static void test_direct(void)
{
	struct swap_opts o = {.direct = true, .qdepth = 4};
	struct swap_store *s;
	struct swap_io ios[3];
	char *buf = page_alloc(17), *back = page_alloc(16);
	int err = swap_open(&s, &o, 256);

	if (err == -EINVAL) {
		printf("direct: skipped, O_DIRECT unsupported under $TMPDIR (%s)\n",
		       strerror(-err));
		goto out;
	}
	CHECK_EQ(err, 0);
	for (int i = 0; i < 16; i++)
		fill_page(buf + i * PAGE, 500 + (uint64_t)i);
	ios[0] = (struct swap_io){.slot = 10, .npages = 8, .buf = buf};
	ios[1] = (struct swap_io){.slot = 30, .npages = 1, .buf = buf + 1}; /* misaligned */
	ios[2] = (struct swap_io){.slot = 18, .npages = 8, .buf = buf + 8 * PAGE};
	CHECK_EQ(swap_write(s, ios, 3), -EINVAL);
	CHECK_EQ(ios[0].res, 0);
	CHECK_EQ(ios[1].res, -EINVAL);
	CHECK_EQ(ios[2].res, 0);
	ios[0] = (struct swap_io){.slot = 10, .npages = 16, .buf = back};
	CHECK_EQ(swap_read(s, ios, 1), 0);
	CHECK(memcmp(buf, back, 16 * PAGE) == 0);
	swap_close(s);
out:
	free(buf);
	free(back);
}

/* Bad ios, caught by the store or by the kernel, fail alone. */
static void test_errors_isolated(void)
{
	enum { N = 8 };
	struct swap_store *s = open_qd(4, 64);
	char *buf = page_alloc(N), *noaccess;
	struct swap_io ios[N];
	struct swap_stats st;
	int i;

	noaccess = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(noaccess != MAP_FAILED);
	for (i = 0; i < N; i++) {
		fill_page(buf + i * PAGE, 77 + (uint64_t)i);
		ios[i] = (struct swap_io){.slot = (uint64_t)i, .npages = 1, .buf = buf + i * PAGE};
	}
	ios[2].slot = 64;      /* beyond max_pages */
	ios[4].npages = 0;     /* empty */
	ios[6].buf = noaccess; /* the kernel's copy faults */
	CHECK_EQ(swap_write(s, ios, N), -EINVAL);
	CHECK_EQ(ios[2].res, -EINVAL);
	CHECK_EQ(ios[4].res, -EINVAL);
	CHECK_EQ(ios[6].res, -EFAULT);
	for (i = 0; i < N; i++)
		if (i != 2 && i != 4 && i != 6) {
			CHECK_EQ(ios[i].res, 0);
			check_slot(s, (uint64_t)i, 77 + (uint64_t)i);
		}
	swap_get_stats(s, &st);
	CHECK_EQ(st.write_errors, 3);
	CHECK_EQ(st.pages_written, N - 3);
	ios[0] = (struct swap_io){.slot = 0, .npages = 1, .buf = noaccess};
	CHECK_EQ(swap_read(s, ios, 1), -EFAULT);
	munmap(noaccess, PAGE);
	swap_close(s);
	free(buf);
}

static void test_inject_write(void)
{
	enum { N = 10 };
	struct swap_store *s = open_qd(3, 64);
	char *buf = page_alloc(4 * N), *zero = calloc(1, PAGE), *back = page_alloc(1);
	struct swap_io ios[N];
	struct swap_stats st;
	int i;

	for (i = 0; i < 4 * N; i++)
		fill_page(buf + i * PAGE, (uint64_t)i);
	for (i = 0; i < N; i++)
		ios[i] = (struct swap_io){
		    .slot = 4 * (uint64_t)i, .npages = 4, .buf = buf + 4 * i * PAGE};
	/* Reads stay healthy while writes fail after 18 pages: ios 0-3 pass, io 4 writes 2 pages.
	 */
	swap_inject_error(s, true, EIO, 18);
	CHECK_EQ(swap_write(s, ios, N), -EIO);
	for (i = 0; i < N; i++)
		CHECK_EQ(ios[i].res, i < 4 ? 0 : -EIO);
	for (i = 0; i < 18; i++)
		check_slot(s, (uint64_t)i, (uint64_t)i);
	ios[0] = (struct swap_io){.slot = 18, .npages = 1, .buf = back};
	CHECK_EQ(swap_read(s, ios, 1), 0);
	CHECK(memcmp(back, zero, PAGE) == 0);
	swap_get_stats(s, &st);
	CHECK_EQ(st.write_errors, 6);
	CHECK_EQ(st.pages_written, 16);
	swap_inject_error(s, true, 0, 0);
	ios[0] = (struct swap_io){.slot = 18, .npages = 22, .buf = buf + 18 * PAGE};
	CHECK_EQ(swap_write(s, ios, 1), 0);
	for (i = 0; i < 4 * N; i++)
		check_slot(s, (uint64_t)i, (uint64_t)i);
	swap_close(s);
	free(buf);
	free(zero);
	free(back);
}

static void test_inject_read(void)
{
	enum { N = 12 };
	struct swap_store *s = open_qd(4, 64);
	char *buf = write_tagged(s, 0, N, 300), *back = page_alloc(N);
	struct swap_io ios[N];
	struct swap_stats st;
	int i;

	for (i = 0; i < N; i++)
		ios[i] = (struct swap_io){.slot = (uint64_t)i, .npages = 1, .buf = back + i * PAGE};
	swap_inject_error(s, false, EIO, 5);
	CHECK_EQ(swap_read(s, ios, N), -EIO);
	for (i = 0; i < N; i++)
		CHECK_EQ(ios[i].res, i < 5 ? 0 : -EIO);
	CHECK(memcmp(buf, back, 5 * PAGE) == 0);
	free(write_tagged(s, 20, 2, 20)); /* writes are unaffected */
	swap_inject_error(s, false, 0, 0);
	CHECK_EQ(swap_read(s, ios, N), 0);
	CHECK(memcmp(buf, back, N * PAGE) == 0);
	swap_get_stats(s, &st);
	CHECK_EQ(st.read_errors, N - 5);
	CHECK_EQ(st.pages_read, 5 + N);

	/* -EAGAIN is resubmitted, up to a cap, without disturbing the io next to it. */
	swap_inject_error(s, false, EAGAIN, 1);
	CHECK_EQ(swap_read(s, ios, 2), -EAGAIN);
	CHECK_EQ(ios[0].res, 0);
	CHECK_EQ(ios[1].res, -EAGAIN);
	swap_get_stats(s, &st);
	CHECK(st.requeues >= 100);
	swap_inject_error(s, false, 0, 0);
	CHECK_EQ(swap_read(s, ios, 2), 0);
	swap_close(s);
	free(buf);
	free(back);
}

int main(void)
{
	test_open();
	test_single_pages();
	test_runs();
	test_direct();
	test_errors_isolated();
	test_inject_write();
	test_inject_read();
	printf("swap_store: all tests passed\n");
	return 0;
}
