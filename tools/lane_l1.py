"""lane_l1.py: boot L1 (a Debian kernel with real KVM, under an emulator) and run one command.

Both lanes share this: the kernel comes from Debian's linux-image-amd64 (apt-get download +
dpkg-deb -x into a cache, never installed on the host), L1's init is busybox, and the
command's results come back through a writable directory shared with L1. What differs is the
emulator: QEMU's TCG (`-cpu max`: AMD SVM) for `svm`, Bochs (Intel VMX) for `vmx`.
"""
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BOOT_TIMEOUT = 120      # seconds for L1 to reach its init, generously (TCG under load)
TEST_TIMEOUT = 300      # seconds for one test inside L1 (times there are 10-50x the host's)
L1_MEM_MIB = 6144       # tests need up to ~1 GiB at once; the rest is L1's tmpfs overlay

LANES = {'svm': 'kvm-amd', 'vmx': 'kvm-intel'}
# Modules L1 needs beyond the KVM one (their dependencies are found from .modinfo)
BASE_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay', 'loop', 'zram', 'dm-mod']


@dataclass
class Result:
    status: int      # the command's exit status, or 1 if L1 broke
    error: str       # why L1 broke ('' if it did not)
    info: str        # what L1 was (kernel, emulator, KVM module)


def cache_dir():
    d = os.environ.get('UFVM_LANE_CACHE')
    if d:
        return Path(d)
    if os.geteuid() == 0:
        return Path('/var/cache/ufvm/lane')
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'ufvm' / 'lane'


def emulator(lane):
    return 'qemu-system-x86_64' if lane == 'svm' else 'bochs-bin'


def unavailable(lane):
    """Why this lane cannot run here, or None."""
    if lane not in LANES:
        return 'unknown lane %r (svm or vmx)' % lane
    if os.geteuid() != 0:
        return 'the lanes run as root (L1 shares the host root over 9p)'
    for prog, pkg in ((emulator(lane), 'qemu-system-x86' if lane == 'svm' else 'bochs'),
                      ('busybox', 'busybox-static'), ('dpkg-deb', 'dpkg')):
        if not shutil.which(prog):
            return '%s is missing (Debian package %s; tools/setup.sh installs it)' % (prog, pkg)
    if not Path('/bin/busybox').exists() or b'ld-linux' in Path('/bin/busybox').read_bytes()[:4096]:
        return '/bin/busybox is not static (Debian package busybox-static)'
    if not kernel_dir() and not shutil.which('apt-get'):
        return 'no cached L1 kernel and no apt-get to download one'
    return None


# ---- the kernel ------------------------------------------------------------------------

def kernel_dir():
    """The unpacked Debian kernel package in the cache, or None."""
    c = cache_dir()
    for d in sorted(c.glob('linux-image-*-amd64'), reverse=True):
        if list((d / 'boot').glob('vmlinuz-*')) and (d / 'lib' / 'modules').is_dir():
            return d
    return None


def fetch_kernel(verbose=False):
    """apt-get download Debian's current amd64 kernel and unpack it into the cache."""
    c = cache_dir()
    c.mkdir(parents=True, exist_ok=True)
    show = subprocess.run(['apt-cache', 'show', 'linux-image-amd64'], capture_output=True,
                          text=True)
    m = re.search(r'^Depends: *(linux-image-[0-9][^ ,\n]*-amd64)', show.stdout, re.M)
    if not m:
        raise RuntimeError('apt-cache knows no linux-image-amd64 (run apt-get update?)')
    pkg = m.group(1)
    dest = c / pkg
    if (dest / 'boot').is_dir():
        return dest
    if verbose:
        print('lane: downloading %s (Debian kernel for L1) into %s' % (pkg, c), flush=True)
    tmp = c / 'download'
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    os.chmod(tmp, 0o777)  # apt's _apt sandbox user writes here
    r = subprocess.run(['apt-get', 'download', '-q', pkg], cwd=tmp, capture_output=True,
                       text=True)
    debs = list(tmp.glob('*.deb'))
    if r.returncode != 0 or not debs:
        raise RuntimeError('apt-get download %s failed: %s' % (pkg, r.stderr.strip()[-300:]))
    part = c / (pkg + '.part')
    shutil.rmtree(part, ignore_errors=True)
    subprocess.run(['dpkg-deb', '-x', str(debs[0]), str(part)], check=True)
    part.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


def modules_closure(moddir, wanted):
    """wanted modules plus their dependencies (from each .ko's .modinfo), in load order."""
    index = {}
    for ko in moddir.rglob('*.ko'):
        index[ko.name[:-3].replace('-', '_')] = ko
    order, seen = [], set()

    def visit(name):
        key = name.replace('-', '_')
        if key in seen:
            return
        seen.add(key)
        ko = index.get(key)
        if ko is None:
            return  # built in
        m = re.search(rb'depends=([^\0]*)\0', ko.read_bytes())
        for dep in (m.group(1).decode().split(',') if m and m.group(1) else []):
            visit(dep)
        order.append(ko)
    for w in wanted:
        visit(w)
    return order


# ---- L1's initramfs ----------------------------------------------------------------------

INIT = r'''#!/bin/busybox sh
# L1's init: modules, the host's root read-only under a tmpfs overlay, then the command.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m 2>/dev/null || echo "L1: insmod $m failed"; done
say() { echo "L1: $*"; }
fail() { say "$*"; echo 1 > /out/rc 2>/dev/null; poweroff -f; }
mkdir -p /host /out /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out || fail "cannot mount the results share"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host || fail "cannot mount the host root (9p)"
mount -t tmpfs -o size=70% tmp /tmp
mkdir -p /tmp/up /tmp/work
mount -t overlay -o lowerdir=/host,upperdir=/tmp/up,workdir=/tmp/work ov /newroot || fail "cannot mount the overlay"
for d in proc sys dev; do mount --bind /$d /newroot/$d; done
mkdir -p /newroot/dev/pts /newroot/dev/shm /newroot/lane-out
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
mount -t tmpfs shm /newroot/dev/shm
mount -t tmpfs tmp /newroot/tmp
mount -t tmpfs run /newroot/run
mount --bind /out /newroot/lane-out
[ -e /dev/kvm ] || fail "no /dev/kvm: $(dmesg | grep -i -E 'kvm|svm|vmx' | tail -3)"
say "ready $(cut -d' ' -f1 /proc/uptime)s, $(uname -r), $(grep -o -m1 -E 'svm|vmx' /proc/cpuinfo) KVM"
hostname l1
if [ -f /out/shell ]; then
	chroot /newroot /bin/sh -c 'cd "$(cat /lane-out/cwd)"; exec setsid -c /bin/bash -i' </dev/console >/dev/console 2>&1
	echo 0 > /out/rc
else
	chroot /newroot /bin/sh /lane-out/cmd.sh </dev/null
	echo $? > /out/rc
fi
sync
poweroff -f
'''

CMD = '''export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp LANG=C.UTF-8
cd %s || exit 1
exec %s
'''


def newc(entries):
    """A cpio 'newc' archive of (name, mode, data) entries."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries + [('TRAILER!!!', 0, b'')], 1):
        nm = name.encode() + b'\0'
        hdr = '070701' + ''.join('%08x' % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nm), 0))
        out += hdr.encode() + nm
        out += b'\0' * (-len(out) % 4) + data
        out += b'\0' * (-len(out) % 4)
    return bytes(out)


def prepare(lane, verbose=False):
    """The kernel and L1's initramfs for this lane; returns (vmlinuz, initramfs)."""
    kdir = kernel_dir() or fetch_kernel(verbose)
    vmlinuz = sorted((kdir / 'boot').glob('vmlinuz-*'))[-1]
    moddir = next((kdir / 'lib' / 'modules').iterdir())
    mods = modules_closure(moddir, BASE_MODULES + [LANES[lane]])
    initrd = cache_dir() / ('initrd-%s-%s.cpio' % (lane, moddir.name))
    busybox = Path('/bin/busybox').read_bytes()
    entries = [(d, stat.S_IFDIR | 0o755, b'') for d in
               ('bin', 'dev', 'proc', 'sys', 'tmp', 'lib', 'lib/modules')]
    entries += [('bin/busybox', stat.S_IFREG | 0o755, busybox),
                ('init', stat.S_IFREG | 0o755, INIT.encode()),
                ('modules.order', stat.S_IFREG | 0o644,
                 ''.join(k.name + '\n' for k in mods).encode())]
    entries += [('lib/modules/' + k.name, stat.S_IFREG | 0o644, k.read_bytes()) for k in mods]
    data = newc(entries)
    if not initrd.exists() or initrd.read_bytes() != data:
        tmp = initrd.with_suffix('.tmp')
        tmp.write_bytes(data)
        tmp.rename(initrd)
    return vmlinuz, initrd


# ---- booting it ----------------------------------------------------------------------------

def qemu_argv(vmlinuz, initrd, out, interactive):
    return ['qemu-system-x86_64', '-accel', 'tcg', '-cpu', os.environ.get('UFVM_LANE_CPU', 'max'),
            '-smp', os.environ.get('UFVM_LANE_SMP', '1'),
            '-m', str(L1_MEM_MIB), '-nodefaults', '-no-user-config', '-display', 'none',
            '-serial', 'mon:stdio' if interactive else 'stdio', '-no-reboot',
            '-kernel', str(vmlinuz), '-initrd', str(initrd),
            '-append', 'console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off',
            '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,'
                       'multidevs=remap',
            '-virtfs', 'local,path=%s,mount_tag=out,security_model=none' % out]


def execute(lane, argv, cwd, out, timeout, console=None, quiet=False):
    """Boot L1, run argv in cwd (the host's path, seen through the overlay), power off."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        vmlinuz, initrd = prepare(lane, verbose=not quiet)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        return Result(1, 'cannot prepare L1: %s' % e, '')
    info = '%s under %s' % (vmlinuz.name, emulator(lane))
    (out / 'cmd.sh').write_text(CMD % (shlex_quote(cwd), ' '.join(map(shlex_quote, argv))))
    rc_file = out / 'rc'
    if rc_file.exists():
        rc_file.unlink()
    con = open(console, 'w') if console else None
    p = subprocess.Popen(qemu_argv(vmlinuz, initrd, out, False), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout + BOOT_TIMEOUT
    os.set_blocking(p.stdout.fileno(), False)
    while True:
        chunk = p.stdout.read()
        if chunk:
            text = chunk.decode(errors='replace')
            if con:
                con.write(text)
                con.flush()
            if not quiet:
                sys.stdout.write(text)
                sys.stdout.flush()
        if p.poll() is not None and not chunk:
            break
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            return Result(1, 'L1 timed out after %d s' % (timeout + BOOT_TIMEOUT), info)
        time.sleep(0.05)
    if con:
        con.close()
    if not rc_file.exists():
        return Result(1, 'L1 stopped without a result (emulator status %d)' % p.returncode,
                      info)
    try:
        return Result(int(rc_file.read_text().strip() or 1), '', info)
    except ValueError:
        return Result(1, 'L1 wrote a bad result', info)


def shell(lane):
    with_tmp = Path(os.environ.get('TMPDIR', '/tmp')) / ('ufvm-lane-shell-%d' % os.getpid())
    with_tmp.mkdir(parents=True, exist_ok=True)
    try:
        vmlinuz, initrd = prepare(lane, verbose=True)
        (with_tmp / 'shell').write_text('')
        (with_tmp / 'cwd').write_text(os.getcwd())
        print('lane: L1 shell (exit or Ctrl-A x to leave)', flush=True)
        return subprocess.call(qemu_argv(vmlinuz, initrd, with_tmp, True))
    finally:
        shutil.rmtree(with_tmp, ignore_errors=True)


def shlex_quote(s):
    import shlex
    return shlex.quote(s)
