/* test_swap_full_disk.c: the swap file on a 1 MiB tmpfs: -ENOSPC per io, earlier pages intact */
#include <errno.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include "tests/swap_test.h"

enum { CAP = 256, MAX = 1024, PRE = 60, RUN = 16, NRUN = 16 }; /* CAP: 1 MiB in pages */

static char dir[] = "/tmp/ufvm-test-swapfull-XXXXXX";

/* A private mount namespace, when we may have one, so a crash cannot leak the mount. */
static void mount_tmpfs(void)
{
	if (unshare(CLONE_NEWNS) == 0)
		mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	CHECK(mkdtemp(dir));
	if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") < 0) {
		printf("full_disk: skipped: mount -t tmpfs -o size=1m %s: %s\n", dir,
		       strerror(errno));
		rmdir(dir);
		exit(77);
	}
}

static int write_page(struct swap_store *s, uint64_t slot, uint64_t tag)
{
	char *buf = page_alloc(1);
	struct swap_io io = {.slot = slot, .npages = 1, .buf = buf};

	fill_page(buf, tag);
	swap_write(s, &io, 1);
	free(buf);
	return io.res;
}

static void check_page(struct swap_store *s, uint64_t slot, uint64_t tag)
{
	char *buf = page_alloc(1), *want = page_alloc(1);
	struct swap_io io = {.slot = slot, .npages = 1, .buf = buf};

	CHECK_EQ(swap_read(s, &io, 1), 0);
	fill_page(want, tag);
	CHECK(memcmp(buf, want, PAGE) == 0);
	free(want);
	free(buf);
}

int main(void)
{
	char path[64], *buf = page_alloc(RUN * NRUN);
	struct swap_opts o = {.path = path, .qdepth = 4};
	struct swap_io ios[NRUN];
	struct swap_stats st;
	struct swap_store *s;
	unsigned i, ok = 0, failed = 0;

	mount_tmpfs();
	snprintf(path, sizeof(path), "%s/swap", dir);
	CHECK_EQ(swap_open(&s, &o, MAX), 0); /* 4 MiB of slots on a 1 MiB disk: sparse */
	for (i = 0; i < PRE; i++) {
		CHECK_EQ(swap_slot_alloc(s), i);
		CHECK_EQ(write_page(s, i, i), 0);
	}

	/* 1 MiB more in runs of 16 pages: the disk fills part way through a run. */
	for (i = 0; i < NRUN * RUN; i++)
		fill_page(buf + i * PAGE, PRE + i);
	for (i = 0; i < NRUN; i++) {
		CHECK_EQ(swap_slot_alloc_run(s, RUN), PRE + i * RUN);
		ios[i] = (struct swap_io){
		    .slot = PRE + i * RUN, .npages = RUN, .buf = buf + i * RUN * PAGE};
	}
	CHECK_EQ(swap_write(s, ios, NRUN), -ENOSPC);
	for (i = 0; i < NRUN; i++) {
		CHECK(ios[i].res == 0 || ios[i].res == -ENOSPC);
		if (ios[i].res == 0)
			ok++;
		else
			failed++;
	}
	CHECK(ok > 0 && failed > 0 && PRE + ok * RUN <= CAP);
	swap_get_stats(s, &st);
	CHECK_EQ(st.write_errors, failed);
	CHECK_EQ(st.pages_written, PRE + ok * RUN);
	CHECK(st.requeues > 0); /* the run that hit the limit was written short first */
	printf("full_disk: %u of %u runs written, %u got -ENOSPC\n", ok, NRUN, failed);

	/* Everything written before the disk filled reads back intact. */
	for (i = 0; i < PRE; i++)
		check_page(s, i, i);
	for (i = 0; i < NRUN; i++)
		if (ios[i].res == 0)
			for (unsigned p = 0; p < RUN; p++)
				check_page(s, ios[i].slot + p, ios[i].slot + p);

	/* A fresh slot has no space; a freed slot that was written once still does. */
	CHECK_EQ(write_page(s, MAX - 1, 1), -ENOSPC);
	swap_slot_free(s, 10);
	CHECK_EQ(swap_slot_alloc(s), 10);
	CHECK_EQ(write_page(s, 10, 4242), 0);
	check_page(s, 10, 4242);
	check_page(s, 11, 11);

	swap_close(s);
	CHECK_EQ(umount(dir), 0);
	CHECK_EQ(rmdir(dir), 0);
	free(buf);
	printf("full_disk: all tests passed\n");
	return 0;
}
