#!/bin/bash
# bench_startup.sh: `ufvm run hello.elf` against the KVM floor (ratio of medians), and ufvm's own RSS
#   The floor (bench/floor.c) is linked like ufvm, statically; the dynamically linked
#   floor runs beside them for reference.
#
# usage: bench/bench_startup.sh BUILD_DIR
#   BENCH_ROUNDS (10), BENCH_RUNS (10), BENCH_WARMUP (3): hyperfine is run BENCH_ROUNDS
#   times on both commands, BENCH_RUNS runs each, the order swapped every round, so that
#   drift on a noisy shared machine hits both sides alike; medians are over all runs.
#   BENCH_WAIT_IDLE (30): seconds to wait for the machine to be idle before measuring.
#   BENCH_UFVM_ARGS (""): extra `ufvm run` options for every run, to compare
#   configurations, e.g. BENCH_UFVM_ARGS="--pager off".
# Exit status: 0 every target met, 1 a target missed, 2 could not measure, 77 skipped.
set -u

BUILD=${1:-build}
ROUNDS=${BENCH_ROUNDS:-10}
RUNS=${BENCH_RUNS:-10}
WARMUP=${BENCH_WARMUP:-3}
UFVM_ARGS=${BENCH_UFVM_ARGS:-}
read -ra UFVM_ARGV <<<"$UFVM_ARGS"
TARGET_RATIO=1.5
TARGET_ANON_KIB=2048

UFVM=$BUILD/vmm/ufvm
FLOOR=$BUILD/bench/floor            # linked statically, like ufvm
FLOOR_DYN=$BUILD/bench/floor-dynamic # for reference: what a dynamic loader adds
HELLO=$BUILD/guests/hello.elf
MEMTOUCH=$BUILD/guests/memtouch.elf
HOTCOLD=$BUILD/guests/hotcold.elf
SMP=$BUILD/guests/smp.elf

say() { echo "bench_startup: $*"; }
skip() { say "SKIP: $*"; exit 77; }
die() { say "ERROR: $*" >&2; exit 2; }

for f in "$UFVM" "$FLOOR" "$FLOOR_DYN" "$HELLO" "$MEMTOUCH" "$HOTCOLD" "$SMP"; do
	[ -e "$f" ] || die "$f: missing (build first: ninja -C $BUILD)"
done
[ -c /dev/kvm ] || skip "/dev/kvm: no such device (needs a host with KVM)"
{ [ -r /dev/kvm ] && [ -w /dev/kvm ]; } || skip "/dev/kvm: not accessible (run as root or join group kvm)"
command -v python3 >/dev/null || die "python3 is needed to merge hyperfine's JSON (apt-get install python3)"

if ! command -v hyperfine >/dev/null; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		say "hyperfine missing: installing it with apt-get"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q hyperfine >/dev/null 2>&1 ||
			{ apt-get update -q >/dev/null 2>&1 &&
			  DEBIAN_FRONTEND=noninteractive apt-get install -y -q hyperfine >/dev/null 2>&1; }
	fi
	command -v hyperfine >/dev/null ||
		skip "hyperfine: not installed and could not be installed (apt-get install hyperfine)"
fi

# busy_pct: share of all CPUs busy over the next 0.5 s, from /proc/stat
busy_pct() {
	local u1 n1 s1 i1 w1 q1 sq1 st1 u2 n2 s2 i2 w2 q2 sq2 st2 busy idle
	read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ </proc/stat
	sleep 0.5
	read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ </proc/stat
	busy=$(((u2 + n2 + s2 + q2 + sq2 + st2) - (u1 + n1 + s1 + q1 + sq1 + st1)))
	idle=$(((i2 + w2) - (i1 + w1)))
	echo $((100 * busy / (busy + idle + 1)))
}

# Other jobs on the machine skew the ratio (see README.md): wait a little for quiet.
WAIT_IDLE=${BENCH_WAIT_IDLE:-30}
busy=$(busy_pct)
if [ "$busy" -gt 20 ] && [ "$WAIT_IDLE" -gt 0 ]; then
	say "machine busy ($busy% CPU): waiting up to ${WAIT_IDLE}s for it to quiet down"
	end=$((SECONDS + WAIT_IDLE))
	while [ "$busy" -gt 20 ] && [ "$SECONDS" -lt "$end" ]; do busy=$(busy_pct); done
fi
[ "$busy" -le 20 ] ||
	say "WARNING: machine busy ($busy% CPU before the run): the figures below are unreliable"

TMP=$(mktemp -d /tmp/ufvm-bench-startup.XXXXXX) || die "mktemp failed"
trap 'rm -rf "$TMP"' EXIT

# 1. start-up: both commands in every hyperfine run, order alternating between rounds
say "start-up: $ROUNDS rounds x $RUNS runs of each command (warmup $WARMUP), order alternating"
for r in $(seq 1 "$ROUNDS"); do
	a=(-n floor "$FLOOR")
	b=(-n ufvm "$UFVM run ${UFVM_ARGS:+$UFVM_ARGS }$HELLO")
	c=(-n floor-dynamic "$FLOOR_DYN")
	if [ $((r % 2)) -eq 0 ]; then order=("${b[@]}" "${a[@]}" "${c[@]}"); else order=("${c[@]}" "${a[@]}" "${b[@]}"); fi
	hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" \
		--export-json "$TMP/round$r.json" "${order[@]}" >"$TMP/round$r.log" 2>&1 ||
		{ cat "$TMP/round$r.log" >&2; die "hyperfine round $r failed (does '${b[3]}' exit 0?)"; }
done

python3 - "$TARGET_RATIO" "${UFVM_ARGS:+$UFVM_ARGS }" "$TMP"/round*.json >"$TMP/startup.out" <<'PY' || die "could not merge hyperfine's results"
import json, statistics, sys

target, args = float(sys.argv[1]), sys.argv[2]
times = {"floor": [], "ufvm": [], "floor-dynamic": []}
ratios = []
for path in sys.argv[3:]:
    res = {r["command"]: r for r in json.load(open(path))["results"]}
    for name in times:
        times[name] += res[name]["times"]
    ratios.append(res["ufvm"]["median"] / res["floor"]["median"])
med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
ratio = med["ufvm"] / med["floor"]
print("start-up: floor median %.3f ms, ufvm run %shello.elf median %.3f ms (%d runs each)"
      % (med["floor"], args, med["ufvm"], len(times["ufvm"])))
print("start-up: per-round ratios %.2f .. %.2f (median %.2f)"
      % (min(ratios), max(ratios), statistics.median(ratios)))
print("start-up: for reference, the floor linked dynamically: median %.3f ms, ufvm / it %.2f"
      % (med["floor-dynamic"], med["ufvm"] / med["floor-dynamic"]))
print("start-up: ratio ufvm/floor %.2f (target <= %.1f): %s"
      % (ratio, target, "PASS" if ratio <= target else "MISS"))
PY
sed 's/^/bench_startup: /' "$TMP/startup.out"
grep -q ': PASS$' "$TMP/startup.out"
startup_ok=$?

# 2. ufvm's own memory: guest RAM is a memfd (RssShmem), everything ufvm adds is RssAnon
# rss_sample NAME ARGS...: run ufvm in the background, sample its status until it exits.
max_anon=0
rss_sample() {
	local name=$1 pid k v anon=0 shmem=0 file=0 n=0 a s f comm state st
	shift
	"$UFVM" run "${UFVM_ARGV[@]}" "$@" >"$TMP/$name.out" 2>&1 &
	pid=$!
	while [ -r "/proc/$pid/status" ]; do
		a=0 s=0 f=0 comm='' state=''
		while read -r k v _; do
			case $k in
			Name:) comm=$v ;;
			State:) state=$v ;;
			RssAnon:) a=$v ;;
			RssShmem:) s=$v ;;
			RssFile:) f=$v ;;
			esac
		done <"/proc/$pid/status" 2>/dev/null
		case $state in '' | Z) break ;; esac # exited (or failed to exec)
		[ "$comm" = ufvm ] || { sleep 0.001; continue; } # the forked shell, not yet exec'd
		n=$((n + 1))
		[ "$a" -gt "$anon" ] && anon=$a
		[ "$s" -gt "$shmem" ] && shmem=$s
		[ "$f" -gt "$file" ] && file=$f
		sleep 0.01
	done
	wait "$pid"
	st=$?
	[ "$st" -eq 0 ] || { cat "$TMP/$name.out" >&2; die "ufvm run $* failed (status $st)"; }
	[ "$n" -ge 3 ] || die "$name ended after $n samples: too short to sample, make it run longer"
	say "$(printf 'rss: %-8s  RssAnon max %5d KiB, RssShmem max %6d KiB, RssFile max %5d KiB (%d samples)' \
		"$name" "$anon" "$shmem" "$file" "$n")"
	[ "$anon" -gt "$max_anon" ] && max_anon=$anon
}
say "rss: sampling /proc/PID/status every 10 ms while guests run"
rss_sample memtouch --mem 128M --cmdline "mib=64 passes=20" "$MEMTOUCH"
rss_sample hotcold --mem 128M --cmdline "hot=16 cold=64 rounds=40" "$HOTCOLD"
rss_sample smp-2cpu --cpus 2 --mem 128M --cmdline "mib=64 iters=10000000" "$SMP"
# the largest guest RAM ufvm supports: per-GiB tables show up here
rss_sample mem-64G --mem 64G --cmdline "mib=64 passes=20" "$MEMTOUCH"
if [ "$max_anon" -le "$TARGET_ANON_KIB" ]; then rss_verdict=PASS; else rss_verdict=MISS; fi
say "$(printf 'rss: ufvm RssAnon max %d KiB = %.2f MiB (target <= 2 MiB): %s' \
	"$max_anon" "$(echo "$max_anon" | awk '{print $1 / 1024}')" "$rss_verdict")"

[ "$startup_ok" -eq 0 ] && [ "$rss_verdict" = PASS ] && exit 0
exit 1
