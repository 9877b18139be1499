#!/bin/sh
# bench_linux.sh: Debian's kernel under a memory limit, ufvm's pager against the kernel's own swap,
# and its boot time against QEMU's microvm (bench/linux_bench.py). Needs hardware KVM: on PVM
# hosts it skips (77); run it in the svm lane.
exec python3 "$(dirname "$0")/linux_bench.py" "${1:-build}"
