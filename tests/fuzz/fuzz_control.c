/* fuzz_control.c: the control socket's request parser (api/control_req.c and friends): request
 * lines in, and every answer must be one valid JSON object line */
#include <jansson.h>
#include <sys/eventfd.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/vmm.h"

/*
 * The balloon (devices/virtio_balloon.c) compiled in, for its private struct: the
 * `balloon` request then reaches a real one, as with a Linux guest. Every symbol
 * virtio_balloon.o exports is defined here first, so the library's copy is not pulled.
 */
#include "devices/virtio_balloon.c"

#define FUZZ_RAM (4ULL << 20)

static struct mm_mem mem = {.memfd = -1};
static struct vmm_opts opts = {.cpus = 1};
static struct vm vm;
static struct vio_balloon balloon;
static struct vio_dev_ops balloon_ops = {.device_id = VIRTIO_ID_BALLOON, .nqueues = 4};
static struct ctl_ctx ctx;

void fuzz_init(void)
{
	fuzz_mem_create(&mem, FUZZ_RAM);
	vm.mem = &mem;
	vm.opts = &opts;
	vm.ncpus = 1;
	vm.fd = -1;
	vm.stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); /* vm_stop writes it */
	FUZZ_NEED(vm.stop_efd >= 0, "an eventfd");
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	balloon.vdev.ops = &balloon_ops;
	balloon.vdev.name = "virtio-balloon";
	balloon.vdev.priv = &balloon;
	balloon.vdev.mem = &mem;
	balloon.vdev.irq.fd = -1;
	pthread_mutex_init(&balloon.vdev.lock, NULL);
	vm.balloon = &balloon; /* a Linux guest's VM: an ELF guest's differs only in saying so */
	ctx.vm = &vm;
}

/* An answer: one line, a JSON object with a boolean "ok" (and an "error" string when
 * false), carrying the request's "id" when it had one. */
static void check_answer(const char *line, size_t len, const char *ans, size_t n)
{
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL), *a, *ok, *id;

	FUZZ_CHECK(ans != NULL);
	FUZZ_CHECK(n >= 2 && strlen(ans) == n && ans[n - 1] == '\n' && !memchr(ans, '\n', n - 1));
	a = json_loadb(ans, n - 1, JSON_REJECT_DUPLICATES, NULL);
	FUZZ_CHECK(json_is_object(a));
	ok = json_object_get(a, "ok");
	FUZZ_CHECK(json_is_boolean(ok));
	if (json_is_false(ok))
		FUZZ_CHECK(json_is_string(json_object_get(a, "error")));
	id = json_is_object(req) ? json_object_get(req, "id") : NULL;
	if (id)
		FUZZ_CHECK(json_equal(id, json_object_get(a, "id")));
	json_decref(a);
	json_decref(req);
}

/* Each line of the input is a request, answered in turn on one connection. */
void fuzz_one(const uint8_t *data, size_t len)
{
	const char *p = (const char *)data, *end = p + len;

	atomic_store(&vm.stopping, false);
	vm.exit_status = 0;
	atomic_store(&vm.pause_req, 0);
	ctx.paused = false;
	memset(&balloon.cfg, 0, sizeof(balloon.cfg));
	memset(&balloon.info, 0, sizeof(balloon.info));
	memset(balloon.info.stats, 0xff, sizeof(balloon.info.stats));
	balloon.stats_held = false;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p), outlen = 0;
		char *ans = ctl_answer(&ctx, p, n, &outlen);

		check_answer(p, n, ans, outlen);
		free(ans);
		p += n + 1;
	}
}
