#!/bin/sh
# bench_access_overhead.sh: access tracking, see bench/README.md ("Access tracking")
exec python3 "$(dirname "$0")/access_bench.py" "${1:-build}" overhead
