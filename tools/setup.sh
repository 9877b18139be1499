#!/bin/sh
# setup.sh: install what ufvm needs to build and test on Debian 12, if it is missing;
# `setup.sh fuzz` adds what `make fuzz` needs (AFL++ and its clang).
set -eu

# qemu-system-x86 and busybox-static: the SVM test lane (tools/lane/), which also
# downloads Debian's kernel package (apt-get download, never installed) into a cache
PKGS="meson ninja-build gcc libc6-dev pkg-config liburing-dev libxxhash-dev libmemcached-dev memcached libjansson-dev libpng-dev python3 util-linux
qemu-system-x86 busybox-static"
PKGS="$PKGS acpica-tools" # iasl: tests/test_acpi.c reads the ACPI tables back
PKGS="$PKGS libfuse3-dev"  # the stop tests' slow and stalling swap device (tests/fuse_stall.c)
if [ "${1:-}" = fuzz ]; then
	PKGS="$PKGS afl++ clang"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "==> set-up: all build dependencies present"
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
