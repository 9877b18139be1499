/* cpuid_cache.c: KVM_GET_SUPPORTED_CPUID's answer kept across runs, per boot and per /dev/kvm */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/vmm.h"

/*
 * KVM answers KVM_GET_SUPPORTED_CPUID by executing the host's CPUID for every
 * leaf. On a nested host each of those traps to the outer hypervisor: the
 * ioctl then costs 0.3-0.5 ms, a quarter of what `ufvm run` adds to the least
 * a KVM process does (bench/README.md). The answer is fixed while the KVM
 * module stays loaded (its capability mask is computed at load), so it is kept
 * in a file, valid for one boot (boot_id) and one /dev/kvm node: loading the
 * vendor module again re-creates that node, with a new inode and ctime.
 * The file is only ever an optimization: any doubt means asking KVM again.
 */

#define CACHE_MAGIC "ufvmcpu1"

struct cache_key {
	char magic[8];
	char boot_id[40];
	uint64_t ino, rdev, ctime_sec, ctime_nsec;
	uint32_t entry_size, nent;
};

static int cache_path(char *buf, size_t len)
{
	const char *env = getenv("UFVM_CPUID_CACHE"), *dir;

	if (env)
		return strcmp(env, "off") && snprintf(buf, len, "%s", env) < (int)len ? 0 : -1;
	if (geteuid() == 0) {
		if (mkdir("/run/ufvm", 0755) < 0 && errno != EEXIST)
			return -1;
		return snprintf(buf, len, "/run/ufvm/cpuid") < (int)len ? 0 : -1;
	}
	dir = getenv("XDG_RUNTIME_DIR");
	if (!dir || dir[0] != '/')
		return -1;
	return snprintf(buf, len, "%s/ufvm-cpuid", dir) < (int)len ? 0 : -1;
}

static int make_key(int kvm_fd, struct cache_key *key)
{
	struct stat sb;
	ssize_t n;
	int fd;

	memset(key, 0, sizeof(*key));
	memcpy(key->magic, CACHE_MAGIC, sizeof(key->magic));
	if (fstat(kvm_fd, &sb) < 0)
		return -1;
	key->ino = sb.st_ino;
	key->rdev = sb.st_rdev;
	key->ctime_sec = (uint64_t)sb.st_ctim.tv_sec;
	key->ctime_nsec = (uint64_t)sb.st_ctim.tv_nsec;
	key->entry_size = sizeof(struct kvm_cpuid_entry2);
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, key->boot_id, sizeof(key->boot_id) - 1);
	close(fd);
	return n >= 32 ? 0 : -1;
}

/* The cached answer for this boot and this /dev/kvm, or NULL. */
struct kvm_cpuid2 *cpuid_cache_load(int kvm_fd)
{
	struct cache_key want, got;
	struct kvm_cpuid2 *c = NULL;
	char path[4096];
	size_t sz;
	int fd;

	if (cache_path(path, sizeof(path)) < 0 || make_key(kvm_fd, &want) < 0)
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	if (read(fd, &got, sizeof(got)) != (ssize_t)sizeof(got) || got.nent == 0 || got.nent > 4096)
		goto out;
	want.nent = got.nent;
	if (memcmp(&want, &got, sizeof(want)))
		goto out;
	sz = got.nent * sizeof(c->entries[0]);
	c = calloc(1, sizeof(*c) + sz);
	if (!c)
		goto out;
	c->nent = got.nent;
	if (read(fd, c->entries, sz) != (ssize_t)sz) {
		free(c);
		c = NULL;
	}
out:
	close(fd);
	return c;
}

/* Keep KVM's answer for the next run; failures only cost that run the ioctl. */
void cpuid_cache_store(int kvm_fd, const struct kvm_cpuid2 *c)
{
	struct cache_key key;
	char path[4096], tmp[4200];
	size_t sz = c->nent * sizeof(c->entries[0]);
	int fd;

	if (cache_path(path, sizeof(path)) < 0 || make_key(kvm_fd, &key) < 0)
		return;
	key.nent = c->nent;
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return;
	/* written whole, then renamed: a reader sees the old file or the new one */
	if (fchmod(fd, 0644) < 0 || write(fd, &key, sizeof(key)) != (ssize_t)sizeof(key) ||
	    write(fd, c->entries, sz) != (ssize_t)sz || rename(tmp, path) < 0)
		unlink(tmp);
	close(fd);
}
