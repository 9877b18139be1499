/* driver.c: main() of every fuzz harness: AFL++'s persistent loop, or a replay of files */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_INPUT (1u << 20)

/* One input file through fuzz_one; -1 when it cannot be read. */
static int replay_file(const char *path)
{
	static uint8_t buf[FUZZ_MAX_INPUT];
	size_t len = 0;
	uint8_t *copy;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "fuzz: input %s: open failed: %s\n", path, strerror(errno));
		return -1;
	}
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	close(fd);
	/* a copy of exactly len bytes: ASan then sees a read past the input's end */
	copy = malloc(len ? len : 1);
	if (!copy)
		return -1;
	memcpy(copy, buf, len);
	fuzz_one(copy, len);
	free(copy);
	return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Every file of a directory (in name order; README and dotfiles skipped), or one file. */
static int replay_path(const char *path, unsigned *count)
{
	struct dirent **names;
	struct stat st;
	int n, err = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return replay_file(path);
	}
	n = scandir(path, &names, NULL, by_name);
	if (n < 0) {
		fprintf(stderr, "fuzz: directory %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char full[4096];

		if (names[i]->d_name[0] != '.' && strncmp(names[i]->d_name, "README", 6)) {
			snprintf(full, sizeof(full), "%s/%s", path, names[i]->d_name);
			if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
				fprintf(stderr, "fuzz: %s\n", full);
				(*count)++;
				if (replay_file(full) < 0)
					err = -1;
			}
		}
		free(names[i]);
	}
	free(names);
	return err;
}

#ifdef __AFL_FUZZ_TESTCASE_LEN
__AFL_FUZZ_INIT();
#endif

int main(int argc, char **argv)
{
	unsigned count = 0;
	int err = 0;

	if (argc < 2) {
#ifdef __AFL_FUZZ_TESTCASE_LEN
		/* under afl-fuzz: set up in the forked child, then many inputs per process */
		__AFL_INIT();
		fuzz_init();
		const uint8_t *buf = __AFL_FUZZ_TESTCASE_BUF;

		while (__AFL_LOOP(10000)) {
			size_t len = __AFL_FUZZ_TESTCASE_LEN;
			uint8_t *copy = malloc(len ? len : 1); /* exact size: overreads show */

			if (!copy)
				abort();
			memcpy(copy, buf, len);
			fuzz_one(copy, len);
			free(copy);
		}
		return 0;
#else
		fprintf(stderr,
			"usage: %s FILE|DIR...  (replays each input; built with afl-cc, "
			"no argument runs under afl-fuzz)\n",
			argv[0]);
		return 2;
#endif
	}
	fuzz_init();
	for (int i = 1; i < argc; i++)
		if (replay_path(argv[i], &count) < 0)
			err = 1;
	if (count == 0) {
		fprintf(stderr, "fuzz: no input found: nothing was tested\n");
		return 1;
	}
	fprintf(stderr, "fuzz: %u input(s) replayed%s\n", count, err ? ", some unreadable" : "");
	return err;
}
