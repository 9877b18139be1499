# Makefile: a thin wrapper over Meson. `make run` and `make test` work on a fresh Debian 12.
BUILD ?= build
MESON_OPTS ?=

.PHONY: all setup build run test bench fuzz clean

all: build

setup:
	@tools/setup.sh

$(BUILD)/build.ninja:
	@echo "==> configuring $(BUILD) with meson"
	meson setup $(MESON_OPTS) $(BUILD)

build: setup $(BUILD)/build.ninja
	@echo "==> building"
	ninja -C $(BUILD)

run: build
	@tools/demo.sh $(BUILD)

# the seeds' two-VM swap demo under the memory pool (tools/demo_swap.py, pool/README.md)
# LINUX=1: the small VM runs Debian's kernel, inside the SVM lane (a stock kernel needs
# VMX/SVM); sizes scaled down there, swap on a scratch disk of L1's (not its tmpfs); the
# picture and logs land in OUT (build/demo-swap-linux)
demo-swap: build
ifeq ($(LINUX),)
	@python3 tools/demo_swap.py $(BUILD) $(if $(OUT),--out $(OUT))
else
	@tools/lane/lane.py prepare svm
	@mkdir -p $(or $(OUT),$(BUILD)/demo-swap-linux)
	@nice -n 10 tools/lane/lane.py exec svm -t 3000 --scratch 2048 \
		--out $(or $(OUT),$(BUILD)/demo-swap-linux) -- \
		python3 tools/demo_swap.py $(BUILD) --linux --lane --out /lane-out
endif

test: build
	@tools/setup.sh test
	@tools/test.sh $(BUILD)

bench: build
	@bench/run.sh $(BUILD)

# AFL++ on every harness of tests/fuzz/ for FUZZ_TIME seconds each (default 60), in build-fuzz
fuzz:
	@tools/setup.sh fuzz
	@tools/fuzz.sh

clean:
	rm -rf $(BUILD) build-fuzz
