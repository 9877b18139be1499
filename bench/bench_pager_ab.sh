#!/bin/sh
# bench_pager_ab.sh: this build against BENCH_BASE, another build of ufvm (bench/pager_bench.py ab)
if [ -z "${BENCH_BASE:-}" ]; then
	echo "bench_pager_ab: skipped: set BENCH_BASE to a build dir of the ufvm to compare with"
	exit 77
fi
exec python3 "$(dirname "$0")/pager_bench.py" "${1:-build}" ab "$BENCH_BASE"
