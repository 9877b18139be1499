#!/bin/sh
# test.sh: run the whole suite, then again under AddressSanitizer and UBSan (SANITIZE=0 skips
# that pass), and close with one plain "N passed, N failed, N skipped" line per pass.
BUILD=${1:-build}
SAN="$BUILD-san"

summary() {
	python3 - "$1/meson-logs/testlog.json" "$2" <<'PY'
import json, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0}
try:
    for line in open(sys.argv[1]):
        r = json.loads(line).get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            counts["OK"] += 1
        elif r == "SKIP":
            counts["SKIP"] += 1
        else:
            counts["FAIL"] += 1
except OSError as e:
    print("tests: no test log:", e)
    sys.exit(0)
print("%s: %d passed, %d failed, %d skipped" % (sys.argv[2], counts["OK"], counts["FAIL"], counts["SKIP"]))
PY
}

echo "==> running the test suite (meson test)"
meson test -C "$BUILD" --print-errorlogs --num-processes 2
rc=$?
summary "$BUILD" "tests"
[ "${SANITIZE:-1}" = 0 ] && exit $rc

# The same suite with every sanitizer report fatal: a guest or a request that makes ufvm
# read out of bounds, leak or hit undefined behaviour fails the test that caused it.
echo "==> the suite again under AddressSanitizer and UBSan ($SAN; SANITIZE=0 skips this)"
if [ ! -f "$SAN/build.ninja" ]; then
	meson setup "$SAN" -Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fno-sanitize-recover=all >/dev/null || exit 1
fi
ninja -C "$SAN" || exit 1
ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	meson test -C "$SAN" --print-errorlogs --num-processes 2
src=$?
summary "$SAN" "tests under sanitizers"
[ $rc -ne 0 ] && exit $rc
exit $src
