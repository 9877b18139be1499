#!/bin/sh
# bench_pool.sh: the memory pool's benchmark (bench/pool_bench.py, bench/README.md)
exec python3 "$(dirname "$0")/pool_bench.py" "${1:-build}"
