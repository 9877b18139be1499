#!/bin/sh
# setup.sh: install what ufvm needs to build and test on Debian 12, if it is missing;
# `setup.sh test` adds what the test lanes need, `setup.sh fuzz` what `make fuzz` needs.
set -eu

PKGS="meson ninja-build gcc libc6-dev pkg-config liburing-dev libxxhash-dev libmemcached-dev memcached libjansson-dev libpng-dev python3 util-linux"
PKGS="$PKGS acpica-tools" # iasl: tests/test_acpi.c reads the ACPI tables back
PKGS="$PKGS libfuse3-dev"  # the stop tests' slow and stalling swap device (tests/fuse_stall.c)
case "${1:-}" in
fuzz) PKGS="$PKGS afl++ clang" ;;
# the test lanes (tools/lane/): QEMU for SVM, Bochs (its term display, BIOS, VGA BIOS)
# for VMX, busybox for L1's init; binutils builds the ROM that boots L1 in Bochs
test) PKGS="$PKGS qemu-system-x86 bochs bochs-term bochsbios vgabios busybox-static binutils" ;;
esac

# Debian's kernel for the lanes' L1: downloaded (never installed) into a cache, now,
# so that a download problem shows here; the lanes' tests say why they skip without it.
lane_kernel() {
	[ "${1:-}" = test ] || return 0
	tools/lane/lane.py prepare svm ||
		echo "ufvm set-up: no kernel for the test lanes (their tests will skip and say why)" >&2
}

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "==> set-up: all build dependencies present"
	lane_kernel "${1:-}"
	exit 0
fi
echo "==> set-up: installing$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "ufvm set-up: need root (or sudo) to install:$missing" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -q || ! $SUDO apt-get install -y -q --no-install-recommends $missing; then
	echo "ufvm set-up: could not install:$missing (check apt sources and network)" >&2
	exit 1
fi
lane_kernel "${1:-}"
