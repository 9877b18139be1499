#!/bin/sh
# bench_pager_scaling.sh: the pager's scaling benchmark (bench/pager_bench.py, bench/README.md)
exec python3 "$(dirname "$0")/pager_bench.py" "${1:-build}" scaling
