#!/bin/sh
# e2e_nokvm.sh: without /dev/kvm, ufvm says so in one line naming the device, exit status 2.
# Hides /dev/kvm in a private mount namespace (needs root and unshare).
UFVM=$1
GUEST=$2
if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null; then
	echo "skip: needs root and unshare to hide /dev/kvm in a mount namespace"
	exit 77
fi
out=$(unshare -m sh -c "mount -t tmpfs none /dev && exec '$UFVM' run '$GUEST'" 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 2 ]; then
	echo "FAIL: expected exit status 2, got $rc"
	exit 1
fi
case "$out" in
*"/dev/kvm"*"No such file or directory"*) ;;
*) echo "FAIL: message does not name /dev/kvm and the reason"; exit 1 ;;
esac
[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || { echo "FAIL: more than one line"; exit 1; }
echo "ok"
