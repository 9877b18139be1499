#!/usr/bin/env python3
"""e2e_pager.py: the pager end to end: guests under a memory limit, whole-VM swap-out, swap errors.

    e2e_pager.py --list
    e2e_pager.py --ufvm UFVM --guests DIR [CASE...]

Every run has a timeout, and while it runs the memfd holding guest RAM is
sampled through /proc/PID/fd, so the resident size is checked from the memfd
itself as well as from ufvm's own accounting (--stats=json).
Exit status: 0 passed, 1 failed, 77 skipped (no /dev/kvm or no userfaultfd).
"""
import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import cases

MIB = 1 << 20
LIBC = ctypes.CDLL(None, use_errno=True)
BATCH = 2 * MIB  # one reclaim batch / zero-fill chunk
SLOW = cases.SLOW
TIMEOUT = 60 * SLOW


class Run:
    hook = None  # f(run), started on its own thread once ufvm runs

    def __init__(self, ufvm, args, on_line=None):
        self.p = subprocess.Popen([ufvm, 'run'] + args, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.samples = []  # memfd bytes over time
        self.out, self.err, self.lines = '', '', []
        self.on_line = on_line
        t = threading.Thread(target=self._sample, daemon=True)
        t.start()
        r = threading.Thread(target=self._read_out, daemon=True)
        r.start()
        if Run.hook:
            threading.Thread(target=Run.hook, args=(self,), daemon=True).start()
        errs = []
        e = threading.Thread(target=lambda: errs.append(self.p.stderr.read()), daemon=True)
        e.start()
        try:  # stderr on its own thread: a VM that hangs must hit this timeout
            self.p.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            self.status = 'timeout'
        else:
            self.status = self.p.returncode
        e.join(5 * SLOW)
        self.err = errs[0] if errs else ''
        r.join(5 * SLOW)
        self.out = ''.join(self.lines)
        self.stats = self.swap = None
        for line in self.err.splitlines():
            if line.startswith('{"pager"'):
                try:  # a VM stopped by a fatal error may exit mid-line
                    self.stats = json.loads(line)['pager']
                    self.swap = json.loads(line).get('swap')
                except ValueError:
                    pass

    def _read_out(self):
        for line in self.p.stdout:
            self.lines.append(line)
            if self.on_line:
                self.on_line(self, line)

    def _memfd(self):
        d = '/proc/%d/fd' % self.p.pid
        try:
            for fd in os.listdir(d):
                try:
                    if 'memfd:ufvm-guest-ram' in os.readlink(os.path.join(d, fd)):
                        return os.path.join(d, fd)
                except OSError:
                    pass
        except OSError:
            pass
        return None

    def _sample(self):
        path = None
        while self.p.poll() is None:
            path = path or self._memfd()
            if path:
                try:
                    self.samples.append(os.stat(path).st_blocks * 512)
                except OSError:
                    pass
            time.sleep(0.002)


def expect(cond, what, failures):
    if not cond:
        failures.append(what)


def common(r, failures, status=0, ok=True):
    expect(r.status == status, 'exit status %s, want %s' % (r.status, status), failures)
    if ok:
        expect(re.search(r'ok \(0 (mismatches|errors|bad tags, 0 pages with wrong counts)\)',
                         r.out), 'guest did not verify ok',
               failures)


def limited(ufvm, g, guest, cmdline, cpus, failures, limit_mib=16, extra=()):
    limit = limit_mib * MIB
    batch = min(limit // 8, BATCH)  # mm/README.md: one reclaim batch
    for _ in range(3):
        r = Run(ufvm, ['--mem', '128M', '--cpus', str(cpus), '--mem-limit', '%dM' % limit_mib,
                       '--stats=json'] + list(extra) + ['--cmdline', cmdline,
                                                        os.path.join(g, guest)])
        # A run of well under a second on a loaded host (the sanitizer pass beside the
        # lanes) can end before the sampling thread first looks at the memfd: nothing
        # measured is not a pass, so run it again (the peak must then be sampled)
        if r.samples or r.status != 0:
            break
    common(r, failures)
    s = r.stats or {}
    peak = s.get('max_resident_pages', 1 << 40) * 4096
    expect(peak <= limit + batch, 'accounted peak %d > limit + batch' % peak, failures)
    expect(s.get('swapout_pages', 0) > 0 and s.get('swapin_pages', 0) > 0,
           'no swap traffic above the limit', failures)
    expect(r.samples, 'the memfd was never sampled (three runs)', failures)
    # a page in the memfd where the table says SWAPPED is memory the limit does not see
    expect(s.get('stray_pages', 0) == 0, '%d stray pages' % s.get('stray_pages', 0), failures)
    mpeak = max(r.samples or [0])
    expect(mpeak <= limit + batch, 'memfd peak %d > limit + batch' % mpeak, failures)
    return r, 'peak %.1f MiB accounted, %.1f MiB memfd (%d samples), limit %d MiB' % (
        peak / MIB, mpeak / MIB, len(r.samples), limit_mib)


def case_limit_memtouch(ufvm, g, f):
    """32 MiB written and verified under an 8 MiB limit (4x: what is verified was
    evicted and comes back by swap-in on touch). The VMX lane runs this one (vmx_pick),
    so it is kept small: 64 MiB under 16 cost Bochs 163-303 s."""
    return limited(ufvm, g, 'memtouch.elf', 'mib=32', 1, f, limit_mib=8)[1]


def case_limit_smp2(ufvm, g, f):
    return limited(ufvm, g, 'smp.elf', 'mib=64 iters=1000', 2, f)[1]


def case_limit_8m_smp4(ufvm, g, f):
    """Four vCPUs at an 8 MiB limit (batch 1 MiB, smaller than a chunk), the shared
    counters' pages rewritten by atomic adds from every vCPU while reclaim evicts them."""
    return limited(ufvm, g, 'smp.elf', 'mib=32 iters=300000', 4, f, limit_mib=8)[1]


def case_limit_rewrite(ufvm, g, f):
    """Random read-modify-writes over 4x the limit, every access verified, with access
    sampling and KVM's dirty log on: pages are rewritten while the sampler zaps them
    and reclaim writes them out, and clean ones are dropped without a write."""
    r, msg = limited(ufvm, g, 'random.elf', 'mib=64 accesses=20K', 1, f,
                     extra=['--scan-interval', '100', '--dirty-track'])
    s = r.stats or {}
    expect(s.get('faults_minor', 0) > 0, 'no minor faults: the sampler did not run', f)
    return msg + ', %d minor faults, %d clean drops' % (s.get('faults_minor', 0),
                                                       s.get('clean_drops', 0))


def case_limit_zipf(ufvm, g, f):
    """Zipf read-modify-writes over 32 MiB under 24 MiB, every access verified: most of
    each readahead cluster is used, so clusters are mapped with their faulting page
    (resolve.c, readahead_eager_pages) and the guest's writes land in pages it never
    faulted on, while one cluster in four still measures the hit rate."""
    r, msg = limited(ufvm, g, 'random.elf', 'mib=32 dist=zipf accesses=100K', 1, f,
                     limit_mib=24)
    s = r.stats or {}
    expect(s.get('readahead_eager_pages', 0) > 0, 'no cluster was mapped at once', f)
    expect(s.get('readahead_hits', 0) > 0, 'no cluster was left to measure', f)
    return msg + ', %d pages mapped with their cluster, %d hits measured' % (
        s.get('readahead_eager_pages', 0), s.get('readahead_hits', 0))


def run_swapped_out(ufvm, args, what):
    """Run ufvm; once more if the guest ended cleanly with no whole-VM swap-out at all:
    the swap-out must land in a pause of the guest's, which a loaded host (the sanitizers
    beside both lanes) can let pass first. One that never comes fails both times."""
    for attempt in (1, 2):
        r = Run(ufvm, args)
        if attempt == 2 or r.status != 0 or (r.stats or {}).get('swapout_all_runs') != 0:
            return r
        print('note: the guest ended before %s; once more' % what, flush=True)


def swapout(ufvm, g, f, extra, memfd_low=True):
    # the guest pauses 800 ms after its mark for the pager's thread to take the swap-out
    r = run_swapped_out(ufvm, ['--mem', '128M', '--stats=json', '--swapout-at-mark', 'written'] +
                        extra + ['--cmdline', 'mib=64 pause_ms=800',
                                 os.path.join(g, 'memtouch.elf')],
                        'the pager took the swap-out')
    common(r, f)
    s = r.stats or {}
    left = s.get('swapout_all_resident_bytes', 1 << 40)
    expect(s.get('swapout_all_runs') == 1, 'no whole-VM swap-out happened', f)
    expect(left < MIB, 'swap-out left %d bytes resident' % left, f)
    low = min(r.samples or [1 << 40])
    # with prefetch the memfd is refilled at once: a 2 ms sampler can miss the
    # low point on a loaded machine, so only the on-demand case checks it
    if memfd_low:
        expect(low < MIB, 'memfd never went under 1 MiB (lowest %d)' % low, f)
    return r, s, 'left %d KiB (memfd low %d KiB), %d pages out in %d ms' % (
        left >> 10, low >> 10, s.get('swapout_all_pages', 0), s.get('swapout_all_ns', 0) // 10**6)


def case_clean_tracking_wp(ufvm, g, f):
    """--clean-tracking wp: pages memtouch only reads back (its verify passes) keep their
    swap copy and are dropped without a write; its write passes still reach swap.
    Kernels before 6.7 lack what it needs: ufvm must refuse it, clearly, at once."""
    probe = subprocess.run([ufvm, 'run', '--mem', '32M', '--clean-tracking', 'wp',
                            os.path.join(g, 'hello.elf')], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        expect(probe.returncode == 1 and 'Linux 6.7' in probe.stderr,
               'refused with status %d and %r' % (probe.returncode, probe.stderr[-200:]), f)
        return 'SKIP: this kernel cannot track by write-protect (%s)' % probe.stderr.strip()
    r, msg = limited(ufvm, g, 'memtouch.elf', 'mib=64 passes=3', 1, f,
                     extra=['--clean-tracking', 'wp'])
    s = r.stats or {}
    drops, out = s.get('clean_drops', 0), s.get('swapout_pages', 0)
    expect(drops > 8192, 'only %d clean drops (%d pages written)' % (drops, out), f)
    return msg + ', %d clean drops, %d pages written' % (drops, out)


def case_swapout_on_demand(ufvm, g, f):
    r, s, msg = swapout(ufvm, g, f, [])
    expect(s.get('faults_swapin', 0) > 0, 'verify did not swap in on demand', f)
    return msg


def case_swapout_prefetch(ufvm, g, f):
    r, s, msg = swapout(ufvm, g, f, ['--swapin', 'prefetch'], memfd_low=False)
    expect(s.get('swapin_all_pages', 0) >= 64 * MIB // 4096, 'prefetch read too little', f)
    return msg


def catches(pid, sig, timeout):
    """Wait until process pid handles sig: a handler (SigCgt), or the signal blocked for a
    signalfd (SigBlk, as ufvm's stop signals are). Sent before that, it would kill it, and
    a sanitized build on a loaded host can take longer than any fixed delay to get there."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            st = open('/proc/%d/status' % pid).read()
        except OSError:
            return False
        masks = [int(m, 16) for m in re.findall(r'^Sig(?:Cgt|Blk):\s+([0-9a-f]+)$', st, re.M)]
        if any(m >> (int(sig) - 1) & 1 for m in masks):
            return True
        time.sleep(0.01)
    return False


def case_sigusr1(ufvm, g, f):
    # ufvm's stdout is a pipe here (block-buffered): time the signal into the
    # guest's 1.5 s pause instead of waiting for its "written" line
    def kick(run):
        t0 = time.time()
        catches(run.p.pid, signal.SIGUSR1, 10 * SLOW)
        time.sleep(max(0, 0.6 - (time.time() - t0)))
        run.p.send_signal(signal.SIGUSR1)
    Run.hook = kick
    # (a sanitized ufvm beside both lanes once took longer than the guest's whole run,
    # 2.2 s, to install its handler)
    r = run_swapped_out(ufvm, ['--mem', '128M', '--stats=json', '--cmdline',
                               'mib=32 pause_ms=1500', os.path.join(g, 'memtouch.elf')],
                        'SIGUSR1 took it out')
    Run.hook = None
    common(r, f)
    s = r.stats or {}
    expect(s.get('swapout_all_runs') == 1, 'SIGUSR1 did not swap the VM out', f)
    expect(s.get('swapout_all_resident_bytes', 1 << 40) < MIB, 'SIGUSR1 left >= 1 MiB', f)
    return 'left %d KiB' % (s.get('swapout_all_resident_bytes', 0) >> 10)


def case_sigterm(ufvm, g, f):
    """SIGINT/SIGTERM mid-run under a limit, 2 vCPUs: an orderly stop, stats, no socket left."""
    msgs = []
    for sig, name in ((signal.SIGTERM, 'Terminated'), (signal.SIGINT, 'Interrupt')):
        sock = os.path.join(tempfile.mkdtemp(prefix='ufvm-sig-'), 'api.sock')
        atexit.register(shutil.rmtree, os.path.dirname(sock), True)

        def kick(run, sig=sig):
            t0 = time.time()
            catches(run.p.pid, sig, 10 * SLOW)
            time.sleep(max(0, 0.8 - (time.time() - t0)))
            run.p.send_signal(sig)
        Run.hook = kick
        r = Run(ufvm, ['--mem', '256M', '--cpus', '2', '--mem-limit', '16M', '--stats=json',
                       '--api', sock, '--cmdline', 'mib=128 iters=1000000000',
                       os.path.join(g, 'smp.elf')])
        Run.hook = None
        expect(r.status == 128 + sig, '%s: exit status %s, want %d' % (name, r.status, 128 + sig),
               f)
        expect('ufvm: %s: the VM was stopped' % name in r.err, '%s: no message' % name, f)
        expect(r.stats is not None, '%s: no --stats at the end' % name, f)
        expect(not os.path.exists(sock), '%s: the control socket was left behind' % name, f)
        msgs.append('%s -> %s' % (name, r.status))
    return ', '.join(msgs)


def case_swap_fs_full(ufvm, g, f):
    d = tempfile.mkdtemp(prefix='ufvm-tmpfs-')
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', d]).returncode:
        os.rmdir(d)
        return 'SKIP: cannot mount a tmpfs (needs root)'
    try:
        r = Run(ufvm, ['--mem', '128M', '--mem-limit', '16M', '--stats=json',
                       '--swap', os.path.join(d, 'swap'), '--cmdline', 'mib=64',
                       os.path.join(g, 'memtouch.elf')])
    finally:
        subprocess.run(['umount', d])
        os.rmdir(d)
    common(r, f)
    n = len(re.findall(r'swap file .+?: write failed: No space left on device', r.err))
    expect(n == 1, 'ENOSPC reported %d times, want once' % n, f)
    expect((r.stats or {}).get('write_errors', 0) > 0, 'no write errors counted', f)
    return '%d write errors, VM ran on' % (r.stats or {}).get('write_errors', 0)


def case_inject_write_error(ufvm, g, f):
    r = Run(ufvm, ['--mem', '128M', '--mem-limit', '16M', '--stats=json',
                   '--test-swap-fail=write:5:2000', '--cmdline', 'mib=48',
                   os.path.join(g, 'memtouch.elf')])
    common(r, f)
    n = len(re.findall(r'swap file .+?: write failed: Input/output error \(page stays resident',
                       r.err))
    expect(n == 1, 'EIO on write reported %d times, want once' % n, f)
    return '%d write errors' % (r.stats or {}).get('write_errors', 0)


def case_inject_read_error(ufvm, g, f):
    r = Run(ufvm, ['--mem', '128M', '--mem-limit', '16M', '--test-swap-fail=read:5:0',
                   '--cmdline', 'mib=48', os.path.join(g, 'memtouch.elf')])
    common(r, f, status=1, ok=False)
    expect(re.search(r'swap file .+?: read of guest page 0x[0-9a-f]+ failed: Input/output error',
                     r.err), 'no clear read error message', f)
    expect('ok (0' not in r.out, 'guest went on after a read error', f)
    return 'stopped: ' + r.err.strip().splitlines()[-1] if r.err.strip() else ''


class Api:
    """A control-socket client (docs/API.md): one JSON request per line, one answer each.
    A request waits as long as the machine takes (UFVM_TEST_SLOWDOWN): a fixed 20 s ran out
    in the SVM lane beside the rest of the suite (e2e_memcached hung_server, whose requests
    include a whole-VM swap-out of 32 MiB to memcached with a replica)."""

    def __init__(self, path, timeout=20 * SLOW):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.settimeout(timeout)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.02)
        self.f = self.s.makefile('r')

    def __call__(self, cmd, **kw):
        kw['cmd'] = cmd
        self.s.sendall((json.dumps(kw) + '\n').encode())
        line = self.f.readline()
        if not line:
            raise OSError('the VM closed its socket')
        return json.loads(line)


def corrupt(path, kind, npages, every=1):
    """Damage pages [0, npages) of a swap file, one in every `every`: 'zeros' overwrites,
    'random' writes random bytes, 'punch' punches holes (fallocate PUNCH_HOLE)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for pg in range(0, npages, every):
            if kind == 'zeros':
                os.pwrite(fd, bytes(4096), pg * 4096)
            elif kind == 'random':
                os.pwrite(fd, os.urandom(4096), pg * 4096)
            elif LIBC.fallocate(fd, 3, ctypes.c_long(pg * 4096), ctypes.c_long(4096)):
                raise OSError(ctypes.get_errno(), 'fallocate PUNCH_HOLE|KEEP_SIZE')
    finally:
        os.close(fd)


BAD_PAGE = (r'ufvm: swap file %s: guest page 0x[0-9a-f]+ read back from offset 0x[0-9a-f]+ '
            r'is not what was written there \(checksum mismatch; VM stopped\)')


def stopped_on_bad_page(r, swap, what, f):
    """The VM must stop as for a host failure (status 1), naming page, file and offset,
    before the guest sees wrong data; never a guest crash report or a verify failure."""
    expect(r.status == 1, '%s: exit status %s, want 1' % (what, r.status), f)
    expect(re.search(BAD_PAGE % re.escape(swap), r.err),
           '%s: no message naming the page: %r' % (what, r.err[-400:]), f)
    expect('guest exception' not in r.err, '%s: reported as a guest crash' % what, f)
    expect(not re.search(r'[1-9]\d* (mismatches|errors|bad)', r.out),
           '%s: the guest saw wrong data: %r' % (what, r.out[-300:]), f)


def swap_corrupt_whole_vm(ufvm, g, f, prefetch):
    """memtouch swapped out whole through the socket, its swap file damaged while it is
    out, then read back on demand (the guest's verify pass: faults with readahead) or all
    at once (the `swapin` request: the pipelined whole-VM swap-in)."""
    msgs = []
    for kind, every in (('zeros', 1), ('random', 61), ('punch', 61)):
        d = tempfile.mkdtemp(prefix='ufvm-corrupt-')
        swap = os.path.join(d, 'swap')
        # The guest pauses 1.5 s after writing for the hook to take it; a host that holds
        # the hook back longer (once, beside both lanes' start-up) lets the guest verify
        # and exit first, nothing swapped out or damaged: run once more, as swapout() does.
        # Each run has its own socket, so a late hook cannot reach the next run's VM.
        for attempt in (1, 2):
            sock, done = os.path.join(d, 'api%d.sock' % attempt), {}

            def hook(run, kind=kind, every=every, sock=sock, swap=swap, done=done):
                try:
                    api = Api(sock)
                    while api('stats')['pager']['resident_pages'] < 8192:  # 32 MiB written
                        time.sleep(0.01)
                    api('pause')
                    out = api('swapout')
                    corrupt(swap, kind, out['swapped_pages'], every)
                    done['pages'] = out['swapped_pages']
                    if prefetch:
                        api('swapin')
                    api('resume')
                except (OSError, ValueError, KeyError) as e:
                    done['err'] = repr(e)
            Run.hook = hook
            r = Run(ufvm, ['--mem', '128M', '--stats=json', '--api', sock, '--scan-interval',
                           'off', '--swap', swap, '--cmdline', 'mib=32 pause_ms=1500',
                           os.path.join(g, 'memtouch.elf')])
            Run.hook = None
            if attempt == 2 or 'pages' in done or r.status != 0:
                break
            print('note: %s: the guest ended before the hook swapped it out; once more' % kind,
                  flush=True)
        what = '%s (%s)' % (kind, 'prefetch' if prefetch else 'on demand')
        expect('pages' in done, '%s: the VM was never swapped out and damaged' % what, f)
        stopped_on_bad_page(r, swap, what, f)
        msgs.append('%s: %d pages out, status %s' % (kind, done.get('pages', 0), r.status))
        subprocess.run(['rm', '-rf', d])
    return '; '.join(msgs)


def case_swap_corrupt_demand(ufvm, g, f):
    return swap_corrupt_whole_vm(ufvm, g, f, prefetch=False)


def case_swap_corrupt_prefetch(ufvm, g, f):
    return swap_corrupt_whole_vm(ufvm, g, f, prefetch=True)


def case_swap_corrupt_limit(ufvm, g, f):
    """random under a memory limit, its swap file damaged over and over while it runs:
    the next page read back from a damaged slot stops the VM."""
    msgs = []
    for kind in ('zeros', 'random', 'punch'):
        d = tempfile.mkdtemp(prefix='ufvm-corrupt-')
        sock, swap = os.path.join(d, 'api.sock'), os.path.join(d, 'swap')
        done = {'rounds': 0}

        def hook(run, kind=kind, sock=sock, swap=swap, done=done):
            try:
                api = Api(sock)
                while api('stats')['pager']['swap_slots_used'] < 2048:
                    time.sleep(0.01)
                while run.p.poll() is None and done['rounds'] < 400:
                    used = api('stats')['pager']['swap_slots_used']
                    done['rounds'] += 1
                    corrupt(swap, kind, used, 7)
                    time.sleep(0.05)
            except (OSError, ValueError, KeyError) as e:
                done['err'] = repr(e)
        Run.hook = hook
        r = Run(ufvm, ['--mem', '128M', '--mem-limit', '16M', '--stats=json', '--api', sock,
                       '--scan-interval', 'off', '--swap', swap,
                       '--cmdline', 'mib=48 accesses=4000000', os.path.join(g, 'random.elf')])
        Run.hook = None
        what = '%s (under a limit)' % kind
        expect(done['rounds'] > 0, '%s: the swap file was never damaged (%s)' % (
            what, done.get('err', r.err[-300:])), f)
        stopped_on_bad_page(r, swap, what, f)
        msgs.append('%s: stopped after %d rounds of damage' % (kind, done['rounds']))
        subprocess.run(['rm', '-rf', d])
    return '; '.join(msgs)


def case_pager_off(ufvm, g, f):
    r = Run(ufvm, ['--mem', '128M', '--pager', 'off', '--stats', '--cmdline', 'mib=32',
                   os.path.join(g, 'memtouch.elf')])
    common(r, f)
    expect('ufvm: pager:' not in r.err, 'stats printed without a pager', f)
    return ''


PAGETRACE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools',
                         'pagetrace.py')


def trace_check(path, f, what):
    r = subprocess.run([sys.executable, PAGETRACE, '--check', path], capture_output=True,
                       text=True, timeout=120)
    try:
        c = json.loads(r.stdout)
    except ValueError:
        expect(False, '%s: pagetrace --check: status %d, %r' % (what, r.returncode, r.stderr), f)
        return {}
    expect(r.returncode == 0 and not c['nerrors'],
           '%s: the replay found %d errors: %s' % (what, c['nerrors'], c['errors'][:3]), f)
    return c


def case_trace_pages(ufvm, g, f):
    """--trace-pages under a limit: every page's recorded transitions replay from NEW
    without a gap (each starts where the page's previous one ended), and the replay ends
    where the pager's own counters do. A VMM killed mid-run leaves a trace that replays
    too."""
    d = tempfile.mkdtemp(prefix='ufvm-trace-')
    path = os.path.join(d, 'trace')
    r, msg = limited(ufvm, g, 'memtouch.elf', 'mib=32', 1, f, limit_mib=8,
                     extra=['--trace-pages', path])
    s = r.stats or {}
    c = trace_check(path, f, 'limit run')
    fin = c.get('final', {})
    held = sum(fin.get(k, 0) for k in ('RESIDENT', 'UNMAPPED', 'WRITEBACK'))
    expect(c.get('closed') and not c.get('dropped') and c.get('records', 0) > 3 * 8192,
           'trace of %s records (closed %s, dropped %s)' % (c.get('records'), c.get('closed'),
                                                           c.get('dropped')), f)
    expect(held == s.get('resident_pages') and fin.get('SWAPPED') == s.get('swapped_pages'),
           'replay ends with %d held, %s swapped; the pager counted %s and %s' % (
               held, fin.get('SWAPPED'), s.get('resident_pages'), s.get('swapped_pages')), f)
    a = json.loads(subprocess.run([sys.executable, PAGETRACE, '--json', path],
                                  capture_output=True, text=True, timeout=120).stdout)
    ins = a['refaults']['swapin']['count']
    expect(0 < ins <= s.get('swapin_pages', 0),
           '%d swap-ins traced, the pager read %s pages' % (ins, s.get('swapin_pages')), f)
    p = subprocess.Popen([ufvm, 'run', '--mem', '64M', '--mem-limit', '8M', '--trace-pages',
                          path, '--cmdline', 'mib=32 passes=1000000',
                          os.path.join(g, 'memtouch.elf')], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(1.5 * SLOW)
    p.kill()
    p.wait()
    k = trace_check(path, f, 'killed run')
    expect(not k.get('closed') and k.get('records', 0) > 0,
           'killed run: %s records, closed %s' % (k.get('records'), k.get('closed')), f)
    for args, what in ((['--trace-pages', os.path.join(d, 'no', 'such')], 'No such file'),
                       (['--trace-pages', '/dev/null'], 'not a regular file'),
                       (['--pager', 'off', '--trace-pages', path], 'need the pager')):
        q = subprocess.run([ufvm, 'run'] + args + [os.path.join(g, 'hello.elf')],
                           capture_output=True, text=True, timeout=TIMEOUT)
        expect(q.returncode == 2 and what in q.stderr,
               '%s: status %d, stderr %r' % (args, q.returncode, q.stderr), f)
    subprocess.run(['rm', '-rf', d])
    return msg + ', %d records, %d swap-ins traced' % (c.get('records', 0), ins)


def case_bad_options(ufvm, g, f):
    elf = os.path.join(g, 'hello.elf')
    d = tempfile.mkdtemp(prefix='ufvm-swap-')
    atexit.register(shutil.rmtree, d, True)
    data = os.path.join(d, 'precious')
    with open(data, 'w') as fh:
        fh.write('not a swap file\n')
    for args, what in ((['--swap', data], 'exists and holds data'),
                       (['--swap', os.path.join(d, 'no', 'such')], 'No such file'),
                       (['--swap', '/dev/null'], 'neither a regular file')):
        r = subprocess.run([ufvm, 'run'] + args + [elf], capture_output=True, text=True,
                           timeout=TIMEOUT)
        expect(r.returncode == 2 and 'swap file %s: cannot open' % args[1] in r.stderr and
               what in r.stderr, '%s: status %d, stderr %r' % (args, r.returncode, r.stderr), f)
    expect(open(data).read() == 'not a swap file\n', 'an existing --swap file was changed', f)
    for args, what in ((['--chunk', '3K'], 'power of two'), (['--mem-limit', '1M'], '4M'),
                       (['--readahead', '0'], "--readahead: invalid value '0' (1..512"),
                       (['--pager', 'off', '--mem-limit', '16M'], 'need the pager'),
                       (['--swapin', 'later'], 'on-demand or prefetch'),
                       (['--stats=xml'], '--stats=json')):
        r = subprocess.run([ufvm, 'run'] + args + [elf], capture_output=True, text=True,
                           timeout=TIMEOUT)
        expect(r.returncode == 2 and what in r.stderr,
               '%s: status %d, stderr %r' % (args, r.returncode, r.stderr), f)
    return ''


CASES = {n[5:]: fn for n, fn in sorted(globals().items()) if n.startswith('case_')}


def main():
    a = cases.parse()
    if a.list:
        print('\n'.join(CASES))
        return 0
    if cases.no_kvm('e2e_pager'):
        return 77
    probe = subprocess.run([a.ufvm, 'run', '--mem', '16M', os.path.join(a.guests, 'hello.elf')],
                           capture_output=True, text=True, timeout=TIMEOUT)
    if 'userfaultfd' in probe.stderr and probe.returncode:
        print('e2e_pager: skipped: ' + probe.stderr.strip())
        return 77

    def one(name):
        f = []
        msg = CASES[name](a.ufvm, a.guests, f)
        return f, msg
    return cases.run(a.cases or list(CASES), one)


if __name__ == '__main__':
    sys.exit(main())
