#!/bin/sh
# bench_pager_swapall.sh: the pager's swapall benchmark (bench/pager_bench.py, bench/README.md)
exec python3 "$(dirname "$0")/pager_bench.py" "${1:-build}" swapall
