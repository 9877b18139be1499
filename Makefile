# Makefile: a thin wrapper over Meson. `make run` and `make test` work on a fresh Debian 12.
BUILD ?= build
MESON_OPTS ?=

.PHONY: all setup build run test bench clean

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

test: build
	@tools/test.sh $(BUILD)

bench: build
	@bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
