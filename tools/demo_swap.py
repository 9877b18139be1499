#!/usr/bin/env python3
"""demo_swap.py: the seeds' two-VM swap demo under the memory pool (`make demo-swap`).

usage: tools/demo_swap.py [BUILD_DIR] [--out DIR] [--small MIB] [--big MIB] [--budget MIB]

Two VMs of very different sizes (96 MiB and 768 MiB of guest RAM by default), each writing
and verifying its data in passes (memtouch), run under one pool budget. A third VM, the
hog, arrives and takes most of the budget: the pool squeezes the two. Then both are frozen
(pause, then the whole VM swapped out): the `ps`-like table shows each VMM process under
1 MiB of RssAnon + RssShmem. The hog is killed; its memory returns to the pool; the two
resume and fault their pages back: swap-ins only (no page comes back as a fresh zero page),
and each verifies every byte again, in a full pass after the resume. The tables before,
frozen and after are printed, and one picture of the whole run is drawn (resident memory
per VM, stacked, events marked). Exit status 0 when every check passed.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
checks = []


def say(msg):
    print('==> ' + msg, flush=True)


def check(cond, what):
    print('    %s %s' % ('ok  ' if cond else 'FAIL', what), flush=True)
    checks.append((cond, what))
    return cond


def call(path, req, timeout=120):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(json.dumps(req).encode() + b'\n')
    buf = b''
    while b'\n' not in buf:
        c = s.recv(1 << 20)
        if not c:
            break
        buf += c
    s.close()
    return json.loads(buf.split(b'\n')[0])


class Demo:
    def __init__(self, a):
        self.build = os.path.abspath(a.build)
        self.out = a.out or tempfile.mkdtemp(prefix='ufvm-demo-swap.')
        os.makedirs(self.out, exist_ok=True)
        self.sock = os.path.join(self.out, 'pool.sock')
        self.series = os.path.join(self.out, 'series.jsonl')
        self.a = a
        self.pool = None

    def status(self):
        return call(self.sock, {'cmd': 'status'})

    def vm(self, name):
        return next(v for v in self.status()['vms'] if v['name'] == name)

    def mark(self, label):
        call(self.sock, {'cmd': 'mark', 'label': label})

    def wait(self, what, cond, timeout=180):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            r = cond()
            if r:
                return r
            time.sleep(0.2)
        check(False, '%s (not within %d s)' % (what, timeout))
        raise SystemExit(self.finish(1))

    def log(self, name):
        try:
            return open(os.path.join(self.out, name + '.log'), errors='replace').read()
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

    def start(self):
        g = os.path.join(self.build, 'guests/memtouch.elf')
        a = self.a
        # each VM keeps writing a new pattern over its data and verifying it, pass after pass
        self.pool = subprocess.Popen(
            [os.path.join(self.build, 'pool/ufvmpool'), 'run', '--budget', '%dM' % a.budget,
             '--policy', a.policy, '--api', self.sock, '--series', self.series, '--dir', self.out,
             '--ufvm', os.path.join(self.build, 'vmm/ufvm'), '-q',
             '--start', "small=--mem %dM --stats --cmdline 'mib=%d passes=1000000' %s" % (
                 a.small, a.small * 2 // 3, g),
             '--start', "big=--mem %dM --stats --cmdline 'mib=%d passes=1000000' %s" % (
                 a.big, a.big * 2 // 3, g)])
        self.wait('the pool answers', lambda: os.path.exists(self.sock) and self.status())

    def finish(self, rc):
        if self.pool and self.pool.poll() is None:
            try:
                call(self.sock, {'cmd': 'stop'})
            except OSError:
                self.pool.send_signal(signal.SIGTERM)
            self.pool.wait(timeout=60)
        png = os.path.join(self.out, 'demo-swap.png')
        if os.path.exists(self.series):
            subprocess.run([os.path.join(self.build, 'pool/ufvmpool'), 'plot', self.series, png,
                            '--title', 'two VMs, a hog, freeze, kill the hog, resume (%s policy)'
                            % self.a.policy])
            say('the run as a picture: %s (time series: %s)' % (png, self.series))
        bad = [w for ok, w in checks if not ok]
        say('%d checks, %d failed%s' % (len(checks), len(bad), ': ' + '; '.join(bad) if bad else ''))
        return 1 if bad or rc else 0

    def run(self):
        a = self.a
        say('a pool of %d MiB (%s policy); two VMs: small (%d MiB guest RAM, writes and verifies '
            '%d MiB) and big (%d MiB, %d MiB)' % (a.budget, a.policy, a.small, a.small * 2 // 3,
                                                  a.big, a.big * 2 // 3))
        self.start()
        self.wait('both VMs verified a pass', lambda: self.passes_ok('small') >= 1 and
                  self.passes_ok('big') >= 1)
        before = self.ps('before: both VMs running, each with its data in memory')
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
        for n in ('small', 'big'):
            r1 = call(v[n]['socket'], {'cmd': 'pause'})
            r2 = call(v[n]['socket'], {'cmd': 'swapout'}, timeout=300)
            check(r1.get('ok') and r2.get('ok'), '%s paused and swapped out: %d pages out in %s ms, '
                  '%d resident' % (n, r2.get('pages_out', 0), r2.get('ms'), r2.get('resident_pages', -1)))
        frozen = self.ps('frozen: each VMM process as ps counts it (RssAnon + RssShmem)')
        for n in ('small', 'big'):
            rss = frozen[n]['rss_anon_bytes'] + frozen[n]['rss_shmem_bytes']
            check(frozen[n]['rss_shmem_bytes'] < MiB, '%s: guest RAM in memory (RssShmem) %.0f KiB < 1 MiB'
                  % (n, frozen[n]['rss_shmem_bytes'] / 1024))
            check(rss < MiB, '%s: RssAnon + RssShmem %.0f KiB < 1 MiB (RssAnon %.0f KiB: the VMM '
                  'itself: its heap and stacks; its per-page tables went to a file)' %
                  (n, rss / 1024, frozen[n]['rss_anon_bytes'] / 1024))
        self.wait('the hog gets the memory the frozen VMs gave back',
                  lambda: self.vm('hog')['limit_bytes'] > a.budget * MiB * 3 // 4, timeout=120)
        stats0 = {n: call(v[n]['socket'], {'cmd': 'stats'})['pager'] for n in ('small', 'big')}
        ok0 = {n: self.passes_ok(n) for n in ('small', 'big')}
        self.mark('kill the hog')
        say('kill -9 the hog (pid %d): the pool gets its memory back' % self.vm('hog')['pid'])
        os.kill(self.vm('hog')['pid'], signal.SIGKILL)
        self.wait('the hog is gone', lambda: self.vm('hog')['state'] == 'gone')
        self.mark('resume small and big')
        say('resume both: their pages come back by swap-in faults only')
        for n in ('small', 'big'):
            check(call(v[n]['socket'], {'cmd': 'resume'}).get('ok'), '%s resumed' % n)
        # a full pass (write, then verify every byte) that starts after the resume: two more
        self.wait('both VMs verify every byte in a full pass after the resume',
                  lambda: all(self.passes_ok(n) >= ok0[n] + 2 for n in ('small', 'big')),
                  timeout=300)
        after = self.ps('after: both VMs running again, data verified')
        for n in ('small', 'big'):
            st = call(v[n]['socket'], {'cmd': 'stats'})['pager']
            d = {k: st[k] - stats0[n][k] for k in ('faults_missing', 'faults_swapin', 'swapin_bytes')}
            check(d['faults_missing'] == 0 and d['faults_swapin'] > 0,
                  '%s: after the resume %d swap-in faults (%.0f MiB read back) and %d zero-fill '
                  'faults' % (n, d['faults_swapin'], d['swapin_bytes'] / MiB, d['faults_missing']))
            bad = re.findall(r'mismatch', self.log(n).replace(': 0 mismatches', ''))
            check(not bad and self.passes_ok(n) >= ok0[n] + 2,
                  '%s: %d passes verified, no mismatch' % (n, self.passes_ok(n)))
        for n in ('small', 'big'):
            call(v[n]['socket'], {'cmd': 'stop', 'status': 0})
        self.mark('stop')
        self.wait('both VMs stopped', lambda: all(self.vm(n)['state'] == 'gone'
                                                  for n in ('small', 'big')), timeout=60)
        del before, after
        return self.finish(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('build', nargs='?', default='build')
    ap.add_argument('--out')
    ap.add_argument('--small', type=int, default=96, help='small VM guest RAM, MiB')
    ap.add_argument('--big', type=int, default=768, help='big VM guest RAM, MiB')
    ap.add_argument('--hog', type=int, default=1024, help='the hog\'s guest RAM, MiB')
    ap.add_argument('--budget', type=int, default=1024, help='the pool budget, MiB')
    ap.add_argument('--hog-shares', type=int, default=4, help='the hog\'s shares (the others have 1)')
    ap.add_argument('--policy', default='tax', help='the pool\'s policy (tax: idle VMs give way)')
    a = ap.parse_args()
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        print('demo_swap: /dev/kvm is not usable here', file=sys.stderr)
        return 77
    d = Demo(a)
    try:
        return d.run()
    except (OSError, ValueError, StopIteration) as e:
        check(False, 'the demo failed: %s' % e)
        return d.finish(1)


if __name__ == '__main__':
    sys.exit(main())
