#!/bin/sh
# demo.sh: the main demo behind `make run`: guests under ufvm, then guest RAM under pressure.
BUILD=${1:-build}
UFVM="$BUILD/vmm/ufvm"
G="$BUILD/guests"

step() { printf '\n==> %s\n    $ %s\n' "$1" "$2"; }

if [ ! -c /dev/kvm ]; then
	echo "ufvm demo: /dev/kvm is missing: run on a host with KVM (and as root or in group kvm)" >&2
	exit 2
fi

step "hello: a guest at CPL 3 on 2 vCPUs" "$UFVM run --cpus 2 --cmdline exit=0 $G/hello.elf"
"$UFVM" run --cpus 2 --cmdline "exit=0" "$G/hello.elf" || exit $?

step "memtouch: write and verify 128 MiB of guest RAM" \
	"$UFVM run --mem 256M --cmdline 'mib=128' $G/memtouch.elf"
"$UFVM" run --mem 256M --cmdline "mib=128" "$G/memtouch.elf" || exit $?

if "$UFVM" --help | grep -q -- --mem-limit; then
	step "overcommit: 256 MiB of guest data under a 64 MiB limit, swapped by ufvm itself" \
		"$UFVM run --mem 512M --mem-limit 64M --stats --cmdline 'mib=256' $G/memtouch.elf"
	"$UFVM" run --mem 512M --mem-limit 64M --stats --cmdline "mib=256" "$G/memtouch.elf" ||
		exit $?
fi
if "$UFVM" --help | grep -q -- --swapout-at-mark; then
	step "whole-VM swap-out when the guest marks 'write-done', then swap-in on demand" \
		"$UFVM run --mem 256M --swapout-at-mark write-done --stats -v --cmdline 'mib=128' $G/memtouch.elf"
	"$UFVM" run --mem 256M --swapout-at-mark write-done --stats -v \
		--cmdline "mib=128" "$G/memtouch.elf" || exit $?
fi
if "$UFVM" --help | grep -q -- --api && [ -x "$BUILD/tools/ufvmctl" ]; then
	CTL="$BUILD/tools/ufvmctl"
	SOCK=$(mktemp -u /tmp/ufvm-demo.XXXXXX.sock)
	step "the control socket: a running guest swapped out and back in through ufvmctl" \
		"$UFVM run --mem 256M --api $SOCK --cmdline 'hot=32 cold=96 rounds=60000' $G/hotcold.elf &"
	"$UFVM" run --mem 256M --api "$SOCK" --cmdline "hot=32 cold=96 rounds=60000" \
		"$G/hotcold.elf" >/dev/null &
	vm=$!
	i=0
	while [ ! -S "$SOCK" ] && [ $i -lt 100 ] && kill -0 $vm 2>/dev/null; do
		sleep 0.1
		i=$((i + 1))
	done
	sleep 1 # let the guest write its hot and cold sets
	PNG="${TMPDIR:-/tmp}/ufvm-heatmap.png"
	"$CTL" "$SOCK" heatmap "$PNG" 5 >"$PNG.log" 2>&1 & # a picture of what follows
	hm=$!
	for c in stats "top -n 2" swapout stats swapin stats; do
		printf '    $ ufvmctl SOCKET %s\n' "$c"
		# shellcheck disable=SC2086 # $c is a command and its arguments
		"$CTL" "$SOCK" $c 2>&1 | sed 's/^/      /'
		[ "$c" != swapout ] || sleep 1 # the guest faults its hot set back in
	done
	wait $hm
	printf '    $ ufvmctl SOCKET heatmap %s 5   (in the background, meanwhile)\n' "$PNG"
	sed 's/^/      /' "$PNG.log"
	rm -f "$PNG.log"
	"$CTL" "$SOCK" stop 0 >/dev/null 2>&1 || kill $vm 2>/dev/null
	wait $vm || exit $?
fi
printf '\n==> demo done\n'
