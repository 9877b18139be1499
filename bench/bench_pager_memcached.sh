#!/bin/sh
# bench_pager_memcached.sh: swap to memcached against swap to a file (bench/pager_bench.py memcached)
exec python3 "$(dirname "$0")/pager_bench.py" "${1:-build}" memcached
