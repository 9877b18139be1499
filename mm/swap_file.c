/* swap_file.c: the file swap backend: a file of slots and its io_uring engine (batched, retried) */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "mm/mm.h"

#define SWAP_PAGE	4096u
#define SWAP_QD_DEFAULT 64u
#define SWAP_QD_MAX	4096u
/* Bytes per sqe: sqe->len is 32 bits and the kernel caps one read/write below 2 GiB. */
#define SWAP_CHUNK_MAX (1u << 30)
/* Consecutive -EAGAIN completions of one request before it fails with -EAGAIN. */
#define SWAP_EAGAIN_MAX 1000u

/*
 * One request slot of the queue depth; its address is the sqe's user_data.
 * A request carries one io from start to end: after each completion it is
 * resubmitted for the rest (a short transfer, -EAGAIN, or an io longer than
 * SWAP_CHUNK_MAX), so the io's pages never leave the order of the run.
 */
struct swap_req {
	struct swap_io *io; /* NULL while the request is free */
	uint64_t done;	    /* bytes of io already transferred */
	uint32_t len;	    /* bytes asked for by the submission in flight */
	int injected;	    /* -errno to report instead of the (NOP) completion's res */
	unsigned eagains;   /* consecutive -EAGAIN completions */
};

struct swap_inject {
	int err;       /* positive errno; 0 = off */
	uint64_t left; /* bytes still let through */
};

struct swap_file {
	int fd;
	char *created;	   /* the path ufvm created (removed at close), or NULL */
	dev_t created_dev; /* ... and the file it was then */
	ino_t created_ino;
	bool direct;
	uint64_t max_pages;
	struct io_uring ring;
	unsigned qdepth;
	unsigned inflight;	/* requests out of the pool: prepared or submitted */
	unsigned unsubmitted;	/* prepared sqes the kernel has not taken yet */
	int broken;		/* -errno once io_uring_enter failed for good */
	struct swap_req *reqs;	/* qdepth of them */
	struct swap_req **pool; /* the free ones, a stack */
	unsigned npool;
	struct swap_inject inject[2]; /* [0] reads, [1] writes */
	struct swap_stats st;
};

/* Where a swap file without a path goes: $TMPDIR, else /tmp. */
const char *swap_default_dir(void)
{
	const char *dir = getenv("TMPDIR");

	return dir && *dir ? dir : "/tmp";
}

static int open_tmpfile(bool direct)
{
	const char *dir = swap_default_dir();
	int dflag = direct ? O_DIRECT : 0;
	char *tmpl;
	int fd;

	fd = open(dir, O_TMPFILE | O_EXCL | O_RDWR | O_CLOEXEC | dflag, 0600);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR) /* EISDIR: kernel without O_TMPFILE */
		return -errno;
	if (asprintf(&tmpl, "%s/ufvm-swap-XXXXXX", dir) < 0)
		return -ENOMEM;
	fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0) {
		fd = -errno;
		goto out_free;
	}
	unlink(tmpl);
	if (direct && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT) < 0) {
		close(fd);
		fd = -errno;
	}
out_free:
	free(tmpl);
	return fd;
}

/* /proc and /sys files look like empty regular files, and writing them does harm
 * (/proc/self/mem is guest RAM itself): never swap there (-EMEDIUMTYPE). */
static bool refused_fs(int fd)
{
	struct statfs sf;

	return fstatfs(fd, &sf) == 0 && (sf.f_type == PROC_SUPER_MAGIC || sf.f_type == SYSFS_MAGIC);
}

/* Remove the file we created, if the path still names it. */
static void remove_created(const struct swap_file *s)
{
	struct stat st;

	if (s->created && lstat(s->created, &st) == 0 && st.st_dev == s->created_dev &&
	    st.st_ino == s->created_ino)
		unlink(s->created);
}

/* Some file systems (overlayfs on Linux 6.1) accept O_DIRECT at open and refuse it
 * with EINVAL at the first I/O: find out now, with one aligned read of slot 0. */
static int probe_direct(int fd)
{
	void *buf;
	int err = 0;

	if (posix_memalign(&buf, SWAP_PAGE, SWAP_PAGE))
		return -ENOMEM;
	if (pread(fd, buf, SWAP_PAGE, 0) < 0)
		err = -errno;
	free(buf);
	return err;
}

/*
 * A path of the user's: a new file, created here and removed at close (guest memory
 * does not outlive the VM), or an existing empty file or a block device. An existing
 * file with data in it is refused (-EEXIST), never truncated: it may be anything; so
 * is a file in /proc or /sys (-EMEDIUMTYPE).
 */
static int open_file(struct swap_file *s, const struct swap_opts *o)
{
	int flags = O_RDWR | O_CLOEXEC | (o->direct ? O_DIRECT : 0), fd;
	struct stat st;

	if (!o->path)
		return open_tmpfile(o->direct);
	fd = open(o->path, flags | O_CREAT | O_EXCL, 0600);
	if (fd >= 0) {
		s->created = strdup(o->path);
		if (fstat(fd, &st) == 0) {
			s->created_dev = st.st_dev;
			s->created_ino = st.st_ino;
		}
		return fd;
	}
	if (errno != EEXIST)
		return -errno;
	fd = open(o->path, flags);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || (S_ISREG(st.st_mode) && st.st_size > 0) ||
	    !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) || refused_fs(fd)) {
		int err = refused_fs(fd)			  ? -EMEDIUMTYPE
			  : S_ISREG(st.st_mode) && st.st_size > 0 ? -EEXIST
								  : -EINVAL;

		close(fd);
		return err;
	}
	return fd;
}

static int file_open(void **out, const struct swap_opts *o, uint64_t max_pages)
{
	struct swap_file *s;
	struct stat st;
	unsigned i, qd;
	int err;

	qd = o->qdepth ? o->qdepth : SWAP_QD_DEFAULT;
	if (qd > SWAP_QD_MAX)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->qdepth = qd;
	s->direct = o->direct;
	s->max_pages = max_pages;
	err = -ENOMEM;
	s->reqs = calloc(qd, sizeof(*s->reqs));
	s->pool = calloc(qd, sizeof(*s->pool));
	if (!s->reqs || !s->pool)
		goto err_reqs;
	for (i = 0; i < qd; i++)
		s->pool[i] = &s->reqs[i];
	s->npool = qd;
	s->fd = open_file(s, o);
	if (s->fd < 0) {
		err = s->fd;
		goto err_reqs;
	}
	/* Sets the size only: blocks are allocated as slots are first written. A block
	 * device has its size; writes past it fail like a full disk. */
	if (fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    ftruncate(s->fd, (off_t)(max_pages * SWAP_PAGE)) < 0) {
		err = -errno;
		goto err_close;
	}
	if (o->direct) {
		err = probe_direct(s->fd);
		if (err < 0)
			goto err_close;
	}
	/* SQ of qd entries, CQ of 2*qd: at most qd in flight never overflows either. */
	err = io_uring_queue_init(qd, &s->ring, 0);
	if (err < 0)
		goto err_close;
	*out = s;
	return 0;

err_close:
	close(s->fd);
	remove_created(s);
	free(s->created);
err_reqs:
	free(s->pool);
	free(s->reqs);
	free(s);
	return err;
}

static void file_close(void *impl)
{
	struct swap_file *s = impl;

	io_uring_queue_exit(&s->ring);
	close(s->fd);
	remove_created(s);
	free(s->created);
	free(s->pool);
	free(s->reqs);
	free(s);
}

static void io_finish(struct swap_file *s, struct swap_io *io, int res, bool write)
{
	io->res = res;
	if (res < 0 && write)
		s->st.write_errors++;
	else if (res < 0)
		s->st.read_errors++;
	else if (write)
		s->st.pages_written += io->npages;
	else
		s->st.pages_read += io->npages;
}

static void req_finish(struct swap_file *s, struct swap_req *r, int res, bool write)
{
	io_finish(s, r->io, res, write);
	r->io = NULL;
	s->pool[s->npool++] = r;
	s->inflight--;
}

/* Prepare an sqe for the rest of r's io (at most SWAP_CHUNK_MAX bytes of it). */
static void req_queue(struct swap_file *s, struct swap_req *r, bool write)
{
	struct swap_io *io = r->io;
	uint64_t left = (uint64_t)io->npages * SWAP_PAGE - r->done;
	struct swap_inject *inj = &s->inject[write];
	struct io_uring_sqe *sqe;
	uint32_t len = left > SWAP_CHUNK_MAX ? SWAP_CHUNK_MAX : (uint32_t)left;

	sqe = s->broken ? NULL : io_uring_get_sqe(&s->ring);
	if (!sqe) { /* never with a working ring: qdepth requests fit the SQ */
		req_finish(s, r, s->broken ? s->broken : -EBUSY, write);
		return;
	}
	if (inj->err && inj->left == 0) {
		io_uring_prep_nop(sqe);
		r->injected = -inj->err;
	} else {
		if (inj->err && len > inj->left)
			len = (uint32_t)inj->left;
		if (inj->err)
			inj->left -= len;
		if (write)
			io_uring_prep_write(sqe, s->fd, (char *)io->buf + r->done, len,
					    io->slot * SWAP_PAGE + r->done);
		else
			io_uring_prep_read(sqe, s->fd, (char *)io->buf + r->done, len,
					   io->slot * SWAP_PAGE + r->done);
	}
	io_uring_sqe_set_data(sqe, r);
	r->len = len;
	s->unsubmitted++;
}

static int io_check(const struct swap_file *s, const struct swap_io *io)
{
	uint64_t end;

	if (io->npages == 0 || !io->buf)
		return -EINVAL;
	if (__builtin_add_overflow(io->slot, (uint64_t)io->npages, &end) || end > s->max_pages)
		return -EINVAL;
	if (s->direct && (uintptr_t)io->buf % SWAP_PAGE)
		return -EINVAL;
	return 0;
}

static void req_start(struct swap_file *s, struct swap_io *io, bool write)
{
	struct swap_req *r;
	int err = s->broken ? s->broken : io_check(s, io);

	if (err) {
		io_finish(s, io, err, write);
		return;
	}
	r = s->pool[--s->npool];
	*r = (struct swap_req){.io = io};
	s->inflight++;
	req_queue(s, r, write);
}

static void req_complete(struct swap_file *s, struct swap_req *r, int res, bool write)
{
	if (r->injected) {
		res = r->injected;
		r->injected = 0;
	}
	if (res == -EAGAIN && ++r->eagains < SWAP_EAGAIN_MAX) {
		s->st.requeues++;
		req_queue(s, r, write);
		return;
	}
	if (res <= 0) { /* 0: no progress, the file ended under us */
		req_finish(s, r, res < 0 ? res : -EIO, write);
		return;
	}
	r->eagains = 0;
	r->done += (uint32_t)res;
	if (r->done == (uint64_t)r->io->npages * SWAP_PAGE) {
		req_finish(s, r, 0, write);
		return;
	}
	if ((uint32_t)res < r->len)
		s->st.requeues++;
	req_queue(s, r, write);
}

/*
 * io_uring_enter failed for a reason retrying will not fix. Which prepared
 * sqes the kernel took is unknown, so fail every request (their buffers may
 * still be touched by requests the kernel did take) and refuse further I/O.
 */
static void ring_break(struct swap_file *s, int err, bool write)
{
	unsigned i;

	s->broken = err;
	s->unsubmitted = 0;
	for (i = 0; i < s->qdepth; i++)
		if (s->reqs[i].io)
			req_finish(s, &s->reqs[i], err, write);
}

/*
 * One io_uring_enter: submit what is prepared, wait for wait_nr completions,
 * reap all. (On a partial submission the kernel returns without waiting, so
 * waiting for more than it took cannot hang.)
 */
static void ring_round(struct swap_file *s, unsigned wait_nr, bool write)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int ret;

	ret = io_uring_submit_and_wait(&s->ring, wait_nr);
	s->st.submits++;
	if (ret >= 0) {
		s->unsubmitted -= (unsigned)ret < s->unsubmitted ? (unsigned)ret : s->unsubmitted;
	} else if (ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
		ring_break(s, ret, write);
		return;
	}
	io_uring_for_each_cqe(&s->ring, head, cqe)
	{
		req_complete(s, io_uring_cqe_get_data(cqe), cqe->res, write);
		seen++;
	}
	io_uring_cq_advance(&s->ring, seen);
}

static int swap_rw(struct swap_file *s, struct swap_io *ios, unsigned n, bool write)
{
	unsigned next = 0, i;

	if (n && !ios)
		return -EINVAL;
	while (next < n || s->inflight) {
		/*
		 * Fill the queue, then one syscall submits the batch and reaps.
		 * With more to start, wait for a quarter of the queue to free up
		 * (bigger batches, fewer syscalls, 3/4 still busy); at the end
		 * wait for everything in one go.
		 */
		while (next < n && s->inflight < s->qdepth)
			req_start(s, &ios[next++], write);
		if (!s->inflight)
			break;
		if (next < n)
			ring_round(s, s->qdepth / 4 ? s->qdepth / 4 : 1, write);
		else
			ring_round(s, s->inflight, write);
	}
	for (i = 0; i < n; i++)
		if (ios[i].res)
			return ios[i].res;
	return 0;
}

static int file_write(void *impl, struct swap_io *ios, unsigned n)
{
	return swap_rw(impl, ios, n, true);
}

static int file_read(void *impl, struct swap_io *io)
{
	return swap_rw(impl, io, 1, false);
}

static int file_read_many(void *impl, struct swap_io *ios, unsigned n)
{
	return swap_rw(impl, ios, n, false);
}

static void file_get_stats(void *impl, struct swap_stats *st)
{
	*st = ((struct swap_file *)impl)->st;
}

static void file_inject(void *impl, bool write, int err, uint64_t after)
{
	struct swap_file *s = impl;
	struct swap_inject *inj = &s->inject[write];

	inj->err = err < 0 ? -err : err;
	inj->left = after > UINT64_MAX / SWAP_PAGE ? UINT64_MAX : after * SWAP_PAGE;
}

/* A freed slot's blocks stay allocated: rewriting it later needs no new space, and a
 * punch per freed slot would cost a syscall on the fault path. Hence no discard. */
const struct swap_backend swap_file_backend = {
    .name = "file",
    .open = file_open,
    .write = file_write,
    .read = file_read,
    .read_many = file_read_many,
    .discard = NULL,
    .close = file_close,
    .get_stats = file_get_stats,
    .servers = NULL,
    .inject = file_inject,
};
