"""svm.py: L1 under QEMU's TCG with `-cpu EPYC-Rome-v2`, which emulates AMD SVM (with NPT): kvm-amd.

The host's root is shared read-only over virtio-9p under a tmpfs overlay, so the build
directory and the host's Python run inside unchanged; /lane-out is a second, writable 9p
share: the host's out directory itself.
"""
import os
import subprocess
import tempfile
import threading
import time

import l1

EMULATOR = 'qemu-system-x86_64'
PACKAGE = 'qemu-system-x86'
NEEDS = ()
MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay', 'loop', 'zram', 'dm-mod', 'fuse',
           'virtio_blk', 'crc32c_generic', 'ext4']  # the last three: the scratch disk
# how much slower than the host tests run here (UFVM_TEST_SLOWDOWN: tests scale waits)
SLOWDOWN = 10
# L1s side by side, one vCPU each (two vCPUs in one L1 gave soft lockups under load): the
# tests' waits leave an emulator idle much of the time, and the host has two cores
JOBS = 2
# the runner's heartbeat (l1.Watchdog): the results share is live here, so the host sees
# a wedged L1 (vmx's comes back only at the end, on the console)
WATCHDOG = True
# L1's CPU model (UFVM_LANE_CPU overrides). An AMD EPYC Rome has SVM with NPT as `max` has,
# and fewer features to emulate: the stock kernel's devices case ran in a median 39.5 s
# against 50.2 s under `max`, side by side, and never wedged QEMU in 36 runs, where `max`
# wedged it twice in 29 (README.md: the lane replaces a wedged L1 either way)
CPU = 'EPYC-Rome-v2'
MEM_MIB = 6144  # tests need up to ~1 GiB at once; the rest is the tmpfs overlay's

ROOT_SETUP = r'''mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out || fail "cannot mount the results share"
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host || fail "cannot mount the host root (9p)"
mount -t tmpfs -o size=70% tmp /tmp
mkdir -p /tmp/up /tmp/work
mount -t overlay -o lowerdir=/host,upperdir=/tmp/up,workdir=/tmp/work ov /newroot || fail "cannot mount the overlay"'''
DONE = 'true'


def initrd(verbose):
    vmlinuz, mods = l1.kernel('svm', verbose)
    path = l1.cache_dir() / ('initrd-svm-%s.cpio' % vmlinuz.name)
    data = l1.newc(l1.base_entries('svm', mods))
    if not path.exists() or path.read_bytes() != data:
        tmp = path.with_suffix('.tmp%d-%d' % (os.getpid(), threading.get_ident()))
        tmp.write_bytes(data)
        tmp.rename(path)
    return vmlinuz, path


def argv(out, interactive, verbose, scratch=None, monitor=None):
    vmlinuz, rd = initrd(verbose)
    mon = ['-monitor', 'unix:%s,server=on,wait=off' % monitor] if monitor else []
    disk = ['-drive', 'file=%s,if=none,id=scratch,format=raw,cache=unsafe,discard=unmap' % scratch,
            '-device', 'virtio-blk-pci,drive=scratch'] if scratch else []
    return ['qemu-system-x86_64', '-accel', 'tcg', '-cpu', os.environ.get('UFVM_LANE_CPU', CPU),
            '-smp', '1', '-m', str(MEM_MIB), '-nodefaults', '-no-user-config',
            '-display', 'none', '-serial', 'mon:stdio' if interactive else 'stdio',
            '-no-reboot', '-kernel', str(vmlinuz), '-initrd', str(rd),
            '-append', 'console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off',
            '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,'
                       'multidevs=remap',
            '-virtfs', 'local,path=%s,mount_tag=out,security_model=none' % out] + disk + mon


def info():
    return '%s under QEMU TCG -cpu %s (AMD SVM, kvm-amd)' % (l1.kernel('svm')[0].name,
                                                            os.environ.get('UFVM_LANE_CPU', CPU))


def boot(out, timeout, console, quiet, stage, cwd, scratch=None):
    """Run L1 to its end; returns (what L1 was, '' or why it broke). scratch: a disk image
    for L1's /scratch (l1.execute)."""
    # the human monitor, for the watchdog's account of a wedged L1 (out is L1's share:
    # the socket lives elsewhere)
    with tempfile.TemporaryDirectory(prefix='ufvm-lane-mon-') as d:
        mon = os.path.join(d, 'monitor.sock')
        p = subprocess.Popen(argv(out, False, not quiet, scratch, mon), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ok = l1.pump(p, time.monotonic() + timeout, console, quiet,
                     marks=l1.CpuMarks(p.pid, out),
                     stalled=l1.Watchdog(p.pid, out, mon, console))
    if ok is False:
        return info(), 'L1 timed out after %d s' % timeout
    return info(), ok if isinstance(ok, str) else ''


def interactive(d, stage, cwd):
    return subprocess.call(argv(d, True, True))
