#!/bin/sh
# bench_pager_overcommit.sh: the pager's overcommit benchmark (bench/pager_bench.py, bench/README.md)
exec python3 "$(dirname "$0")/pager_bench.py" "${1:-build}" overcommit
