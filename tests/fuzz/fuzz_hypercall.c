/* fuzz_hypercall.c: hypercall decoding and argument checks (vmm/hypercall.c) without KVM: a
 * hostile guest's RAM and port I/O exits, fed through hc_decode_io and hc_dispatch */
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/vmm.h"

#define FUZZ_RAM (2ULL << 20)
#define NCPUS	 2

static struct mm_mem mem = {.memfd = -1};
static struct vmm_opts opts = {.cpus = NCPUS, .verbose = 1};
static struct vm vm;
/* a kvm_run page and the I/O data page KVM puts after it (KVM_PIO_PAGE_OFFSET 1) */
static union {
	struct kvm_run run;
	uint8_t page[2][4096];
} exit_pages __attribute__((aligned(4096)));
static unsigned marks;
static bool halted[NCPUS]; /* a vCPU that halted has left its run loop: no more calls */

static void on_mark(struct vm *m, unsigned vcpu, const char *label, void *ctx)
{
	size_t n = strlen(label);

	FUZZ_CHECK(m == &vm && vcpu < NCPUS && ctx == &marks);
	FUZZ_CHECK(n >= 1 && n <= UFVM_MARK_MAX);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(label[i] >= 0x20 && label[i] <= 0x7e);
	marks++;
}

void fuzz_init(void)
{
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

	/* console writes go nowhere; stderr keeps the VMM's messages */
	FUZZ_NEED(null >= 0 && dup2(null, STDOUT_FILENO) == STDOUT_FILENO, "/dev/null as stdout");
	close(null);
	fuzz_mem_create(&mem, FUZZ_RAM);
	vm.mem = &mem;
	vm.opts = &opts;
	vm.ncpus = NCPUS;
	vm.fd = -1;
	vm.stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); /* vm_stop writes it */
	FUZZ_NEED(vm.stop_efd >= 0, "an eventfd");
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	for (unsigned i = 0; i < NCPUS; i++)
		vm.vcpus[i] = (struct vcpu){.vm = &vm, .index = i, .fd = -1};
	vm.on_mark = on_mark;
	vm.on_mark_ctx = &marks;
}

/* The argument struct as the guest left it, read before the call (false: not in RAM). */
static bool peek(uint32_t gpa, void *a, size_t n)
{
	return mm_copy_from_guest(&mem, a, gpa, n) == 0;
}

static int64_t ret_at(uint32_t gpa, size_t off)
{
	int64_t r;

	FUZZ_CHECK(mm_copy_from_guest(&mem, &r, gpa + off, sizeof(r)) == 0);
	return r;
}

/* One hypercall, and what it must have done: each result is derived here from the
 * guest's own bytes, independently of hypercall.c. */
static void call(struct vcpu *v, uint16_t port, uint32_t gpa)
{
	unsigned nr = (unsigned)(port - UFVM_HC_PORT_BASE), marks_before = marks;
	union {
		struct ufvm_hc_write w;
		struct ufvm_hc_exit e;
		struct ufvm_hc_clock c;
		struct ufvm_hc_mark m;
	} a;
	bool in_ram = false, going;

	switch (nr) {
	case UFVM_HC_WRITE:
		in_ram = peek(gpa, &a.w, sizeof(a.w));
		break;
	case UFVM_HC_EXIT:
		in_ram = peek(gpa, &a.e, sizeof(a.e));
		break;
	case UFVM_HC_CLOCK:
		in_ram = peek(gpa, &a.c, sizeof(a.c));
		break;
	case UFVM_HC_MARK:
		in_ram = peek(gpa, &a.m, sizeof(a.m));
		break;
	default:
		break;
	}
	going = hc_dispatch(v, port, gpa);
	if (nr != UFVM_HC_HALT && nr >= UFVM_HC_WRITE && nr < UFVM_HC_MAX && !in_ram) {
		/* an argument outside guest RAM stops the VM as bad input */
		FUZZ_CHECK(!going && atomic_load(&vm.stopping) && vm.exit_status == VMM_EXIT_USAGE);
		return;
	}
	switch (nr) {
	case UFVM_HC_WRITE:
		FUZZ_CHECK(going);
		FUZZ_CHECK(ret_at(gpa, offsetof(struct ufvm_hc_write, ret)) ==
			   (a.w.len > UFVM_WRITE_MAX	      ? -UFVM_EINVAL
			    : !mm_gpa(&mem, a.w.buf, a.w.len) ? -UFVM_EFAULT
							      : (int64_t)a.w.len));
		break;
	case UFVM_HC_EXIT:
		FUZZ_CHECK(!going && atomic_load(&vm.stopping) &&
			   vm.exit_status == (int)(a.e.status & 255));
		break;
	case UFVM_HC_CLOCK:
		FUZZ_CHECK(going && ret_at(gpa, offsetof(struct ufvm_hc_clock, ret)) == 0);
		break;
	case UFVM_HC_MARK: {
		bool ok =
		    a.m.len >= 1 && a.m.len <= UFVM_MARK_MAX && mm_gpa(&mem, a.m.label, a.m.len);

		FUZZ_CHECK(going && marks == marks_before + ok);
		FUZZ_CHECK(ret_at(gpa, offsetof(struct ufvm_hc_mark, ret)) ==
			   (a.m.len == 0 || a.m.len > UFVM_MARK_MAX ? -UFVM_EINVAL
			    : !ok				    ? -UFVM_EFAULT
								    : 0));
		break;
	}
	case UFVM_HC_HALT:
		halted[v->index] = true;
		FUZZ_CHECK(!going && (vm.halted < NCPUS || atomic_load(&vm.stopping)));
		break;
	default:
		FUZZ_CHECK(going);
		break;
	}
}

/* A port I/O exit as KVM reports it: only a 32-bit OUT to a hypercall port decodes. */
static void io_exit(struct vcpu *v, struct fuzz_in *in)
{
	struct kvm_run *run = &exit_pages.run;
	uint32_t gpa = 0, arg;
	bool hc;

	run->exit_reason = KVM_EXIT_IO;
	run->io.port = fuzz_u16(in);
	run->io.direction = fuzz_u8(in) & 1;
	run->io.size = fuzz_u8(in);
	run->io.count = fuzz_u8(in);
	run->io.data_offset = 4096;
	arg = fuzz_u32(in);
	memcpy(exit_pages.page[1], &arg, 4);
	hc = hc_decode_io(run, &gpa);
	FUZZ_CHECK(hc == (run->io.direction == KVM_EXIT_IO_OUT && run->io.size == 4 &&
			  run->io.count == 1 && run->io.port > UFVM_HC_PORT_BASE &&
			  run->io.port < UFVM_HC_PORT(UFVM_HC_MAX)));
	if (hc) {
		FUZZ_CHECK(gpa == arg);
		call(v, run->io.port, gpa);
	}
}

/*
 * The input is a list of steps, each a tag byte then its fields: 0 writes bytes into
 * guest RAM, 1 is a port I/O exit, 2 a hypercall by number (unchecked ports too),
 * 3 switches vCPU. It ends when the input does or the VM stops.
 */
void fuzz_one(const uint8_t *data, size_t len)
{
	struct fuzz_in in = {data, len};
	struct vcpu *v = &vm.vcpus[0];

	memset(mem.hva, 0, mem.size);
	atomic_store(&vm.stopping, false);
	vm.exit_status = 0;
	vm.halted = 0;
	memset(halted, 0, sizeof(halted));
	while (fuzz_more(&in) && !atomic_load(&vm.stopping)) {
		switch (fuzz_u8(&in) & 3) {
		case 0: {
			uint64_t gpa = fuzz_u32(&in) % mem.size;
			size_t n = fuzz_u8(&in) + 1u, got;
			const uint8_t *b = fuzz_bytes(&in, n, &got);

			if (got > mem.size - gpa)
				got = mem.size - gpa;
			memcpy(mem.hva + gpa, b, got);
			break;
		}
		case 1:
			if (!halted[v->index])
				io_exit(v, &in);
			break;
		case 2: {
			uint16_t port = (uint16_t)(UFVM_HC_PORT_BASE + fuzz_u8(&in) % 8);
			uint32_t gpa = fuzz_u32(&in);

			if (!halted[v->index])
				call(v, port, gpa);
			break;
		}
		case 3:
			v = &vm.vcpus[fuzz_u8(&in) % NCPUS];
			break;
		}
	}
}
