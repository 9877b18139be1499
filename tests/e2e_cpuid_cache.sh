#!/bin/sh
# e2e_cpuid_cache.sh: the KVM_GET_SUPPORTED_CPUID cache (vmm/cpuid_cache.c) is written on a
# miss, used on a hit, and a damaged or foreign file is ignored and replaced, never trusted.
UFVM=$1
GUEST=$2
[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "skip: no usable /dev/kvm"; exit 77; }
DIR=$(mktemp -d /tmp/ufvm-cpuid-test.XXXXXX) || exit 2
trap 'rm -rf "$DIR"' EXIT
C=$DIR/cpuid
fail() { echo "FAIL: $*"; exit 1; }
# valid: the key of a good file and its size (entries differ in the APIC ID of the CPU that asked)
valid() { [ "$(wc -c <"$C")" -eq "$(wc -c <"$DIR/good")" ] && cmp -s -n 88 "$C" "$DIR/good"; }
run() { # run LABEL: hello must run and greet
	out=$(UFVM_CPUID_CACHE=$C "$UFVM" run "$GUEST" 2>&1) || fail "$1: ufvm exit status $?: $out"
	case "$out" in *"Hello from ufvm guest"*) ;; *) fail "$1: no greeting: $out" ;; esac
}

run "miss"
[ -s "$C" ] || fail "miss: no cache file written"
cp "$C" "$DIR/good"
run "hit"
cmp -s "$C" "$DIR/good" || fail "hit: the cache file changed"

# damaged: garbage, truncated entries, a key from another boot; each ignored, then replaced
head -c 3088 /dev/urandom >"$C"
run "garbage"
valid || fail "garbage: not replaced by a good file"
head -c 200 "$DIR/good" >"$C"
run "truncated"
valid || fail "truncated: not replaced by a good file"
{ head -c 8 "$DIR/good"; printf '00000000-0000-0000-0000-000000000000\n\0\0\0'; tail -c +49 "$DIR/good"; } >"$C"
run "other boot"
valid || fail "other boot: not replaced by a good file"

# a symlink is not followed; off means no file at all
rm -f "$C"
ln -s "$DIR/good" "$C"
run "symlink"
rm -f "$C"
out=$(UFVM_CPUID_CACHE=off "$UFVM" run "$GUEST" 2>&1) || fail "off: ufvm exit status $?: $out"
[ ! -e "$C" ] && [ ! -e off ] || fail "off: a cache file was written"
echo "ok"
