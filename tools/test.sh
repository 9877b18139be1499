#!/bin/sh
# test.sh: run the whole suite and close with one plain "N passed, N failed, N skipped" line.
BUILD=${1:-build}
echo "==> running the test suite (meson test)"
meson test -C "$BUILD" --print-errorlogs --num-processes 2
rc=$?
python3 - "$BUILD/meson-logs/testlog.json" <<'PY'
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
print("%d passed, %d failed, %d skipped" % (counts["OK"], counts["FAIL"], counts["SKIP"]))
PY
exit $rc
