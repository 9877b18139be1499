#!/usr/bin/env python3
"""linux_stock.py: a distro kernel under ufvm, driven as a user would, through its serial console.

    linux_stock.py --list                                        names of all cases
    linux_stock.py --ufvm UFVM --ufvmctl UFVMCTL [--mklinux DIR] CASE...

The kernel is Debian's own (linux-image-amd64: the one tools/lane/lane.py caches, or the
directory UFVM_STOCK_KERNEL names: boot/vmlinuz-* and lib/modules/*), with an initramfs
made here: busybox-static, the virtio_mmio, virtio_blk, virtio_balloon and ext4 modules,
and an init that loads them and leaves a shell on the console. Every command reaches the
guest as serial input and is judged by what it prints:

  devices  2 vCPUs, the disk and balloon found through ACPI, the disk read and written
           (checksums compared on the host after exit), discard, an ext2 file system made
           with busybox, mounted by ext4 and checked by e2fsck/debugfs on the host, the
           drivers removed and loaded again, balloon inflate and deflate through ufvmctl
           (the guest's MemTotal follows), free page reporting and statistics, a line
           longer than the UART's FIFO, `poweroff` ending ufvm with status 0
  memory   writing and verifying data under --mem-limit, then a whole-VM swap-out (resident
           under 1 MiB) and the data verified again; `reboot -f` ends ufvm with status 0
           through the ACPI reset register
  mklinux  tools/mklinux's kernel (no modules, no ACPI, devices on the command line), when
           a build exists in --mklinux DIR: devices and disk, `reboot -f` ends ufvm

A stock kernel boots only on hardware virtualization (VMX/SVM): on PVM hosts, and without
a cached kernel or busybox-static, each case exits 77 with the reason.
"""
import argparse
import gzip
import hashlib
import json
import os
import queue
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SKIP = 77
BOOT_TIMEOUT = 400  # an emulated L1 (the svm lane) boots a distro kernel in a minute or two
CMD_TIMEOUT = 180
MIB = 1 << 20
DISK_MB = 64
# the memory case: a 256 MiB guest held to LIMIT while it writes DATA_MB to its tmpfs (a
# stock kernel's boot alone touches about 106 MiB: the limit makes the pager swap from boot on)
LIMIT = os.environ.get('UFVM_STOCK_LIMIT', '96M')
DATA_MB = int(os.environ.get('UFVM_STOCK_DATA_MB', '32'))
MODULES = ['virtio_mmio', 'virtio_blk', 'virtio_balloon', 'crc32c_generic', 'ext4']
INIT = r'''#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m || echo "@@ insmod $m failed"; done
echo "@@READY $(cat /proc/uptime)"
exec /bin/sh
'''


class Skip(Exception):
    """The case needs something this host lacks."""


class Fail(Exception):
    """A check failed."""


def check(cond, what):
    print('%s - %s' % ('ok' if cond else 'not ok', what), flush=True)
    if not cond:
        raise Fail(what)


# ---- what the guest needs: a kernel, busybox, modules -----------------------------------

def stock_kernel():
    """(vmlinuz, modules dir) of Debian's kernel, or Skip."""
    dirs = []
    if os.environ.get('UFVM_STOCK_KERNEL'):
        dirs.append(Path(os.environ['UFVM_STOCK_KERNEL']))
    caches = [os.environ.get('UFVM_LANE_CACHE'), '/var/cache/ufvm/lane',
              Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'ufvm' / 'lane']
    for c in caches:
        if c and Path(c).is_dir():
            dirs += sorted(Path(c).glob('linux-image-*'))
    for d in dirs:
        k = sorted((d / 'boot').glob('vmlinuz-*'))
        m = sorted((d / 'lib' / 'modules').glob('*')) if (d / 'lib' / 'modules').is_dir() else []
        if k and m:
            return k[-1], m[-1]
    raise Skip('no stock kernel: set UFVM_STOCK_KERNEL to an unpacked linux-image-amd64 '
               '(boot/vmlinuz-*, lib/modules/*), or run tools/lane/lane.py prepare svm')


def static_busybox():
    b = shutil.which('busybox') or '/bin/busybox'
    try:
        data = Path(b).read_bytes()
    except OSError:
        raise Skip('no busybox (Debian: busybox-static)')
    phoff, = struct.unpack_from('<Q', data, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', data, 0x36)
    if data[:4] != b'\x7fELF' or any(
            struct.unpack_from('<I', data, phoff + i * phentsize)[0] == 3  # PT_INTERP
            for i in range(phnum)):
        raise Skip('%s is dynamically linked: the initramfs needs busybox-static' % b)
    return data


def module_closure(moddir, wanted):
    """The .ko files of wanted and their dependencies (their .modinfo), in load order."""
    index = {p.name[:-3].replace('-', '_'): p for p in moddir.rglob('*.ko')}
    order = []

    def visit(name):
        name = name.replace('-', '_')
        if name in (p.name[:-3].replace('-', '_') for p in order):
            return
        if name not in index:
            raise Skip('module %s is not in %s' % (name, moddir))
        info = index[name].read_bytes()
        m = re.search(rb'\0depends=([^\0]*)\0', info)
        for dep in (m.group(1).decode().split(',') if m and m.group(1) else []):
            visit(dep)
        order.append(index[name])
    for w in wanted:
        visit(w)
    return order


def cpio(entries):
    """A gzip'd newc archive of (name, mode, data)."""
    out = bytearray()
    for i, (name, mode, data) in enumerate(entries + [('TRAILER!!!', 0, b'')]):
        n = name.encode() + b'\0'
        out += b'070701' + b''.join(b'%08X' % v for v in
                                    (i + 1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(n), 0))
        out += n + b'\0' * (-(110 + len(n)) % 4) + data + b'\0' * (-len(data) % 4)
    return gzip.compress(bytes(out), 1)


def make_initrd(path, moddir, init=INIT, modules=MODULES):
    """A gzip'd initramfs: busybox, init, and modules (their closure, from moddir) if any."""
    entries = [(d, 0o40755, b'') for d in ('bin', 'dev', 'proc', 'sys', 'tmp', 'mnt', 'lib',
                                           'lib/modules')]
    entries += [('bin/busybox', 0o100755, static_busybox()), ('bin/sh', 0o120777, b'busybox'),
                ('init', 0o100755, init.encode())]
    mods = module_closure(moddir, modules) if moddir else []
    entries += [('lib/modules/' + k.name, 0o100644, k.read_bytes()) for k in mods]
    entries.append(('modules.order', 0o100644, ''.join(k.name + '\n' for k in mods).encode()))
    Path(path).write_bytes(cpio(entries))


def need_hw_kvm():
    try:
        os.close(os.open('/dev/kvm', os.O_RDWR))
    except OSError as e:
        raise Skip('/dev/kvm is not usable: %s' % e.strerror)
    if os.path.exists('/sys/module/kvm_pvm'):
        raise Skip('this host\'s KVM is PVM: a stock Linux kernel needs VMX/SVM (the svm lane '
                   'runs this test)')


# ---- a running guest --------------------------------------------------------------------

class Guest:
    """ufvm with the guest's console on a pipe: commands in, output collected."""

    def __init__(self, ufvm, args):
        print('+ %s %s' % (ufvm, ' '.join(args)), flush=True)
        self.p = subprocess.Popen([ufvm] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.out, self.err, self.n, self.eof = b'', b'', 0, 0
        self.q = queue.Queue()
        for f, attr in ((self.p.stdout, 'out'), (self.p.stderr, 'err')):
            threading.Thread(target=self._read, args=(f, attr), daemon=True).start()

    def _read(self, f, attr):
        while True:
            b = os.read(f.fileno(), 65536)
            if not b:
                self.q.put(None)
                return
            self.q.put((attr, b))

    def _pump(self, timeout):
        try:
            item = self.q.get(timeout=timeout)
        except queue.Empty:
            return
        if item:
            setattr(self, item[0], getattr(self, item[0]) + item[1])
        else:
            self.eof += 1

    def wait_for(self, regex, since=0, timeout=CMD_TIMEOUT):
        end = time.time() + timeout
        while True:
            m = re.compile(regex.encode()).search(self.out, since)
            if m:
                return m
            if time.time() > end or (self.p.poll() is not None and self.q.empty()):
                raise Fail('no %r on the console within %d s' % (regex, timeout))
            self._pump(0.2)

    def sh(self, cmd, timeout=CMD_TIMEOUT):
        """Run cmd in the guest's shell; (its exit status, what it printed)."""
        self.n += 1
        since = len(self.out)
        self.p.stdin.write(('%s; echo "@@RC%d=$?"\n' % (cmd, self.n)).encode())
        self.p.stdin.flush()
        m = self.wait_for(r'@@RC%d=(\d+)' % self.n, since, timeout)
        text = self.out[since:m.start()].decode(errors='replace')
        return int(m.group(1)), text

    def ok(self, cmd, what, timeout=CMD_TIMEOUT):
        t = time.time()
        rc, text = self.sh(cmd, timeout)
        if rc != 0:
            check(False, '%s (%s: status %d)\n%s' % (what, cmd, rc, text[-2000:]))
        print('  %.1f s: %s' % (time.time() - t, what), flush=True)
        return text

    def finish(self, cmd, timeout=CMD_TIMEOUT):
        """Send the command that ends the VM; the exit status."""
        self.p.stdin.write((cmd + '\n').encode())
        self.p.stdin.flush()
        end = time.time() + timeout
        while self.p.poll() is None and time.time() < end:
            self._pump(0.2)
        if self.p.poll() is None:
            print(stacks(self.p.pid), flush=True)
            raise Fail('%r did not end ufvm within %d s' % (cmd, timeout))
        end = time.time() + 10
        while self.eof < 2 and time.time() < end:  # the rest of stdout and stderr
            self._pump(0.2)
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def dump(self):
        print('--- console (last 6000 bytes):\n%s\n--- stderr:\n%s' %
              (self.out[-6000:].decode(errors='replace'), self.err[-3000:].decode(errors='replace')))


def stacks(pid):
    """Where a ufvm that does not end is stuck, for the log: each thread's state, kernel
    wait channel and system call, then what its vCPUs exit to KVM for (kvm tracepoints,
    two seconds), when tracefs is there."""
    out = ['', '--- its threads (state, wchan, syscall):']
    for task in sorted(Path('/proc/%d/task' % pid).glob('*')):
        try:
            comm = (task / 'comm').read_text().strip()
            state = (task / 'stat').read_text().rsplit(')', 1)[1].split()[0]
            wchan = (task / 'wchan').read_text().strip()
            sysc = (task / 'syscall').read_text().strip().split()[:3]
        except OSError:
            continue
        out.append('%s %s %s %s %s' % (task.name, comm, state, wchan, ' '.join(sysc)))
    t = Path('/sys/kernel/tracing')
    if not (t / 'trace').exists():
        subprocess.run(['mount', '-t', 'tracefs', 'nodev', str(t)], capture_output=True)
    try:
        (t / 'trace').write_text('')
        for ev in ('kvm/kvm_exit', 'kvm/kvm_pio', 'kvm/kvm_userspace_exit'):
            (t / 'events' / ev / 'enable').write_text('1')
        time.sleep(2)
        for ev in ('kvm/kvm_exit', 'kvm/kvm_pio', 'kvm/kvm_userspace_exit'):
            (t / 'events' / ev / 'enable').write_text('0')
        lines = (t / 'trace').read_text(errors='replace').splitlines()
        ev = [l for l in lines if not l.startswith('#')]
        out.append('--- KVM events in 2 s: %d; the last ones:' % len(ev))
        out += [l.strip()[:160] for l in ev[-25:]]
    except OSError as e:
        out.append('--- no KVM trace: %s' % e)
    return '\n'.join(out)


def ctl(ufvmctl, sock, *args):
    """ufvmctl --json SOCK args: the answer, parsed."""
    p = subprocess.run([ufvmctl, '--json', sock] + list(args), capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        check(False, 'ufvmctl %s: %s' % (' '.join(args), p.stderr.strip()))
    return json.loads(p.stdout)


def poll(fn, cond, timeout, what):
    end = time.time() + timeout
    while True:
        v = fn()
        if cond(v) or time.time() > end:
            check(cond(v), what + ' (%s)' % json.dumps(v)[:400])
            return v
        time.sleep(1)


def md5_of(text):
    m = re.search(r'\b([0-9a-f]{32})\b', text)
    return m.group(1) if m else None


# ---- the cases --------------------------------------------------------------------------

def disk_image(path):
    rnd = random.Random(12)
    with open(path, 'wb') as f:
        for _ in range(DISK_MB):
            f.write(rnd.getrandbits(8 * MIB).to_bytes(MIB, 'little'))


def disk_md5(path, off_mb, n_mb):
    with open(path, 'rb') as f:
        f.seek(off_mb * MIB)
        return hashlib.md5(f.read(n_mb * MIB)).hexdigest()


def mem_total(g):
    return int(re.search(r'MemTotal:\s+(\d+) kB', g.ok('grep MemTotal /proc/meminfo',
                                                        'MemTotal')).group(1))


def guest_disk(g, disk, acpi):
    """The disk: read, written, discarded, the driver removed and loaded again."""
    text = g.ok('ls /sys/bus/virtio/devices; cat /sys/bus/virtio/devices/*/device',
                'virtio devices listed')
    check('0x0002' in text and '0x0005' in text,
          'both virtio devices found%s (block 0x0002, balloon 0x0005)' %
          (' through ACPI (LNRO0005)' if acpi else ''))
    g.ok('test -b /dev/vda', '/dev/vda exists')
    got = md5_of(g.ok('dd if=/dev/vda bs=1M count=16 2>/dev/null | md5sum', 'read 16 MiB'))
    check(got == disk_md5(disk, 0, 16), 'the first 16 MiB read as the host wrote them')
    written = md5_of(g.ok('dd if=/dev/urandom of=/tmp/w bs=1M count=8 2>/dev/null && '
                          'md5sum /tmp/w', '8 MiB of random data'))
    g.ok('dd if=/tmp/w of=/dev/vda bs=1M seek=48 conv=fsync 2>/dev/null', 'write 8 MiB at 48 MiB')
    g.ok('echo 3 > /proc/sys/vm/drop_caches', 'drop the page cache')
    got = md5_of(g.ok('dd if=/dev/vda bs=1M skip=48 count=8 2>/dev/null | md5sum',
                      'read them back'))
    check(got == written, 'the 8 MiB read back from the disk as written')
    if acpi:  # the stock kernel: modules to remove and load again
        g.ok('rmmod virtio_blk && insmod /lib/modules/virtio_blk.ko && sleep 2 && test -b /dev/vda',
             'virtio_blk removed and loaded again')
        got = md5_of(g.ok('dd if=/dev/vda bs=1M skip=48 count=8 2>/dev/null | md5sum',
                          'read after the re-probe'))
        check(got == written, 'the disk reads the same after rmmod/insmod')
        g.ok('blkdiscard -o %d -l %d /dev/vda' % (40 * MIB, 4 * MIB), 'blkdiscard 4 MiB at 40 MiB')
    return written


def guest_fs(g):
    """ext2 made by busybox, mounted by whatever driver the kernel has, remounted, read back."""
    g.ok('mke2fs /dev/vda 32768 >/dev/null', 'mke2fs on the first 32 MiB')
    g.ok('mount /dev/vda /mnt && cp /tmp/w /mnt/data && mkdir /mnt/dir && '
         'echo ufvm-fs > /mnt/dir/note && umount /mnt', 'files written to the file system')
    text = g.ok('mount -o ro /dev/vda /mnt && md5sum /mnt/data && cat /mnt/dir/note && '
                'umount /mnt', 'the file system mounted again')
    return md5_of(text), 'ufvm-fs' in text


def guest_balloon(g, ufvmctl, sock):
    """Statistics from probe on, inflate and deflate through ufvmctl, free page reporting."""
    b = poll(lambda: ctl(ufvmctl, sock, 'balloon'), lambda a: a['stats_updates'] >= 1, 60,
             'balloon: the statistics the driver queued in probe arrived')
    check(b['stats'].get('total_memory', 0) > 100 * MIB, 'balloon: statistics hold total_memory')
    n = b['stats_updates']
    poll(lambda: ctl(ufvmctl, sock, 'balloon'), lambda a: a['stats_updates'] > n, 60,
         'balloon: fresh statistics after the host handed the buffer back')
    poll(lambda: ctl(ufvmctl, sock, 'balloon'), lambda a: a['reported_pages'] > 0, 90,
         'balloon: free page reporting reported free memory')
    before = mem_total(g)
    ctl(ufvmctl, sock, 'balloon', '64M')
    a = poll(lambda: ctl(ufvmctl, sock, 'balloon'), lambda a: a['actual_pages'] == 16384, 120,
             'balloon: inflated to 64 MiB')
    check(a['inflated_pages'] >= 16384, 'balloon: 16384 pages inflated')
    after = mem_total(g)
    check(before - after >= 64 * 1024 - 1024, 'guest MemTotal fell by 64 MiB (%d -> %d kB)' %
          (before, after))
    ctl(ufvmctl, sock, 'balloon', '0')
    poll(lambda: ctl(ufvmctl, sock, 'balloon'), lambda a: a['actual_pages'] == 0, 120,
         'balloon: deflated to 0')
    check(abs(mem_total(g) - before) < 1024, 'guest MemTotal back')
    out = subprocess.run([ufvmctl, sock, 'balloon'], capture_output=True, text=True)
    print(out.stdout, flush=True)
    check(out.returncode == 0 and 'total_memory' in out.stdout and 'reported' in out.stdout,
          'ufvmctl balloon shows the guest\'s statistics and the reports')
    g.ok('rmmod virtio_balloon && insmod /lib/modules/virtio_balloon.ko', 'virtio_balloon '
         'removed and loaded again')
    n = ctl(ufvmctl, sock, 'balloon')['stats_updates']
    poll(lambda: ctl(ufvmctl, sock, 'balloon'), lambda a: a['stats_updates'] > n, 60,
         'balloon: statistics from the driver loaded again')


def serial_long_line(g):
    s = ''.join(random.Random(5).choice('abcdefghijklmnopqrstuvwxyz0123456789') for _ in range(900))
    got = md5_of(g.ok('echo %s | md5sum' % s, 'a 900-byte command line'))
    check(got == hashlib.md5((s + '\n').encode()).hexdigest(),
          'serial input: a line over three times the UART FIFO arrived whole')


def host_disk_checks(disk, written, fs_md5, acpi):
    check(disk_md5(disk, 48, 8) == written, 'host: the 8 MiB the guest wrote are in the file')
    if acpi:
        with open(disk, 'rb') as f:
            f.seek(40 * MIB)
            zeros = f.read(4 * MIB) == bytes(4 * MIB)
        check(zeros, 'host: the discarded 4 MiB read as zeros')
        check(os.stat(disk).st_blocks * 512 <= (DISK_MB - 4) * MIB,
              'host: discard punched a hole (%d bytes allocated)' % (os.stat(disk).st_blocks * 512))
    if not shutil.which('e2fsck') or not shutil.which('debugfs'):
        print('note: no e2fsprogs on the host: the file system is checked in the guest only')
        return
    p = subprocess.run(['e2fsck', '-fn', disk], capture_output=True, text=True)
    check(p.returncode == 0, 'host: e2fsck -fn finds the guest\'s file system clean\n' +
          p.stdout[-1500:] + p.stderr[-500:])
    p = subprocess.run(['debugfs', '-R', 'cat /data', disk], capture_output=True)
    check(hashlib.md5(p.stdout).hexdigest() == written == fs_md5,
          'host: debugfs reads /data as the guest wrote it')


def case_devices(o, tmp, mklinux=False):
    if mklinux:
        kdir = Path(o.mklinux or '')
        if not (kdir / 'bzImage').is_file():
            raise Skip('no tools/mklinux build in %s (run tools/mklinux)' % kdir)
        need_hw_kvm()
        vmlinuz, moddir = kdir / 'bzImage', None
    else:
        vmlinuz, moddir = stock_kernel()
        need_hw_kvm()
    initrd, disk, sock = tmp / 'initrd.gz', tmp / 'disk.img', str(tmp / 'ctl.sock')
    make_initrd(initrd, moddir)
    disk_image(disk)
    append = 'console=ttyS0 quiet panic=-1' + (' reboot=k' if mklinux else '')
    g = Guest(o.ufvm, ['run', '--mem', '256M', '--cpus', '2', '--kernel', str(vmlinuz),
                       '--initrd', str(initrd), '--disk', str(disk), '--api', sock,
                       '--append', append])
    try:
        g.wait_for(r'@@READY', timeout=BOOT_TIMEOUT)
        check(b'@@ insmod' not in g.out, 'every module loaded')
        g.ok('stty -echo', 'console echo off')
        print(g.ok('dmesg | grep -iE "linux version|command line|acpi:|smp|ttyS0|virtio|vda|'
                   'balloon|power"', 'the kernel log'), flush=True)  # docs/linux.md quotes it
        check(g.ok('grep -c ^processor /proc/cpuinfo', 'cpuinfo').split()[-1] == '2',
              'the guest sees 2 vCPUs')
        written = guest_disk(g, disk, not mklinux)
        fs_md5, note = guest_fs(g)
        check(fs_md5 == written and note, 'the file system reads back what was written')
        serial_long_line(g)
        if not mklinux:
            guest_balloon(g, o.ufvmctl, sock)
        # the shell is init: no init system to ask, so -f (reboot(2) at once)
        how = 'reboot -f' if mklinux else 'poweroff -f'
        rc = g.finish(how)
        check(rc == 0, '`%s` ends ufvm with status 0 (got %d)' % (how, rc))
        if not mklinux:
            check(b'reboot: Power down' in g.out, 'the kernel powered down (ACPI S5)')
        host_disk_checks(disk, written, fs_md5, not mklinux)
    except Fail:
        g.dump()
        raise
    finally:
        g.kill()


def case_memory(o, tmp):
    vmlinuz, moddir = stock_kernel()
    need_hw_kvm()
    initrd, sock = tmp / 'initrd.gz', str(tmp / 'ctl.sock')
    make_initrd(initrd, moddir)
    g = Guest(o.ufvm, ['run', '-v', '--mem', '256M', '--mem-limit', LIMIT, '--stats=json',
                       '--kernel', str(vmlinuz), '--initrd', str(initrd), '--no-balloon',
                       '--api', sock, '--append', 'console=ttyS0 quiet panic=-1'])
    try:
        g.wait_for(r'@@READY', timeout=BOOT_TIMEOUT)
        g.ok('stty -echo', 'console echo off')
        check(b'under --mem-limit: access sampling every 50 ms' in g.err,
              'a Linux guest under --mem-limit samples access every 50 ms (--api alone: 1000)')
        written = md5_of(g.ok('dd if=/dev/urandom bs=1M count=%d 2>/dev/null | tee /tmp/a | '
                              'md5sum' % DATA_MB, '%d MiB written to tmpfs under a %s limit' %
                              (DATA_MB, LIMIT), timeout=900))
        got = md5_of(g.ok('md5sum /tmp/a', 'read back', timeout=900))
        check(got == written, 'the %d MiB read back under the limit as written' % DATA_MB)
        st = ctl(o.ufvmctl, sock, 'stats')['pager']
        check(st['swapout_pages'] > 0 and st['resident_pages'] <= st['limit_pages'],
              'the pager swapped to hold the limit (%d out, %d resident of %d)' %
              (st['swapout_pages'], st['resident_pages'], st['limit_pages']))
        check(st['scan_dirty_pages'] > 0, 'KVM\'s dirty log feeds the clock by default under '
              '--mem-limit (%d pages logged)' % st['scan_dirty_pages'])
        # The pager leaves pages it was told of writable until its clock passes them; the
        # `dirty` request must still see every page written since its previous call.
        d = ctl(o.ufvmctl, sock, 'dirty')
        check(d.get('ok') and d['dirty_pages'] > 0, 'the `dirty` request beside the pager\'s '
              'lazily re-protected log (%s)' % d.get('dirty_pages', d))
        g.ok('dd if=/dev/urandom of=/tmp/b bs=1M count=2 2>/dev/null', '2 MiB more written')
        d = ctl(o.ufvmctl, sock, 'dirty')
        check(d.get('ok') and d['dirty_pages'] >= 512, 'the next `dirty` request reports the '
              '2 MiB just written: %s pages (at least 512)' % d.get('dirty_pages', d))
        a = ctl(o.ufvmctl, sock, 'swapout')
        check(a['resident_pages'] * 4096 < MIB,
              'whole-VM swap-out: %d KiB resident' % (a['resident_pages'] * 4))
        got = md5_of(g.ok('md5sum /tmp/a', 'read back after the swap-out', timeout=900))
        check(got == written, 'the %d MiB read back after the whole-VM swap-out' % DATA_MB)
        rc = g.finish('reboot -f')
        check(rc == 0 and b'the guest reset (ACPI reset register)' in g.err,
              '`reboot -f` ends ufvm with status 0 through the FADT\'s reset register (got %d)'
              % rc)
        m = re.search(rb'^\{"pager": .*\}$', g.err, re.M)
        check(m is not None, '--stats=json at exit')
        st = json.loads(m.group(0))['pager']
        print('pager at exit: %d pages written to swap, %d read back (%d readahead, %d of them '
              'used), %d dropped as zeros' % (st['swapout_pages'], st['swapin_pages'],
                                             st['readahead_pages'], st['readahead_hits'],
                                             st.get('zero_drops', 0)), flush=True)
    except Fail:
        g.dump()
        raise
    finally:
        g.kill()


CASES = {'devices': case_devices, 'memory': case_memory,
         'mklinux': lambda o, tmp: case_devices(o, tmp, mklinux=True)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--ufvm')
    ap.add_argument('--ufvmctl')
    ap.add_argument('--mklinux', help='a tools/mklinux output directory')
    ap.add_argument('names', nargs='*')
    o = ap.parse_args()
    if o.list:
        print('\n'.join(CASES))
        return 0
    results = []
    for name in o.names or CASES:
        with tempfile.TemporaryDirectory(prefix='ufvm-stock-') as tmp:
            try:
                CASES[name](o, Path(tmp))
                print('ok %s' % name)
                results.append(0)
            except Skip as e:
                print('skipped %s: %s' % (name, e))
                results.append(SKIP)
            except Fail as e:
                print('FAIL %s: %s' % (name, str(e).splitlines()[0]))
                results.append(1)
    if any(r == 1 for r in results):
        return 1
    return SKIP if all(r == SKIP for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
