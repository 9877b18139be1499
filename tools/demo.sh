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
printf '\n==> demo done\n'
