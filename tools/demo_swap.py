#!/usr/bin/env python3
"""demo_swap.py: the seeds' two-VM swap demo under the memory pool (`make demo-swap`).

usage: tools/demo_swap.py [BUILD_DIR] [--out DIR] [--small MIB] [--big MIB] [--budget MIB]
                          [--linux [--lane]]

Two VMs of very different sizes (96 MiB and 768 MiB of guest RAM by default), each writing
and verifying its data in passes (memtouch), run under one pool budget. A third VM, the
hog, arrives and takes most of the budget: the pool squeezes the two. Then both are frozen
(pause, then the whole VM swapped out): the `ps`-like table shows each VMM process under
1 MiB of RssAnon + RssShmem. The hog is killed; its memory returns to the pool; the two
resume and fault their pages back: swap-ins only (no page comes back as a fresh zero page),
and each verifies every byte again, in a full pass after the resume. The tables before,
frozen and after are printed, and one picture of the whole run is drawn (resident memory
per VM, stacked, events marked). Exit status 0 when every check passed.

--linux: the small VM is Linux (Debian's stock kernel, as tests/linux_stock.py finds it,
with an initramfs of busybox and guests/linux/memtouch, which writes and verifies its data
pass after pass and reports on the serial console). A stock kernel needs hardware
virtualization (VMX/SVM): on PVM hosts run it in the SVM lane, `make demo-swap LINUX=1`
(tools/lane/lane.py exec svm --scratch 2048 --out DIR -- tools/demo_swap.py --linux --lane
--out /lane-out). --lane: inside the emulated lane (10-50x slower, one CPU): the sizes are
scaled down and every wait is 10 times longer; the output says so. Swap and the frozen
VMs' tables go to the lane's scratch disk (TMPDIR=/scratch) when L1 has one.
"""
import argparse
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
import linux_stock  # noqa: E402  (the stock kernel, static busybox, the initramfs format)
from ctlsock import request  # noqa: E402  (one request to the pool's socket)

call = functools.partial(request, timeout=120)

MiB = 1 << 20
checks = []


def say(msg):
    print('==> ' + msg, flush=True)


def check(cond, what):
    print('    %s %s' % ('ok  ' if cond else 'FAIL', what), flush=True)
    checks.append((cond, what))
    return cond


# the Linux VM's init: its workload from boot on, its progress on the serial console
LINUX_INIT = r'''#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "@@READY: Linux up after $(cut -d' ' -f1 /proc/uptime) s, $(grep -E 'MemTotal|MemAvailable' /proc/meminfo | tr -s ' \n' ' ')"
/bin/memtouch mib=%d passes=1000000
echo "@@memtouch exited with status $?"
poweroff -f
'''


SCRATCH = '/scratch'  # the lane's scratch disk (tools/lane/lane.py exec --scratch)


class Demo:
    def __init__(self, a):
        self.build = os.path.abspath(a.build)
        # sockets, logs and swap live in a local directory (--out may be a shared folder,
        # as the lane's /lane-out is); what is worth keeping is copied to --out at the end
        self.dir = tempfile.mkdtemp(prefix='ufvm-demo-swap.')
        self.out = a.out or self.dir
        os.makedirs(self.out, exist_ok=True)
        self.sock = os.path.join(self.dir, 'pool.sock')
        self.series = os.path.join(self.dir, 'series.jsonl')
        self.a = a
        self.pool = None
        self.slow = 10 if a.lane else 1
        self.t0 = time.monotonic()
        self.need = ()  # the VMs that must not exit while the demo waits

    def status(self):
        return call(self.sock, {'cmd': 'status'})

    def vm(self, name):
        return next(v for v in self.status()['vms'] if v['name'] == name)

    def mark(self, label):
        call(self.sock, {'cmd': 'mark', 'label': label})

    def wait(self, what, cond, timeout=180):
        timeout *= self.slow
        t0 = last = time.monotonic()
        while time.monotonic() - t0 < timeout:
            r = cond()
            if r:
                return r
            time.sleep(0.2)
            gone = [n for n in self.need if self.vm(n)['state'] == 'gone']
            if gone:
                tail = '\n'.join(self.log(gone[0]).splitlines()[-40:])
                print('    the end of %s\'s console and log:\n%s' % (gone[0], tail), flush=True)
                check(False, '%s: %s exited' % (what, gone[0]))
                raise SystemExit(self.finish(1))
            if time.monotonic() - last > 10 * self.slow:  # slow going: say how it goes
                last = time.monotonic()
                self.progress(what)
        check(False, '%s (not within %d s)' % (what, timeout))
        raise SystemExit(self.finish(1))

    def progress(self, what):
        try:
            vms = self.status()['vms']
        except (OSError, ValueError):
            return
        print('    ... %.0f s, waiting until %s: %s' % (self.elapsed(), what, '; '.join(
            '%s %s, %.0f MiB resident, %d passes, "%s"' % (
                v['name'], v['state'], v['resident_bytes'] / MiB, self.passes_ok(v['name']),
                (self.log(v['name']).strip().splitlines() or [''])[-1][:100]) for v in vms)),
            flush=True)

    def smaps(self, pid):
        """Where a VMM process's resident memory is: its mappings holding 64 KiB or more."""
        try:
            text = open('/proc/%d/smaps' % pid).read()
        except OSError:
            return
        for m in re.finditer(r'^([0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+ *\S*)\n(.*?)(?=^[0-9a-f]+-|\Z)',
                             text, re.M | re.S):
            kb = {k: int(v) for k, v in re.findall(r'^(\w+):\s+(\d+) kB', m.group(2), re.M)}
            if kb.get('Anonymous', 0) >= 64:
                print('      %-70s Rss %6d kB, Anonymous %6d kB' % (
                    m.group(1)[:70], kb.get('Rss', 0), kb.get('Anonymous', 0)), flush=True)

    def log(self, name):
        try:
            return open(os.path.join(self.dir, name + '.log'), errors='replace').read()
        except OSError:
            return ''

    def passes_ok(self, name):
        return len(re.findall(r'^memtouch: pass \d+: 0 mismatches$', self.log(name), re.M))

    def ps(self, title):
        say(title)
        r = subprocess.run([os.path.join(self.build, 'pool/ufvmpool'), self.sock, 'ps'],
                           capture_output=True, text=True)
        print('\n'.join('    ' + l for l in r.stdout.splitlines()), flush=True)
        return {v['name']: v for v in self.status()['vms']}

    def linux_initrd(self):
        """An initramfs for the Linux VM: busybox, memtouch, an init that runs it."""
        mt = os.path.join(self.build, 'guests/linux/memtouch')
        entries = [(d, 0o40755, b'') for d in ('bin', 'dev', 'proc', 'sys', 'tmp')]
        entries += [('bin/busybox', 0o100755, linux_stock.static_busybox()),
                    ('bin/sh', 0o120777, b'busybox'),
                    ('bin/memtouch', 0o100755, Path(mt).read_bytes()),
                    ('init', 0o100755, (LINUX_INIT % self.a.small_data).encode())]
        path = os.path.join(self.dir, 'initrd.gz')
        Path(path).write_bytes(linux_stock.cpio(entries))
        return path

    def start(self):
        g = os.path.join(self.build, 'guests/memtouch.elf')
        a = self.a
        # each VM keeps writing a new pattern over its data and verifying it, pass after pass
        small = "small=--mem %dM --stats --cmdline 'mib=%d passes=1000000' %s" % (
            a.small, a.small_data, g)
        if a.linux:
            small = ("small=--mem %dM --stats --kernel %s --initrd %s --no-balloon "
                     "--append 'console=ttyS0 quiet panic=-1'" % (
                         a.small, self.kernel, self.linux_initrd()))
        self.pool = subprocess.Popen(
            [os.path.join(self.build, 'pool/ufvmpool'), 'run', '--budget', '%dM' % a.budget,
             '--policy', a.policy, '--api', self.sock, '--series', self.series, '--dir', self.dir,
             '--ufvm', os.path.join(self.build, 'vmm/ufvm'), '-q', '--start', small,
             '--start', "big=--mem %dM --stats --cmdline 'mib=%d passes=1000000' %s" % (
                 a.big, a.big_data, g)])
        self.wait('the pool answers', lambda: os.path.exists(self.sock) and self.status())
        self.need = ('small', 'big')
        if a.linux:
            m = self.wait('the Linux VM reaches its init', lambda: re.search(
                r'^@@READY: (.*)$', self.log('small'), re.M), timeout=400)
            self.mark('small: Linux up')
            say('small: %s (%.0f s into the demo)' % (m.group(1).strip(), self.elapsed()))

    def elapsed(self):
        return time.monotonic() - self.t0

    def finish(self, rc):
        if self.pool and self.pool.poll() is None:
            try:
                call(self.sock, {'cmd': 'stop'})
            except OSError:
                self.pool.send_signal(signal.SIGTERM)
            self.pool.wait(timeout=60 * self.slow)
        png = os.path.join(self.out, 'demo-swap.png')
        if os.path.exists(self.series):
            subprocess.run([os.path.join(self.build, 'pool/ufvmpool'), 'plot', self.series, png,
                            '--title', 'two VMs%s, a hog, freeze, kill the hog, resume (%s policy)'
                            % (' (small: Linux)' if self.a.linux else '', self.a.policy)])
        if self.out != self.dir:  # the logs and the series go along with the picture
            for f in os.listdir(self.dir):
                if f.endswith(('.log', '.jsonl')):
                    shutil.copy(os.path.join(self.dir, f), self.out)
        if os.path.exists(png):
            say('the run as a picture: %s (time series and each VM\'s console log beside it)'
                % png)
        bad = [w for ok, w in checks if not ok]
        say('%d checks, %d failed%s (%.0f s)' % (len(checks), len(bad), ': ' + '; '.join(bad)
                                                 if bad else '', self.elapsed()))
        if self.out != self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return 1 if bad or rc else 0

    def run(self):
        a = self.a
        if a.lane:
            say('inside the emulated SVM lane (QEMU TCG, 10-50x slower than the host, one CPU): '
                'sizes scaled down, waits 10x longer')
            say('swap files and frozen VMs\' page tables in %s' % (
                'TMPDIR=%s, a disk (lane.py exec --scratch)' % SCRATCH if self.scratch else
                'L1\'s /tmp, a tmpfs: a frozen VM\'s tables stay in its memory there (mm/meta.c), '
                'give L1 a disk with lane.py exec --scratch'))
        say('a pool of %d MiB (%s policy); two VMs: small (%d MiB guest RAM, %s, writes and '
            'verifies %d MiB) and big (%d MiB, memtouch.elf, %d MiB)' % (
                a.budget, a.policy, a.small, 'Linux ' + os.path.basename(self.kernel)
                if a.linux else 'memtouch.elf', a.small_data, a.big, a.big_data))
        self.start()
        self.wait('both VMs verified a pass', lambda: self.passes_ok('small') >= 1 and
                  self.passes_ok('big') >= 1)
        before = self.ps('before: both VMs running, each with its data in memory (%.0f s)'
                         % self.elapsed())
        self.mark('hog starts')
        say('the hog: a third VM (%d MiB guest RAM, %d shares against their 1) that writes %d MiB'
            % (a.hog, a.hog_shares, a.hog * 7 // 8))
        r = call(self.sock, {'cmd': 'start', 'name': 'hog', 'shares': a.hog_shares, 'args': [
            '--mem', '%dM' % a.hog, '--cmdline', 'mib=%d passes=1000000' % (a.hog * 7 // 8),
            os.path.join(self.build, 'guests/memtouch.elf')]})
        check(r.get('ok'), 'the pool starts the hog: %s' % r.get('error', 'ok'))
        self.wait('the hog holds most of the budget', lambda: self.vm('hog')['resident_bytes'] >
                  a.budget * MiB // 2)
        v = {x['name']: x for x in self.status()['vms']}
        say('the pool moved memory to the hog: small %.0f MiB, big %.0f MiB, hog %.0f MiB resident'
            % tuple(v[n]['resident_bytes'] / MiB for n in ('small', 'big', 'hog')))
        self.mark('freeze small and big')
        say('freeze: pause each VM, then swap the whole VM out')
        t = time.monotonic()
        for n in ('small', 'big'):
            r1 = call(v[n]['socket'], {'cmd': 'pause'})
            r2 = call(v[n]['socket'], {'cmd': 'swapout'}, timeout=300 * self.slow)
            check(r1.get('ok') and r2.get('ok'), '%s paused and swapped out: %d pages out in %s ms, '
                  '%d resident' % (n, r2.get('pages_out', 0), r2.get('ms'), r2.get('resident_pages', -1)))
        t_freeze = time.monotonic() - t
        # the table's GUEST-RESIDENT column is the pool's latest sample of each VM
        self.wait('the pool has sampled both VMs frozen',
                  lambda: all(self.vm(n)['resident_bytes'] < MiB for n in ('small', 'big')),
                  timeout=30)
        frozen = self.ps('frozen: each VMM process as ps counts it (RssAnon + RssShmem)')
        for n in ('small', 'big'):
            rss = frozen[n]['rss_anon_bytes'] + frozen[n]['rss_shmem_bytes']
            check(frozen[n]['rss_shmem_bytes'] < MiB, '%s: guest RAM in memory (RssShmem) %.0f KiB < 1 MiB'
                  % (n, frozen[n]['rss_shmem_bytes'] / 1024))
            if not check(rss < MiB, '%s: RssAnon + RssShmem %.0f KiB < 1 MiB (RssAnon %.0f KiB: '
                         'the VMM itself: its heap and stacks; its per-page tables went to a file)'
                         % (n, rss / 1024, frozen[n]['rss_anon_bytes'] / 1024)):
                self.smaps(frozen[n]['pid'])
        # at least a quarter of what they held (the tax policy leaves idle VMs 1 - 75% of
        # an active one's share: in the lane's small budget the hog settled at +55 of 143 MiB)
        grow = sum(v[n]['resident_bytes'] for n in ('small', 'big')) // 4
        self.wait('the hog gets memory the frozen VMs gave back (%.0f MiB or more)' % (grow / MiB),
                  lambda: self.vm('hog')['limit_bytes'] >= v['hog']['limit_bytes'] + grow,
                  timeout=120)
        say('the hog\'s limit: %.0f MiB at the freeze, %.0f MiB now' % (
            v['hog']['limit_bytes'] / MiB, self.vm('hog')['limit_bytes'] / MiB))
        stats0 = {n: call(v[n]['socket'], {'cmd': 'stats'})['pager'] for n in ('small', 'big')}
        ok0 = {n: self.passes_ok(n) for n in ('small', 'big')}
        self.mark('kill the hog')
        say('kill -9 the hog (pid %d): the pool gets its memory back' % self.vm('hog')['pid'])
        os.kill(self.vm('hog')['pid'], signal.SIGKILL)
        self.wait('the hog is gone', lambda: self.vm('hog')['state'] == 'gone')
        self.mark('resume small and big')
        say('resume both: their pages come back by swap-in faults only')
        t = time.monotonic()
        for n in ('small', 'big'):
            check(call(v[n]['socket'], {'cmd': 'resume'}).get('ok'), '%s resumed' % n)
        # a full pass that starts after the resume (it reads back the data written before
        # the freeze, then writes and verifies a new pattern): two more
        self.wait('both VMs verify every byte in a full pass after the resume',
                  lambda: all(self.passes_ok(n) >= ok0[n] + 2 for n in ('small', 'big')),
                  timeout=300)
        t_resume = time.monotonic() - t
        after = self.ps('after: both VMs running again, data verified (%.0f s after the resume)'
                        % t_resume)
        swapins = {}
        for n in ('small', 'big'):
            st = call(v[n]['socket'], {'cmd': 'stats'})['pager']
            d = {k: st[k] - stats0[n][k] for k in ('faults_missing', 'faults_swapin', 'swapin_bytes')}
            swapins[n] = d
            if a.linux and n == 'small':
                # Linux's own zero pages (free, zeroed memory) were dropped at the swap-out
                # rather than written (zero_drops) and come back as zero-fill faults, as do
                # pages it never touched before: none of them held anything else
                empty = stats0[n]['pages'] - stats0[n]['swapped_pages'] - stats0[n]['resident_pages']
                check(d['faults_swapin'] > 0 and d['faults_missing'] <= empty,
                      '%s: after the resume %d swap-in faults (%.0f MiB read back) and %d zero-fill '
                      'faults, all on the %d pages that held nothing but zeros at the freeze '
                      '(%d dropped as zeros by the pager so far)' % (
                          n, d['faults_swapin'], d['swapin_bytes'] / MiB, d['faults_missing'],
                          empty, stats0[n]['zero_drops']))
            else:
                check(d['faults_missing'] == 0 and d['faults_swapin'] > 0,
                      '%s: after the resume %d swap-in faults (%.0f MiB read back) and %d zero-fill '
                      'faults' % (n, d['faults_swapin'], d['swapin_bytes'] / MiB, d['faults_missing']))
            bad = re.findall(r'mismatch', self.log(n).replace(': 0 mismatches', ''))
            check(not bad and self.passes_ok(n) >= ok0[n] + 2,
                  '%s: %d passes verified, no mismatch' % (n, self.passes_ok(n)))
        say('in figures: process RSS (RssAnon + RssShmem) before / frozen / after, swap-ins')
        for n in ('small', 'big'):
            f = [x[n]['rss_anon_bytes'] + x[n]['rss_shmem_bytes'] for x in (before, frozen, after)]
            print('    %-5s %-6s %7.1f / %5.2f / %7.1f MiB   %6d swap-in faults, %4.0f MiB read back'
                  % (n, 'Linux' if a.linux and n == 'small' else 'ufvm', f[0] / MiB, f[1] / MiB,
                     f[2] / MiB, swapins[n]['faults_swapin'], swapins[n]['swapin_bytes'] / MiB))
        print('    freeze (pause + swap-out of both) %.1f s; resume to a full pass verified by both '
              '%.1f s' % (t_freeze, t_resume), flush=True)
        self.need = ()
        for n in ('small', 'big'):
            call(v[n]['socket'], {'cmd': 'stop', 'status': 0})
        self.mark('stop')
        self.wait('both VMs stopped', lambda: all(self.vm(n)['state'] == 'gone'
                                                  for n in ('small', 'big')), timeout=60)
        return self.finish(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('build', nargs='?', default='build')
    ap.add_argument('--out', help='keep the picture, the series and the logs here')
    ap.add_argument('--small', type=int, help='small VM guest RAM, MiB (96)')
    ap.add_argument('--big', type=int, help='big VM guest RAM, MiB (768; 192 with --lane)')
    ap.add_argument('--hog', type=int, help='the hog\'s guest RAM, MiB (1024; 320 with --lane)')
    ap.add_argument('--budget', type=int, help='the pool budget, MiB (1024; 320 with --lane)')
    ap.add_argument('--hog-shares', type=int, default=4, help='the hog\'s shares (the others have 1)')
    ap.add_argument('--policy', default='tax', help='the pool\'s policy (tax: idle VMs give way)')
    ap.add_argument('--linux', action='store_true', help='the small VM runs Linux (Debian\'s '
                    'stock kernel): needs VMX/SVM, e.g. the SVM lane')
    ap.add_argument('--lane', action='store_true', help='running inside an emulated lane: '
                    'smaller sizes, longer waits')
    a = ap.parse_args()
    sizes = (96, 192, 320, 320) if a.lane else (96, 768, 1024, 1024)
    for k, dflt in zip(('small', 'big', 'hog', 'budget'), sizes):
        setattr(a, k, getattr(a, k) or dflt)
    # Debian's kernel leaves 47 MiB of a 96 MiB VM (MemTotal), 27 of them available after
    # boot (24 MiB of anonymous memory met the OOM killer): its workload gets a sixth
    a.small_data = a.small // 6 if a.linux else a.small * 2 // 3
    a.big_data = a.big * 2 // 3
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        print('demo_swap: /dev/kvm is not usable here', file=sys.stderr)
        return 77
    kernel = None
    if a.linux:
        try:
            kernel = str(linux_stock.stock_kernel()[0])
            linux_stock.need_hw_kvm()
            linux_stock.static_busybox()
        except linux_stock.Skip as e:
            print('demo_swap: --linux: %s' % e, file=sys.stderr)
            return 77
        if not os.path.exists(os.path.join(a.build, 'guests/linux/memtouch')):
            print('demo_swap: --linux: no %s/guests/linux/memtouch: build first' % a.build,
                  file=sys.stderr)
            return 2
    # in the lane, L1's /tmp is a tmpfs: swap and the frozen VMs' tables go to the scratch
    # disk when L1 has one, as they would go to a disk on a real host
    scratch = a.lane and os.path.ismount(SCRATCH)
    if scratch:
        os.environ['TMPDIR'] = SCRATCH
        tempfile.tempdir = None
    d = Demo(a)
    d.scratch = scratch
    d.kernel = kernel
    try:
        return d.run()
    except (OSError, ValueError, StopIteration) as e:
        check(False, 'the demo failed: %s' % e)
        return d.finish(1)


if __name__ == '__main__':
    sys.exit(main())
