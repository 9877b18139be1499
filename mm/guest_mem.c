/* guest_mem.c: guest RAM as a shared memfd mapping, and the checked gpa gate */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mm/mm.h"

#define MM_2M (2ULL << 20)

int mm_mem_create(struct mm_mem *m, uint64_t size)
{
	int err;

	if (size == 0 || size % MM_2M)
		return -EINVAL;
	m->memfd = memfd_create("ufvm-guest-ram", MFD_CLOEXEC);
	if (m->memfd < 0)
		return -errno;
	if (ftruncate(m->memfd, (off_t)size) < 0) {
		err = -errno;
		goto err_close;
	}
	m->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->memfd, 0);
	if (m->hva == MAP_FAILED) {
		err = -errno;
		goto err_close;
	}
	m->size = size;
	m->pager = NULL;
	m->host_dirty = NULL; /* set later by dirty tracking, if at all */
	return 0;

err_close:
	close(m->memfd);
	m->memfd = -1;
	return err;
}

void mm_mem_destroy(struct mm_mem *m)
{
	if (m->hva && m->hva != MAP_FAILED)
		munmap(m->hva, m->size);
	if (m->memfd >= 0)
		close(m->memfd);
	m->hva = NULL;
	m->memfd = -1;
}

void *mm_gpa(const struct mm_mem *m, gpa_t gpa, uint64_t len)
{
	uint64_t end;

	if (__builtin_add_overflow(gpa, len, &end) || end > m->size)
		return NULL;
	return m->hva + gpa;
}

int mm_copy_from_guest(const struct mm_mem *m, void *dst, gpa_t src, uint64_t len)
{
	const void *p = mm_gpa(m, src, len);

	if (!p)
		return -EFAULT;
	if (m->pager)
		return mm_pager_copy(m->pager, src, dst, len, false);
	memcpy(dst, p, len);
	return 0;
}

void mm_mark_written(const struct mm_mem *m, gpa_t gpa, uint64_t len)
{
	if (!m->host_dirty || !len)
		return;
	for (uint64_t pfn = gpa / 4096; pfn <= (gpa + len - 1) / 4096; pfn++)
		__atomic_fetch_or(&m->host_dirty[pfn / 64], 1ULL << (pfn % 64), __ATOMIC_RELAXED);
}

int mm_copy_to_guest(const struct mm_mem *m, gpa_t dst, const void *src, uint64_t len)
{
	void *p = mm_gpa(m, dst, len);

	if (!p)
		return -EFAULT;
	mm_mark_written(m, dst, len);
	if (m->pager)
		return mm_pager_copy(m->pager, dst, (void *)src, len, true);
	memcpy(p, src, len);
	return 0;
}
