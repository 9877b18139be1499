#!/bin/sh
# bench_access_dirty.sh: access tracking, see bench/README.md ("Access tracking")
exec python3 "$(dirname "$0")/access_bench.py" "${1:-build}" dirty
