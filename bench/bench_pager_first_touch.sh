#!/bin/sh
# bench_pager_first_touch.sh: the pager's first-touch benchmark (bench/pager_bench.py, bench/README.md)
exec python3 "$(dirname "$0")/pager_bench.py" "${1:-build}" first-touch
