/* meta.c: the pager's per-page tables, and how a frozen VM gives them back to the host */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "mm/mm.h"

/*
 * The page-state table (8 bytes per guest page) and the swap tags (4 per page
 * in swap) are most of what ufvm holds for itself. The kernel's own swap keeps
 * the like (swap entries) in page tables, which no RSS counts; ours are plain
 * memory and would keep a frozen 768 MiB VM above 1 MiB. So when a VM is
 * frozen (paused and swapped out: mm_pager_freeze), they move into a shared
 * mapping of an unlinked file beside the swap file, at the same address
 * (MAP_FIXED), are written out and dropped from memory; the first access after
 * maps a page back from the file by itself, and from then on they stay
 * file-backed (RssFile). Every block of the file is allocated first, so a later
 * write to the table never meets a full disk. On tmpfs, where dropped pages
 * would stay in memory out of sight, they stay anonymous and are not dropped.
 */

int mm_meta_map(struct mm_meta *m, size_t bytes)
{
	m->bytes = bytes ? (bytes + MM_PAGE - 1) & ~(MM_PAGE - 1) : MM_PAGE;
	m->fd = -1;
	m->base = mmap(NULL, m->bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		return -ENOMEM;
	}
	return 0;
}

void mm_meta_unmap(struct mm_meta *m)
{
	if (m->base)
		munmap(m->base, m->bytes);
	if (m->fd >= 0)
		close(m->fd);
	m->base = NULL;
	m->fd = -1;
}

static bool zero_page(const uint8_t *p)
{
	static const uint8_t zeros[MM_PAGE];

	return !memcmp(p, zeros, MM_PAGE); /* reading an untouched page maps the zero page */
}

int mm_meta_to_file(struct mm_meta *m)
{
	struct statfs sf;
	int fd, err = 0;
	void *at;

	if (!m->base)
		return -EINVAL;
	if (m->fd >= 0)
		return 0;
	fd = open(swap_default_dir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fstatfs(fd, &sf) < 0 || sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC) {
		close(fd);
		return -ENOTSUP;
	}
	if (fallocate(fd, 0, 0, (off_t)m->bytes) < 0)
		err = -errno;
	for (size_t off = 0; !err && off < m->bytes; off += MM_PAGE) {
		const uint8_t *pg = (const uint8_t *)m->base + off;

		if (!zero_page(pg) && pwrite(fd, pg, MM_PAGE, (off_t)off) != MM_PAGE)
			err = errno ? -errno : -EIO;
	}
	if (!err) {
		at = mmap(m->base, m->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
		if (at == MAP_FAILED) {
			/* the old mapping may be gone already: put the table back from the file */
			err = -errno;
			at = mmap(m->base, m->bytes, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
			if (at == MAP_FAILED ||
			    pread(fd, m->base, m->bytes, 0) != (ssize_t)m->bytes)
				err = -EFAULT; /* the table is lost: the caller stops the VM */
		}
	}
	if (err) {
		close(fd);
		return err;
	}
	m->fd = fd;
	return 0;
}

int mm_meta_drop(struct mm_meta *m)
{
	if (!m->base || m->fd < 0)
		return -ENOTSUP;
	/* only what is safely on disk leaves memory: a failed write keeps it all */
	if (msync(m->base, m->bytes, MS_SYNC) < 0)
		return -errno;
	madvise(m->base, m->bytes, MADV_DONTNEED);
	posix_fadvise(m->fd, 0, 0, POSIX_FADV_DONTNEED);
	return 0;
}
