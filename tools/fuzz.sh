#!/bin/sh
# fuzz.sh: build the fuzz harnesses (tests/fuzz/) with AFL++'s compiler and ASan+UBSan in
# build-fuzz, run each under afl-fuzz for FUZZ_TIME seconds (default 60), one at a time,
# and print executions, coverage and findings per harness (docs/fuzzing.md).
# FUZZ_HARNESSES="elf control" picks harnesses; FUZZ_OUT keeps the findings elsewhere;
# FUZZ_RESUME=1 goes on from the previous run's corpus instead of starting from the seeds.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD:-$SRC/build-fuzz}
OUT=${FUZZ_OUT:-$BUILD/findings}
TIME=${FUZZ_TIME:-60}
HARNESSES=${FUZZ_HARNESSES:-elf kernel hypercall control virtq}

CC_AFL=""
for c in afl-clang-fast afl-cc; do
	if command -v "$c" >/dev/null 2>&1; then
		CC_AFL=$c
		break
	fi
done
if [ -z "$CC_AFL" ] || ! command -v afl-fuzz >/dev/null 2>&1; then
	echo "fuzz: AFL++ is not installed (afl-clang-fast/afl-cc, afl-fuzz): run tools/setup.sh fuzz" >&2
	exit 1
fi
case $TIME in
'' | *[!0-9]*)
	echo "fuzz: FUZZ_TIME=$TIME: not a number of seconds" >&2
	exit 2
	;;
esac

# Instrumented and sanitized (kept in the build's options, so a plain `ninja -C build-fuzz`
# builds the same): a memory error or UB aborts the input that caused it. Only the
# libraries and harnesses are built (-Dfuzz=true): afl-cc would break the guests.
export AFL_QUIET=1
if [ ! -f "$BUILD/build.ninja" ]; then
	echo "==> configuring $BUILD with $CC_AFL (ASan, UBSan)"
	CC=$CC_AFL meson setup "$BUILD" "$SRC" -Dfuzz=true -Dwerror=false \
		-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized \
		-Dc_args=-fno-sanitize-recover=all >/dev/null || exit 1
fi
ninja -C "$BUILD" || exit 1

# An input is a hang after 3 s: none needs more than milliseconds, and shared machines
# under load (2 cores, load 15-25 here) made 1 s give false ones.
# afl-fuzz's own checks that do not hold on shared CI machines: CPU frequency governor,
# core dumps piped to a handler, binding to a free core (others may use them all).
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
export AFL_NO_UI=1
export ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1
mkdir -p "$OUT"
printf '%-10s %12s %9s %8s %9s %8s %6s\n' harness execs execs/s corpus coverage crashes hangs
rc=0
for h in $HARNESSES; do
	exe="$BUILD/tests/fuzz/fuzz_$h"
	dict="$SRC/tests/fuzz/$h/dict"
	if [ ! -x "$exe" ]; then
		echo "fuzz: no harness $h ($exe)" >&2
		rc=1
		continue
	fi
	if [ "${FUZZ_RESUME:-0}" = 1 ] && [ -d "$OUT/$h/default/queue" ]; then
		set -- -i - -o "$OUT/$h" -V "$TIME" -t 3000
	else
		rm -rf "$OUT/$h"
		set -- -i "$SRC/tests/fuzz/$h/seeds" -o "$OUT/$h" -V "$TIME" -t 3000
	fi
	[ -f "$dict" ] && set -- "$@" -x "$dict"
	nice -n 10 afl-fuzz "$@" -- "$exe" >"$OUT/$h.log" 2>&1
	stats="$OUT/$h/default/fuzzer_stats"
	if [ ! -f "$stats" ]; then
		echo "fuzz: $h: afl-fuzz did not start (see $OUT/$h.log):" >&2
		tail -5 "$OUT/$h.log" >&2
		rc=1
		continue
	fi
	get() { sed -n "s/^$1 *: *//p" "$stats"; }
	printf '%-10s %12s %9s %8s %9s %8s %6s\n' "$h" "$(get execs_done)" "$(get execs_per_sec)" \
		"$(get corpus_count)" "$(get bitmap_cvg)" "$(get saved_crashes)" "$(get saved_hangs)"
	if [ "$(get saved_crashes)" != 0 ] || [ "$(get saved_hangs)" != 0 ]; then
		rc=1
	fi
done
if [ $rc -ne 0 ]; then
	echo "fuzz: findings in $OUT/<harness>/default/{crashes,hangs}: replay one with" \
		"$BUILD/tests/fuzz/fuzz_<harness> FILE, fix it and keep it in tests/fuzz/<harness>/regress/"
fi
exit $rc
