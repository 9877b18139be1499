/* launch.c: the VMs the pool starts itself: `ufvm run` with the pool's socket and limit */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool/pool.h"

/* "64M", "1G", "524288K", bytes: as ufvm's own --mem (the pool checks before it starts). */
int pool_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'K':
	case 'k':
		shift = 10, end++;
		break;
	case 'M':
	case 'm':
		shift = 20, end++;
		break;
	case 'G':
	case 'g':
		shift = 30, end++;
		break;
	}
	if (*end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int pool_guest_pages(char **argv, uint64_t *pages, const char **why)
{
	uint64_t bytes = 64ULL << 20;

	for (char **a = argv; *a; a++) {
		const char *val = NULL;

		if (!strcmp(*a, "--api") || !strncmp(*a, "--api=", 6) ||
		    !strcmp(*a, "--mem-limit") || !strncmp(*a, "--mem-limit=", 12)) {
			*why = "the pool sets --api and --mem-limit itself: leave them out";
			return -EINVAL;
		}
		if (!strcmp(*a, "--pager") && a[1] && !strcmp(a[1], "off")) {
			*why = "a VM without the pager (--pager off) has no memory limit to set";
			return -EINVAL;
		}
		if (!strcmp(*a, "--mem"))
			val = a[1];
		else if (!strncmp(*a, "--mem=", 6))
			val = *a + 6;
		else
			continue;
		if (!val || pool_parse_size(val, &bytes) < 0 || bytes < (16ULL << 20) ||
		    bytes > (64ULL << 30)) {
			*why = "bad --mem: a size 16M..64G like 256M";
			return -EINVAL;
		}
	}
	*pages = ((bytes + (2ULL << 20) - 1) & ~((2ULL << 20) - 1)) / POOL_PAGE;
	return 0;
}

void pool_find_ufvm(char *out, size_t n)
{
	static const char *const rel[] = {"/ufvm", "/../vmm/ufvm"}; /* installed; build tree */
	char self[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);

	snprintf(out, n, "ufvm");
	if (len <= 0)
		return;
	self[len] = '\0';
	*strrchr(self, '/') = '\0';
	for (unsigned i = 0; i < 2; i++) {
		char c[PATH_MAX + 16];

		snprintf(c, sizeof(c), "%s%s", self, rel[i]);
		if (access(c, X_OK) == 0) {
			snprintf(out, n, "%s", c);
			return;
		}
	}
}

/* v could not be started: it is gone at once, and counts as a child that exited with
 * 127 (as when its ufvm cannot be run), so --exit-when-done neither waits for it nor
 * reports success. There is no process: nothing to signal or reap. */
static void launch_failed(struct pool *p, struct pool_vm *v, const char *what, int err)
{
	char why[160];

	v->reaped = true;
	v->wstatus = 127 << 8; /* WIFEXITED, WEXITSTATUS 127 */
	p->started++;
	snprintf(why, sizeof(why), "cannot start: %s (%s)", what, strerror(-err));
	pool_set_gone(p, v, why);
}

int pool_launch(struct pool *p, struct pool_vm *v, uint64_t limit)
{
	char lim[32], log[sizeof(p->dir) + POOL_NAME_MAX + 8];
	size_t n = 0;
	char **argv;
	pid_t pid;
	int fd;

	while (v->argv[n])
		n++;
	argv = calloc(n + 7, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	snprintf(lim, sizeof(lim), "%" PRIu64 "K", limit * 4);
	snprintf(log, sizeof(log), "%s/%s.log", p->dir, v->name);
	argv[0] = p->ufvm;
	argv[1] = "run";
	argv[2] = "--api";
	argv[3] = v->sock;
	argv[4] = "--mem-limit";
	argv[5] = lim;
	memcpy(argv + 6, v->argv, n * sizeof(*argv));
	unlink(v->sock); /* a stale one from an earlier VM of that name */
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int err = -errno;

		free(argv);
		launch_failed(p, v, "cannot create its log file in the pool's --dir", err);
		return err;
	}
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		sigset_t none;

		/* its own process group: a Ctrl-C to the pool is the pool's to pass on */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* no orphan VMs if the pool dies */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(null, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		dprintf(2, "ufvmpool: %s: cannot run: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	free(argv);
	if (pid < 0) {
		int err = -errno;

		launch_failed(p, v, "fork failed", err);
		return err;
	}
	v->pid = pid;
	v->late = false;
	v->state = VM_LAUNCHED;
	v->launch_limit = limit;
	v->limit_want = limit;
	v->target = v->target ? v->target : limit;
	p->started++;
	pool_event(p, v, "started: pid %d, limit %" PRIu64 " MiB, output in %s", (int)pid,
		   limit / 256, log);
	return 0;
}

void pool_reap(struct pool *p)
{
	int st;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (unsigned i = 0; i < p->nvm; i++) {
			struct pool_vm *v = p->vm[i];
			char why[96];

			if (!v->child || v->pid != pid || v->reaped)
				continue;
			v->reaped = true;
			v->wstatus = st;
			if (WIFEXITED(st))
				snprintf(why, sizeof(why), "exited with status %d",
					 WEXITSTATUS(st));
			else
				snprintf(why, sizeof(why), "killed by signal %d (%s)", WTERMSIG(st),
					 strsignal(WTERMSIG(st)));
			if (v->state == VM_GONE)
				pool_event(p, v, "%s", why);
			else
				pool_set_gone(p, v, why);
		}
	}
}

void pool_stop_children(struct pool *p, unsigned grace_ms)
{
	struct timespec t0, t;
	bool any = false;

	for (unsigned i = 0; i < p->nvm; i++)
		if (p->vm[i]->child && p->vm[i]->pid > 0 && !p->vm[i]->reaped)
			kill(p->vm[i]->pid, SIGTERM), any = true;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (any) {
		long ms;

		pool_reap(p);
		any = false;
		for (unsigned i = 0; i < p->nvm; i++)
			any |= p->vm[i]->child && p->vm[i]->pid > 0 && !p->vm[i]->reaped;
		clock_gettime(CLOCK_MONOTONIC, &t);
		ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (any && ms > (long)grace_ms) {
			for (unsigned i = 0; i < p->nvm; i++)
				if (p->vm[i]->child && p->vm[i]->pid > 0 && !p->vm[i]->reaped)
					kill(p->vm[i]->pid, SIGKILL);
			grace_ms = UINT_MAX; /* reap what SIGKILL leaves */
		}
		if (any)
			poll(NULL, 0, 20);
	}
}
