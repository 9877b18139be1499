#!/bin/sh
# run.sh: `make bench` — run every bench/bench_*.sh against a build dir and sum up their verdicts
#
# usage: bench/run.sh [BUILD_DIR]   (default: build)
# A benchmark script takes the build dir as $1, prints its figures and its verdict
# lines, and exits 0 (targets met), 1 (a target missed), 77 (skipped, says why) or
# anything else (could not measure). Missed targets are reported, not fatal: timings
# on shared machines are noisy. Set BENCH_STRICT=1 to make a miss fail too.
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ ! -d "$BUILD" ]; then
	echo "bench: build dir $BUILD: not found (run 'make' or 'meson setup $BUILD' first)" >&2
	exit 2
fi
BUILD=$(cd "$BUILD" && pwd)

n=0 pass=0 miss=0 skip=0 err=0
summary=""
for script in "$HERE"/bench_*.sh; do
	[ -e "$script" ] || continue
	name=$(basename "$script" .sh)
	n=$((n + 1))
	echo "==> $name"
	bash "$script" "$BUILD"
	rc=$?
	case $rc in
	0) verdict=PASS pass=$((pass + 1)) ;;
	1) verdict=MISS miss=$((miss + 1)) ;;
	77) verdict=SKIP skip=$((skip + 1)) ;;
	*) verdict="ERROR (exit $rc)" err=$((err + 1)) ;;
	esac
	summary="$summary  $name: $verdict
"
done

if [ "$n" -eq 0 ]; then
	echo "bench: no bench/bench_*.sh scripts found in $HERE" >&2
	exit 2
fi
echo "==> benchmarks: $pass met their targets, $miss missed, $skip skipped, $err failed to run"
printf '%s' "$summary"
[ "$err" -eq 0 ] || exit 1
[ "${BENCH_STRICT:-0}" = 1 ] && [ "$miss" -gt 0 ] && exit 1
exit 0
