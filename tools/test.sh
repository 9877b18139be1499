#!/bin/sh
# test.sh: run the whole suite: on this host, again under AddressSanitizer and UBSan
# (SANITIZE=0 skips that pass), and inside the hardware-virtualization lanes (LANES="svm vmx"
# by default; LANES="" skips them); close with one plain "N passed, N failed, N skipped" line per pass.
BUILD=${1:-build}
SAN="$BUILD-san"

summary() {
	python3 - "$1" "$2" <<'PY'
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

# The lanes (tools/lane/) boot an emulator with hardware-style KVM and run every
# end-to-end test again inside it. They start now and run beside the host's passes, at
# nice 19: the host's tests hold timing promises (a stop ends ufvm within 2 s) that an
# emulator competing at equal weight for the two cores broke; the lanes' tests scale their
# waits by UFVM_TEST_SLOWDOWN. Their meson tests (LANE_NAME) collect the results at the end.
# The VMX lane (Bochs: one more emulator, single-threaded, ~10 minutes of a core) starts
# when the host's first pass is done (LANES_LATE): beside it, a third emulator made the
# stop-within-2-s tests miss. The sanitizer pass, which it runs beside, scales its waits
# by 2. (Started after that pass instead, it put make test at 24.8 minutes.)
LANES=${LANES-svm vmx}
LANES_LATE=${LANES_LATE-vmx}
want=$(echo $LANES | tr ' ' ',')
have=$(meson introspect --buildoptions "$BUILD" | python3 -c '
import json, sys
print(",".join(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "lanes")))')
if [ "$want" != "$have" ]; then
	meson configure "$BUILD" "-Dlanes=${want:-[]}" >/dev/null && ninja -C "$BUILD" >/dev/null || exit 1
fi
NOLANES="--no-suite svm --no-suite vmx"
start_lanes() { # $1: early or late
	for lane in $LANES; do
		case " $LANES_LATE " in
		*" $lane "*) [ "$1" = late ] || continue ;;
		*) [ "$1" = early ] || continue ;;
		esac
		echo "==> lane $lane: end-to-end tests inside an emulated L1 with $lane KVM, in the background (log: $BUILD/lane-$lane.log)"
		nice -n 19 tools/lane/lane.py run "$lane" "$BUILD" >"$BUILD/lane-$lane.log" 2>&1 &
	done
}
start_lanes early

echo "==> running the test suite (meson test)"
meson test -C "$BUILD" --print-errorlogs --num-processes 2 $NOLANES
rc=$?
summary "$BUILD/meson-logs/testlog.json" "tests"
start_lanes late

src=0
if [ "${SANITIZE:-1}" != 0 ]; then
	# The same suite with every sanitizer report fatal: a guest or a request that makes
	# ufvm read out of bounds, leak or hit undefined behaviour fails the test that caused it.
	# Sanitized code runs about twice as slow: the tests' waits and time limits scale
	# by UFVM_TEST_SLOWDOWN=2 (the pass above holds the exact ones: a stop within 2 s).
	echo "==> the suite again under AddressSanitizer and UBSan ($SAN; SANITIZE=0 skips this)"
	if [ ! -f "$SAN/build.ninja" ]; then
		meson setup "$SAN" -Db_sanitize=address,undefined -Db_lundef=false -Dlanes=[] \
			-Dc_args=-fno-sanitize-recover=all >/dev/null || exit 1
	fi
	ninja -C "$SAN" || exit 1
	UFVM_TEST_SLOWDOWN=2 ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 meson test -C "$SAN" --print-errorlogs \
		--num-processes 2 --timeout-multiplier 2 $NOLANES
	src=$?
	summary "$SAN/meson-logs/testlog.json" "tests under sanitizers"
fi

lrc=0
if [ -n "$LANES" ]; then
	echo "==> waiting for the lanes ($LANES), then their results, one meson test each"
	wait
	suites=""
	for lane in $LANES; do suites="$suites --suite $lane"; done
	meson test -C "$BUILD" --print-errorlogs --num-processes 2 $suites \
		--logbase lanes
	lrc=$?
	for lane in $LANES; do # how each lane's L1s fared: what broke, in the log's last lines
		python3 - "$BUILD/lane-$lane/summary.json" "$lane" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    print('lane %s: no summary (%s)' % (sys.argv[2], e))
    sys.exit(0)
print('lane %s: %d L1s, %.0f s, emulator CPU %.0f s%s' % (
    sys.argv[2], s.get('l1s', 0), s.get('seconds', 0), s.get('cpu_seconds', 0),
    '; L1 broke: ' + s['lane_error'] if s.get('lane_error') else ''))
for b in s.get('l1_breaks', []):
    print('lane %s: replaced an L1: %s' % (sys.argv[2], b))
for g in s.get('l1_gave_up', []):
    print('lane %s: gave up: %s' % (sys.argv[2], g))
if s.get('longest_beat_gaps'):
    print('lane %s: longest wait between two heartbeats of each L1 (s): %s' % (
        sys.argv[2], ' '.join('%.0f' % g for g in s['longest_beat_gaps'])))
PY
	done
	summary "$BUILD/meson-logs/lanes.json" "tests in the lanes ($LANES)"
fi
[ $rc -ne 0 ] && exit $rc
[ $src -ne 0 ] && exit $src
exit $lrc
