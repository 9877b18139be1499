/* console.c: the console is stdout, and a reader that stops reading must not hold a vCPU for ever
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/dev.h"

static pthread_once_t console_once = PTHREAD_ONCE_INIT;
static int console_fd = STDOUT_FILENO;

/*
 * A pipe gets a non-blocking file description of its own (opened through /proc), so
 * that a full pipe never blocks a write, and the flags of the one we inherited, which
 * others share, stay as they are. Other kinds of stdout are written as they are: a
 * write that blocks there is interrupted by the stop's kick (EINTR).
 */
static void console_open(void)
{
	struct stat sb;
	int fd;

	if (fstat(STDOUT_FILENO, &sb) < 0 || !S_ISFIFO(sb.st_mode))
		return;
	fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0)
		console_fd = fd;
}

int dev_console_write(const void *buf, size_t len, int stop_efd, bool (*wait)(void *, bool),
		      void *arg)
{
	const uint8_t *p = buf;

	pthread_once(&console_once, console_open);
	while (len) {
		ssize_t n = write(console_fd, p, len);
		struct pollfd pf[2] = {{.fd = console_fd, .events = POLLOUT},
				       {.fd = stop_efd, .events = POLLIN}};
		bool stopped;
		int r, e = errno;

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -EIO;
		if (e != EINTR && e != EAGAIN)
			return -e;
		/* a stop (or a kick for one) since: the rest is not written */
		if (poll(&pf[1], 1, 0) > 0)
			return -ESHUTDOWN;
		if (e == EINTR)
			continue;
		if (wait) /* the pipe is full: wait for its reader, or the stop */
			wait(arg, true);
		while ((r = poll(pf, 2, -1)) < 0 && errno == EINTR)
			;
		stopped = r > 0 && pf[1].revents;
		if (wait && !wait(arg, false))
			stopped = true;
		if (stopped)
			return -ESHUTDOWN;
	}
	return 0;
}
