#!/usr/bin/env python3
"""linux_bench.py: a distro kernel under a memory limit, ufvm's pager against the kernel's swap.

    linux_bench.py BUILD_DIR

Needs hardware virtualization (run it in the svm lane), Debian's kernel (as
tests/linux_stock.py finds it), root (a memory cgroup, zram) and, for the boot-time row,
qemu-system-x86_64. The guest is the same stock kernel and initramfs on every side: it
boots, writes DATA MiB of random data to its tmpfs, reads them back, compares checksums and
powers off. Side by side, sides alternating, medians of BENCH_ROUNDS (3):

  ufvm     ufvm run --mem 256M --mem-limit 64M, its pager swapping to a file on TMPDIR
  kernel   ufvm run --mem 256M --pager off inside a memory cgroup limited to 64 MiB plus
           what that ufvm charges to the cgroup besides guest RAM and page cache (its
           heap and kernel memory, measured in a first run without a limit), swapping
           to zram: the guest gets about 64 MiB on both sides

  pages written to swap, ufvm / kernel (swapout_pages / pswpout)     target <= 1.0
  pages read from swap, ufvm / kernel (swapin_pages / pswpin)        target <= 1.0
  boot-and-verify time under the limit, ufvm / kernel                target <= 1.0
  boot to init without a limit, ufvm / qemu -M microvm -accel kvm    target <= 1.0

Knobs: BENCH_ROUNDS (3), BENCH_DATA_MIB (32), BENCH_LIMIT_MIB (64), TMPDIR, BENCH_UFVM_ARGS
(more ufvm options for the ufvm side, to try pager settings), BENCH_BOOT=0 (no boot-time
row), BENCH_KERNEL=0 (the ufvm side alone, no verdicts), BENCH_DUMP=1 (print every ufvm run's
full --stats=json counters too).
Exit status: 0 targets met, 1 a target missed, 2 could not measure, 77 skipped.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
import linux_stock  # noqa: E402  (the kernel, busybox and module handling)

ROUNDS = int(os.environ.get('BENCH_ROUNDS', '3'))
DATA = int(os.environ.get('BENCH_DATA_MIB', '32'))
LIMIT = int(os.environ.get('BENCH_LIMIT_MIB', '64'))
UFVM_ARGS = os.environ.get('BENCH_UFVM_ARGS', '').split()
TMP = os.environ.get('TMPDIR', '/tmp')
MIB = 1 << 20
STALL_S = 300  # a run takes 20-40 s in the lane: one still going after this is stalled
INIT = r'''#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "@@INIT $(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /modules.order); do insmod /lib/modules/$m 2>/dev/null; done
n=$(sed -n 's/.*bench.data=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ "${n:-0}" -gt 0 ]; then
    a=$(dd if=/dev/urandom bs=1M count=$n 2>/dev/null | tee /tmp/a | md5sum)
    b=$(md5sum < /tmp/a)
    [ "$a" = "$b" ] && echo "@@VERIFY ok" || echo "@@VERIFY bad"
fi
poweroff -f
'''


def say(*a):
    print('linux_bench:', *a, flush=True)


def verdict(what, ratio, target):
    ok = ratio <= target
    say('%s: %.2f (target <= %.2f): %s' % (what, ratio, target, 'PASS' if ok else 'MISS'))
    return ok


class Run:
    """One VM run: wall time to exit (and to @@INIT), its console, ufvm's own peak memory."""

    def __init__(self, argv, cgroup=None, timeout=STALL_S):
        pre = ['sh', '-c', 'echo $$ > %s/cgroup.procs && exec "$@"' % cgroup, 'sh'] if cgroup else []
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(pre + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.init_s, self.own = None, 0
        self.cg, self.cg_shmem, self.cg_other = cgroup, 0, 0
        self.out, self.err = [], b''
        # a run that never ends is killed, so the benchmark reports instead of hanging
        kill = threading.Timer(timeout, self.p.kill)
        kill.start()
        te = threading.Thread(target=self._err, daemon=True)
        te.start()
        tm = threading.Thread(target=self._mem, daemon=True)
        tm.start()
        for line in iter(self.p.stdout.readline, b''):
            if b'@@INIT' in line and self.init_s is None:
                self.init_s = time.monotonic() - self.t0
            self.out.append(line.decode(errors='replace'))
        self.p.wait()
        kill.cancel()
        self.wall = time.monotonic() - self.t0
        self.stalled = self.p.returncode == -9 and self.wall >= timeout
        te.join(10)
        self.text = ''.join(self.out)

    def _err(self):
        self.err = self.p.stderr.read()

    def _mem(self):
        """ufvm's own memory (not guest RAM, a shared memfd): RssAnon + RssFile, peak."""
        while self.p.poll() is None:
            try:
                st = Path('/proc/%d/status' % self.p.pid).read_text()
                kb = sum(int(m) for m in re.findall(r'^Rss(?:Anon|File):\s+(\d+)', st, re.M))
                self.own = max(self.own, kb * 1024)
                if self.cg:  # the cgroup's charge: guest RAM (shmem) and what cannot be
                    # reclaimed besides it (heap, kernel memory; not the page cache)
                    ms = dict((k, int(v)) for k, v in re.findall(
                        r'^(\w+) (\d+)$', (self.cg / 'memory.stat').read_text(), re.M))
                    self.cg_shmem = max(self.cg_shmem, ms['shmem'])
                    if self.init_s is not None:  # booted: the images' buffers are gone
                        self.cg_other = max(self.cg_other, ms['anon'] + ms['kernel'])
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)


def pager_stats(err):
    """The pager's counters from ufvm's --stats=json line on stderr, or None."""
    m = re.search(rb'^\{"pager": .*\}$', err, re.M)
    return json.loads(m.group(0))['pager'] if m else None


def vmstat(key):
    return int(re.search(r'^%s (\d+)' % key, Path('/proc/vmstat').read_text(), re.M).group(1))


class KernelSwap:
    """A memory cgroup (v2, mounted here if need be) and zram swap; undone by close()."""

    def __init__(self, moddir):
        self.mounted = self.zram = False
        self.cg = None
        if not Path('/sys/block/zram0').exists():
            mods = linux_stock.module_closure(moddir, ['zram'])
            insmod = [shutil.which('insmod')] if shutil.which('insmod') else [
                shutil.which('busybox') or '/bin/busybox', 'insmod']  # no kmod on the host
            for k in mods:
                subprocess.run(insmod + [str(k)], capture_output=True)
            if not Path('/sys/block/zram0').exists():
                raise linux_stock.Skip('no zram (insmod %s failed)' % mods[-1])
        Path('/sys/block/zram0/disksize').write_text('1G')
        if subprocess.run(['mkswap', '/dev/zram0'], capture_output=True).returncode or \
           subprocess.run(['swapon', '/dev/zram0']).returncode:
            raise linux_stock.Skip('cannot swap on zram0')
        self.zram = True
        root = Path('/sys/fs/cgroup')
        if not (root / 'cgroup.controllers').exists():
            if subprocess.run(['mount', '-t', 'cgroup2', 'none', str(root)]).returncode:
                raise linux_stock.Skip('cannot mount cgroup2 at %s' % root)
            self.mounted = True
        if 'memory' not in (root / 'cgroup.controllers').read_text():
            raise linux_stock.Skip('no memory controller in cgroup2')
        (root / 'cgroup.subtree_control').write_text('+memory')
        self.cg = root / 'ufvm-linux-bench'
        self.cg.mkdir(exist_ok=True)

    def limit(self, nbytes):
        (self.cg / 'memory.max').write_text(str(nbytes) if nbytes else 'max')
        (self.cg / 'memory.swap.max').write_text('max')

    def close(self):
        if self.cg and self.cg.exists():
            self.cg.rmdir()
        if self.mounted:
            subprocess.run(['umount', '/sys/fs/cgroup'])
        if self.zram:
            subprocess.run(['swapoff', '/dev/zram0'])
            Path('/sys/block/zram0/reset').write_text('1')


def main():
    build = Path(sys.argv[1] if len(sys.argv) > 1 else 'build').resolve()
    ufvm = str(build / 'vmm' / 'ufvm')
    try:
        vmlinuz, moddir = linux_stock.stock_kernel()
        linux_stock.need_hw_kvm()
        if os.geteuid() != 0:
            raise linux_stock.Skip('needs root (a memory cgroup, zram)')
        kmods = next((d for d in (moddir.parent.iterdir() if moddir else [])
                      if d.name == os.uname().release), None)
        if not kmods:
            raise linux_stock.Skip('no modules for the running kernel %s (zram)' %
                                   os.uname().release)
        ks = KernelSwap(kmods)
    except linux_stock.Skip as e:
        say('SKIP: %s' % e)
        return 77
    tmp = Path(tempfile.mkdtemp(prefix='ufvm-linux-bench-', dir=TMP))
    try:
        return bench(ufvm, vmlinuz, moddir, ks, tmp)
    finally:
        ks.close()
        shutil.rmtree(tmp, ignore_errors=True)


def bench(ufvm, vmlinuz, moddir, ks, tmp):
    initrd = tmp / 'initrd.gz'
    linux_stock.make_initrd(initrd, moddir, INIT, ['virtio_mmio', 'virtio_balloon'])
    swap = str(tmp / 'swap')
    vm = ['run', '--mem', '256M', '--kernel', str(vmlinuz), '--initrd', str(initrd)]
    work = ['--append', 'console=ttyS0 quiet panic=-1 bench.data=%d' % DATA]
    u = {'w': [], 'r': [], 't': []}
    k = {'w': [], 'r': [], 't': []}
    sides = ('u', 'k') if os.environ.get('BENCH_KERNEL', '1') != '0' else ('u',)
    slack = stalls = 0
    if 'k' in sides:
        # The same effective limit: the cgroup holds the guest's RAM plus what the
        # kernel side's ufvm charges besides it that cannot be reclaimed (its heap, page
        # tables, kernel memory, after the guest booted: loading buffers the kernel
        # image for a moment; page cache gives way under pressure), so its limit is
        # --mem-limit plus that, measured here without a limit. Every run then says how
        # much guest RAM it held at most.
        ks.limit(0)
        r = Run([ufvm] + vm + ['--pager', 'off'] + work, cgroup=ks.cg)
        if r.p.returncode or '@@VERIFY ok' not in r.text:
            say('ERROR: kernel side without a limit: status %d\n%s' % (r.p.returncode,
                                                                      r.text[-1500:]))
            return 2
        slack = r.cg_other
        say('kernel side without a limit: %.1f s, guest RAM %.1f MiB, the rest %.1f MiB at most'
            % (r.wall, r.cg_shmem / MIB, slack / MIB))
    for i in range(ROUNDS):
        for side in sides if i % 2 == 0 else sides[::-1]:
            if side == 'u':
                r = Run([ufvm] + vm + ['--mem-limit', '%dM' % LIMIT, '--swap', swap,
                                       '--stats=json'] + UFVM_ARGS + work)
                st = pager_stats(r.err)
                if r.p.returncode or '@@VERIFY ok' not in r.text or not st:
                    say('ERROR: ufvm side: status %d\n%s\n%s' % (
                        r.p.returncode, r.text[-1500:], r.err[-800:].decode(errors='replace')))
                    return 2
                u['w'].append(st['swapout_pages'])
                u['r'].append(st['swapin_pages'])
                u['t'].append(r.wall)
                if os.environ.get('BENCH_DUMP'):
                    say(json.dumps(st))
                say('ufvm run %d (%s): %.1f s, %d pages out, %d in (%d readahead: %d of them '
                    'in sequential windows, %d others used), %d zero drops, own memory %.1f '
                    'MiB' % (i, ' '.join(UFVM_ARGS) or 'defaults', r.wall, st['swapout_pages'],
                             st['swapin_pages'], st['readahead_pages'],
                             st.get('readahead_stream_pages', 0), st['readahead_hits'],
                             st.get('zero_drops', 0), r.own / MIB))
            else:
                ks.limit(LIMIT * MIB + slack)
                out0, in0 = vmstat('pswpout'), vmstat('pswpin')
                r = Run([ufvm] + vm + ['--pager', 'off'] + work, cgroup=ks.cg)
                if r.stalled:
                    # seen twice in the lane at 64-72 MiB: the VM stops making progress
                    # under the cgroup's reclaim; counted, left out of the medians
                    stalls += 1
                    say('kernel run %d: stalled, killed after %d s (%d pages out, %d in '
                        'by then)' % (i, STALL_S, vmstat('pswpout') - out0,
                                      vmstat('pswpin') - in0))
                    continue
                if r.p.returncode or '@@VERIFY ok' not in r.text:
                    say('ERROR: kernel side: status %d\n%s\n%s' % (
                        r.p.returncode, r.text[-1500:], r.err[-800:].decode(errors='replace')))
                    return 2
                k['w'].append(vmstat('pswpout') - out0)
                k['r'].append(vmstat('pswpin') - in0)
                k['t'].append(r.wall)
                say('kernel run %d: %.1f s, %d pages out, %d in (cgroup limit %.1f MiB, guest RAM '
                    '%.1f MiB at most)' % (i, r.wall, k['w'][-1], k['r'][-1],
                                           (LIMIT * MIB + slack) / MIB, r.cg_shmem / MIB))
    ok = True
    if len(sides) == 1:
        return 0
    if stalls:
        say('kernel side: %d of %d runs stalled (left out below)' % (stalls, ROUNDS))
    if not k['t']:
        say('ERROR: no kernel run finished')
        return 2
    for key, what in (('w', 'pages written to swap'), ('r', 'pages read from swap'),
                      ('t', 'boot-and-verify time under the limit')):
        a, z = statistics.median(u[key]), statistics.median(k[key])
        say('%s: ufvm %s, kernel %s (medians of %d and %d)' % (what, a, z, len(u[key]),
                                                                 len(k[key])))
        ok &= verdict('%s, ufvm / kernel' % what, a / z if z else float('inf') if a else 0, 1.0)
    qemu = shutil.which('qemu-system-x86_64')
    if os.environ.get('BENCH_BOOT', '1') == '0':
        return 0 if ok else 1
    if not qemu:
        say('boot to init: no qemu-system-x86_64, not measured')
        return 0 if ok else 1
    idle = ['--append', 'console=ttyS0 quiet panic=-1 bench.data=0']
    tu, tq = [], []
    for i in range(ROUNDS):
        for side in ('u', 'q') if i % 2 == 0 else ('q', 'u'):
            if side == 'u':
                r = Run([ufvm] + vm + idle)
            else:
                r = Run([qemu, '-M', 'microvm,acpi=on', '-accel', 'kvm', '-cpu', 'host', '-m',
                         '256M', '-smp', '1', '-nodefaults', '-no-user-config', '-display',
                         'none', '-serial', 'stdio', '-no-reboot', '-kernel', str(vmlinuz),
                         '-initrd', str(initrd), '-append', idle[1]])
            if r.init_s is None:
                say('ERROR: %s never reached init: %s' % (side, r.text[-800:]))
                return 2
            (tu if side == 'u' else tq).append(r.init_s)
    a, z = statistics.median(tu), statistics.median(tq)
    say('boot to init: ufvm %.2f s, qemu microvm %.2f s (medians of %d; runs %s / %s)' % (
        a, z, ROUNDS, ' '.join('%.2f' % x for x in tu), ' '.join('%.2f' % x for x in tq)))
    ok &= verdict('boot to init without a limit, ufvm / qemu', a / z, 1.0)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
