/* uffd.c: thin userfaultfd wrapper mapping errno to meaningful results */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mm/mm.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_FEATURE_MINOR_SHMEM
#define UFFD_FEATURE_MINOR_SHMEM (1 << 10)
#endif
#ifndef UFFDIO_REGISTER_MODE_MINOR
#define UFFDIO_REGISTER_MODE_MINOR ((__u64)1 << 2)
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

static int uffd_new_fd(void)
{
	int dev, fd;

	/* /dev/userfaultfd lets a non-root user in when its mode allows. */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

static int uffd_api(int fd, uint64_t want, uint64_t *got)
{
	struct uffdio_api api = {.api = UFFD_API, .features = want};

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	*got = api.features;
	return 0;
}

int64_t uffd_probe(void)
{
	uint64_t got = 0;
	int fd = uffd_new_fd(), err;

	if (fd < 0)
		return fd;
	err = uffd_api(fd, 0, &got);
	close(fd);
	return err < 0 ? err : (int64_t)got;
}

int uffd_open(struct uffd *u, uint64_t want)
{
	int64_t avail;
	int err;

	/* One open when the kernel has every feature; the probe only tells why not. */
	u->fd = uffd_new_fd();
	if (u->fd < 0)
		return u->fd;
	err = uffd_api(u->fd, want, &u->features);
	if (err < 0) {
		close(u->fd);
		u->fd = -1;
		avail = uffd_probe();
		if (avail >= 0 && ((uint64_t)avail & want) != want)
			err = -ENOTSUP;
	}
	return err;
}

void uffd_close(struct uffd *u)
{
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

const char *uffd_strerror(int err)
{
	switch (-err) {
	case EPERM:
	case EACCES:
		return "userfaultfd is not permitted: run ufvm as root, or give this user "
		       "read-write access to /dev/userfaultfd, or set the sysctl "
		       "vm.unprivileged_userfaultfd=1 (or use --pager off)";
	case ENOSYS:
		return "this kernel has no userfaultfd (CONFIG_USERFAULTFD): use --pager off";
	case ENOTSUP:
		return "this kernel's userfaultfd lacks shmem MISSING/MINOR support "
		       "(Linux 5.13 or newer is needed): use --pager off";
	default:
		return strerror(-err);
	}
}

int uffd_register(struct uffd *u, void *addr, uint64_t len, bool minor, bool wp)
{
	struct uffdio_register r = {
	    .range = {.start = (uintptr_t)addr, .len = len},
	    .mode = UFFDIO_REGISTER_MODE_MISSING | (minor ? UFFDIO_REGISTER_MODE_MINOR : 0) |
		    (wp ? UFFDIO_REGISTER_MODE_WP : 0),
	};

	return ioctl(u->fd, UFFDIO_REGISTER, &r) < 0 ? -errno : 0;
}

int uffd_unregister(struct uffd *u, void *addr, uint64_t len)
{
	struct uffdio_range r = {.start = (uintptr_t)addr, .len = len};

	return ioctl(u->fd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

static int map_errno(int e)
{
	switch (e) {
	case EEXIST:
		return UFFD_EXISTS;
	case EAGAIN:
		return UFFD_RETRY;
	case ESRCH:
		return UFFD_GONE;
	case EFAULT:
	case ENOENT:
		return UFFD_NOPAGE;
	default:
		return -e;
	}
}

/*
 * EAGAIN with partial progress is retried here. Without progress it means
 * the mm is changing (a REMOVE event is pending): UFFD_RETRY, and the caller
 * must go back to reading events, or it would spin forever.
 */
int uffd_copy(struct uffd *u, void *dst, const void *src, uint64_t len, bool wp, uint64_t *done)
{
	struct uffdio_copy c;
	uint64_t off = 0;

	for (;;) {
		c = (struct uffdio_copy){.dst = (uintptr_t)dst + off,
					 .src = (uintptr_t)src + off,
					 .len = len - off,
					 .mode = UFFDIO_COPY_MODE_DONTWAKE |
						 (wp ? UFFDIO_COPY_MODE_WP : 0)};
		if (ioctl(u->fd, UFFDIO_COPY, &c) == 0) {
			off = len;
			break;
		}
		/* EAGAIN without progress: an event (REMOVE) waits to be read first. */
		if (errno != EAGAIN || c.copy <= 0)
			break;
		off += (uint64_t)c.copy;
		if (off >= len)
			break;
	}
	*done = off;
	return off >= len ? UFFD_OK : map_errno(errno);
}

int uffd_continue(struct uffd *u, void *addr, uint64_t len, bool wp, uint64_t *done)
{
	struct uffdio_continue c;
	uint64_t off = 0;

	for (;;) {
		c = (struct uffdio_continue){
		    .range = {.start = (uintptr_t)addr + off, .len = len - off},
		    .mode = UFFDIO_CONTINUE_MODE_DONTWAKE | (wp ? UFFDIO_CONTINUE_MODE_WP : 0)};
		if (ioctl(u->fd, UFFDIO_CONTINUE, &c) == 0) {
			off = len;
			break;
		}
		/* EAGAIN without progress: an event (REMOVE) waits to be read first. */
		if (errno != EAGAIN || c.mapped <= 0)
			break;
		off += (uint64_t)c.mapped;
		if (off >= len)
			break;
	}
	*done = off;
	return off >= len ? UFFD_OK : map_errno(errno);
}

int uffd_wake(struct uffd *u, void *addr, uint64_t len)
{
	struct uffdio_range r = {.start = (uintptr_t)addr, .len = len};

	return ioctl(u->fd, UFFDIO_WAKE, &r) < 0 ? map_errno(errno) : 0;
}

int uffd_read(struct uffd *u, void *msgs, int max)
{
	ssize_t n = read(u->fd, msgs, (size_t)max * sizeof(struct uffd_msg));

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	return (int)(n / (ssize_t)sizeof(struct uffd_msg));
}
