/* input.c: read a user-supplied input file (guest image, kernel, initrd) whole, with limits */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/vmm.h"

int vmm_read_file(const char *what, const char *path, uint64_t max, uint8_t **buf, size_t *len)
{
	struct stat st;
	size_t got = 0;
	ssize_t n;
	/* O_NONBLOCK: open() of a FIFO would wait for a writer before S_ISREG could refuse it */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	*buf = NULL;
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "ufvm: %s %s: cannot open: %s\n", what, path, strerror(errno));
		goto err;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "ufvm: %s %s: not a regular file\n", what, path);
		goto err;
	}
	if ((uint64_t)st.st_size > max) {
		fprintf(stderr, "ufvm: %s %s: larger than %llu MiB\n", what, path,
			(unsigned long long)(max >> 20));
		goto err;
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		fprintf(stderr, "ufvm: %s %s: out of memory\n", what, path);
		goto err;
	}
	while (got < *len) {
		n = read(fd, *buf + got, *len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* error, or the file shrank under us */
		got += (size_t)n;
	}
	if (got != *len) {
		fprintf(stderr, "ufvm: %s %s: short read\n", what, path);
		free(*buf);
		*buf = NULL;
		goto err;
	}
	close(fd);
	return 0;
err:
	if (fd >= 0)
		close(fd);
	return VMM_EXIT_USAGE;
}
