/* kvm.c: open /dev/kvm, check the API version and the capabilities ufvm relies on */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/vmm.h"

static int kvm_get_cpuid(struct kvm *k)
{
	int nent = 128;

	k->cpuid = cpuid_cache_load(k->fd);
	if (k->cpuid)
		return 0;
	for (;;) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(k->fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			k->cpuid = c;
			cpuid_cache_store(k->fd, c);
			return 0;
		}
		free(c);
		if (errno != E2BIG || nent >= 4096)
			return -errno;
		nent *= 2;
	}
}

static bool kvm_cpuid_1g(const struct kvm *k)
{
	for (unsigned i = 0; i < k->cpuid->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &k->cpuid->entries[i];

		if (e->function == 0x80000001)
			return e->edx & (1u << 26);
	}
	return false;
}

int kvm_open(struct kvm *k, const char **why)
{
	static const struct {
		int cap;
		const char *name;
	} caps[] = {
	    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
	    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
	    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
	    {KVM_CAP_SYNC_MMU, "KVM_CAP_SYNC_MMU"},
	};
	int err, v;

	memset(k, 0, sizeof(*k));
	k->fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->fd < 0) {
		err = -errno;
		*why = "cannot open /dev/kvm";
		return err;
	}
	v = ioctl(k->fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		*why = "KVM API version is not 12";
		err = -ENOTSUP;
		goto err_close;
	}
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		if (ioctl(k->fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
			*why = caps[i].name;
			err = -ENOTSUP;
			goto err_close;
		}
	}
	/* KVM_CAP_MAX_VCPUS is the hard limit (NR_VCPUS the recommended one); 0: not said */
	k->max_vcpus = ioctl(k->fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (k->max_vcpus <= 0)
		k->max_vcpus = ioctl(k->fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	k->run_size = ioctl(k->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k->run_size < (int)sizeof(struct kvm_run)) {
		*why = "KVM_GET_VCPU_MMAP_SIZE";
		err = -EINVAL;
		goto err_close;
	}
	err = kvm_get_cpuid(k);
	if (err) {
		*why = "KVM_GET_SUPPORTED_CPUID";
		goto err_close;
	}
	k->has_1g_pages = kvm_cpuid_1g(k);
	return 0;

err_close:
	close(k->fd);
	k->fd = -1;
	return err;
}

int kvm_set_vcpu_cpuid(int fd, const struct kvm *k, unsigned index, unsigned linux_cpus)
{
	struct kvm_cpuid2 *c = k->cpuid;
	size_t sz = sizeof(*c) + c->nent * sizeof(c->entries[0]);
	struct kvm_cpuid2 *mine = __builtin_alloca(sz);

	memcpy(mine, c, sz);
	for (unsigned i = 0; i < mine->nent; i++) {
		struct kvm_cpuid_entry2 *e = &mine->entries[i];

		if (e->function == 1 && linux_cpus) {
			e->ebx =
			    (e->ebx & 0x0000ffff) | (index << 24) | ((linux_cpus & 0xff) << 16);
			e->edx |= 1u << 28; /* HTT: the logical processor count is valid */
			e->ecx |= 1u << 31; /* running on a hypervisor */
		} else if (e->function == 1) {
			e->ebx = (e->ebx & 0x00ffffff) | (index << 24);
		}
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = index;
		/* 0x40000000.. (KVM's signature and paravirtual features) pass through as KVM
		 * reports them */
	}
	return ioctl(fd, KVM_SET_CPUID2, mine) < 0 ? -errno : 0;
}

void kvm_close(struct kvm *k)
{
	free(k->cpuid);
	k->cpuid = NULL;
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
}
