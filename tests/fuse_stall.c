/* fuse_stall.c: a FUSE file system over a directory whose I/O can be slowed or stalled (tests) */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * usage: fuse_stall BACKING_DIR MOUNTPOINT [READ_DELAY_US [WRITE_DELAY_US]]
 *
 * Mounts MOUNTPOINT (in the foreground, multi-threaded) as a view of the flat
 * directory BACKING_DIR. Every read (write) first waits READ_DELAY_US
 * (WRITE_DELAY_US) microseconds, one request at a time: a slow device.
 * SIGUSR1 stalls every read from then on, SIGUSR2 lets them go (and ends the
 * delays): a swap device that stops answering, for the stop tests
 * (tests/e2e_stop.py). Stalled reads wait in the server, so the kernel's page
 * cache waits for them as it waits for a disk. Prints "ready" once mounted, "stalled" when a read
 * first waits for SIGUSR2. SIGTERM unmounts and exits.
 */

static const char *backing;
static unsigned delay_us[2]; /* [0] reads, [1] writes */
static atomic_bool stalled;
static pthread_mutex_t slow_lock = PTHREAD_MUTEX_INITIALIZER;

static atomic_bool fast; /* SIGUSR2: no more delays either */

static void on_stall(int sig)
{
	atomic_store(&stalled, sig == SIGUSR1);
	if (sig == SIGUSR2)
		atomic_store(&fast, true);
}

static int bpath(char *out, const char *path)
{
	if (snprintf(out, PATH_MAX, "%s%s", backing, path) >= PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

static void slow(bool write)
{
	unsigned us = delay_us[write];
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = us % 1000000 * 1000};

	if (!us || atomic_load(&fast))
		return;
	pthread_mutex_lock(&slow_lock);
	nanosleep(&ts, NULL);
	pthread_mutex_unlock(&slow_lock);
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	char p[PATH_MAX];
	int err = bpath(p, path);

	if (fi)
		return fstat((int)fi->fh, st) < 0 ? -errno : 0;
	return err ? err : lstat(p, st) < 0 ? -errno : 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)path, (void)off, (void)fi, (void)flags;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	return 0;
}

static int fs_open_flags(const char *path, struct fuse_file_info *fi, int extra, mode_t mode)
{
	char p[PATH_MAX];
	int err = bpath(p, path), fd;

	if (err)
		return err;
	fd = open(p, (fi->flags & ~O_DIRECT) | extra, mode);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 1; /* an open does not wait for the page cache (stalled reads) */
	return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	return fs_open_flags(path, fi, 0, 0);
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return fs_open_flags(path, fi, O_CREAT, mode);
}

static int fs_read(const char *path, char *buf, size_t n, off_t off, struct fuse_file_info *fi)
{
	static atomic_bool told;
	ssize_t got;

	(void)path;
	if (atomic_load(&stalled) && !atomic_exchange(&told, true)) {
		printf("stalled\n"); /* a read waits: the test knows the stall bites */
		fflush(stdout);
	}
	while (atomic_load(&stalled))
		usleep(1000);
	slow(false);
	got = pread((int)fi->fh, buf, n, off);
	return got < 0 ? -errno : (int)got;
}

static int fs_write(const char *path, const char *buf, size_t n, off_t off,
		    struct fuse_file_info *fi)
{
	ssize_t put;

	(void)path;
	slow(true);
	put = pwrite((int)fi->fh, buf, n, off);
	return put < 0 ? -errno : (int)put;
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	char p[PATH_MAX];
	int err = bpath(p, path);

	if (fi)
		return ftruncate((int)fi->fh, size) < 0 ? -errno : 0;
	return err ? err : truncate(p, size) < 0 ? -errno : 0;
}

static int fs_unlink(const char *path)
{
	char p[PATH_MAX];
	int err = bpath(p, path);

	return err ? err : unlink(p) < 0 ? -errno : 0;
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path, (void)datasync, (void)fi;
	return 0;
}

static const struct fuse_operations ops = {
    .getattr = fs_getattr,
    .readdir = fs_readdir,
    .open = fs_open,
    .create = fs_create,
    .read = fs_read,
    .write = fs_write,
    .truncate = fs_truncate,
    .unlink = fs_unlink,
    .release = fs_release,
    .fsync = fs_fsync,
};

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 0;
	cfg->hard_remove = 1; /* unlink an open file at once, as a disk file system does */
	/* reads and writes go by file handle, without the path: libfuse then takes no
	 * lock on it, so a stalled read never holds up an unlink */
	cfg->nullpath_ok = 1;
	printf("ready\n");
	fflush(stdout);
	return NULL;
}

int main(int argc, char **argv)
{
	struct fuse_operations o = ops;
	struct sigaction sa = {.sa_handler = on_stall, .sa_flags = SA_RESTART};
	/* threads enough that stalled reads never keep the other requests waiting (an
	 * unlink at ufvm's end must be answered) */
	char *fargv[] = {argv[0],
			 "-f",
			 "-o",
			 "default_permissions",
			 "-o",
			 "max_threads=512",
			 argc > 2 ? argv[2] : "",
			 NULL};

	if (argc < 3 || argc > 5) {
		fprintf(
		    stderr,
		    "usage: fuse_stall BACKING_DIR MOUNTPOINT [READ_DELAY_US [WRITE_DELAY_US]]\n");
		return 2;
	}
	backing = argv[1];
	delay_us[0] = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 0;
	delay_us[1] = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	o.init = fs_init;
	return fuse_main(7, fargv, &o, NULL);
}
