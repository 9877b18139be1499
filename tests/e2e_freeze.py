#!/usr/bin/env python3
"""e2e_freeze.py: a VM paused and swapped out gives its memory back, its own tables too.

usage: e2e_freeze.py UFVM GUESTS_DIR

A memtouch guest verifies 96 MiB pass after pass. Frozen through the control socket
(pause, then swapout), the VMM process keeps under 1 MiB of RssAnon + RssShmem, and stays
there while it is frozen (the access sampler holds still); `pagemap` still reads the page
states (from the file the tables went to); resumed, the guest faults everything back by
swap-in only and verifies every byte, twice over, and RssShmem counts each page once;
a second freeze works the same.
"""
import functools
import os
import re
import subprocess
import sys
import tempfile
import time

from cases import SLOW
from ctlsock import request

UFVM, GUESTS = sys.argv[1:3]
failures = []
call = functools.partial(request, timeout=60 * SLOW)


def check(cond, what):
    print(('ok   ' if cond else 'FAIL ') + what, flush=True)
    if not cond:
        failures.append(what)


def status_kib(pid, key):
    st = open('/proc/%d/status' % pid).read()
    return int(re.search(r'^%s:\s+(\d+) kB' % key, st, re.M).group(1))


def rss(pid):
    return status_kib(pid, 'RssAnon') + status_kib(pid, 'RssShmem')


def wait_for(what, cond, timeout=90 * SLOW):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.1)
    check(False, what + ' (not within %d s)' % timeout)
    return False


def main():
    d = tempfile.mkdtemp(prefix='ufvm-e2e-freeze.')
    sock, out = os.path.join(d, 'vm.sock'), os.path.join(d, 'vm.out')
    vm = subprocess.Popen([UFVM, 'run', '--mem', '192M', '--api', sock, '--cmdline',
                           'mib=96 passes=1000000', os.path.join(GUESTS, 'memtouch.elf')],
                          stdout=open(out, 'w'), stderr=subprocess.STDOUT)
    passes = lambda: len(re.findall(r'^memtouch: pass \d+: 0 mismatches$', open(out).read(), re.M))
    try:
        wait_for('the first pass verified', lambda: passes() >= 1)
        for round in (1, 2):
            check(call(sock, {'cmd': 'pause'}) == {'ok': True}, 'pause %d' % round)
            r = call(sock, {'cmd': 'swapout'})
            check(r.get('ok') and r['resident_pages'] == 0, 'swapout %d: %s' % (round, r))
            if not r.get('frozen'):
                print('SKIP the table checks: they stay in memory on a tmpfs TMPDIR (frozen: false)')
            elif 'ASAN_OPTIONS' in os.environ:  # its shadow memory and quarantine are RssAnon
                print('SKIP the RSS checks under AddressSanitizer')
            else:
                kib = rss(vm.pid)
                check(kib < 1024, 'frozen %d: RssAnon + RssShmem %d KiB < 1 MiB' % (round, kib))
                scans = call(sock, {'cmd': 'wss'})['scans']
                time.sleep(2.5)  # the sampler would have scanned (and aged every page) twice
                w = call(sock, {'cmd': 'wss'})
                check(w['scans'] == scans, 'the sampler holds while frozen')
                check(w['windows'][0]['pages'] == 0,
                      'the 1 s working set of a VM frozen 2.5 s is empty: %s' % w['windows'][0])
                check(rss(vm.pid) < 1024, 'still under 1 MiB after 2.5 s: %d KiB' % rss(vm.pid))
            if round == 2:  # (its answer's buffers stay in the control thread's malloc arena)
                pm = call(sock, {'cmd': 'pagemap'})
                check(pm.get('ok') and pm['counts'].get('swapped', 0) >= 96 * 256,
                      'pagemap reads the page states while frozen: %s' % pm.get('counts'))
            st0 = call(sock, {'cmd': 'stats'})['pager']
            n0 = passes()
            check(call(sock, {'cmd': 'resume'}) == {'ok': True}, 'resume %d' % round)
            wait_for('two more passes verified after resume %d' % round, lambda: passes() >= n0 + 2)
            st1 = call(sock, {'cmd': 'stats'})['pager']
            check(st1['faults_missing'] == st0['faults_missing'] and
                  st1['faults_swapin'] > st0['faults_swapin'],
                  'resume %d: swap-ins only (%d swap-in faults, %d zero-fill)' % (
                      round, st1['faults_swapin'] - st0['faults_swapin'],
                      st1['faults_missing'] - st0['faults_missing']))
            # each page swapped back in counts once, though the pager read it through
            # its own view of the memfd (whose PTEs it trims)
            shmem = lambda: status_kib(vm.pid, 'RssShmem')
            held = lambda: call(sock, {'cmd': 'stats'})['pager']['memfd_bytes'] // 1024
            check(wait_for('RssShmem within guest RAM held + 1 MiB', lambda: shmem() <= held() + 1024,
                           timeout=10),
                  'resume %d: RssShmem %d KiB for %d KiB of guest RAM' % (round, shmem(), held()))
            check(st1['scans'] > st0['scans'] or st1['scans'] == 0 or
                  wait_for('the sampler runs again', lambda: call(sock, {'cmd': 'stats'})['pager']['scans'] > st0['scans']),
                  'the sampler runs again after the resume')
        check(call(sock, {'cmd': 'stop', 'status': 0}) == {'ok': True}, 'stop')
        vm.wait(timeout=60)
    finally:
        if vm.poll() is None:
            vm.kill()
            vm.wait()
    text = open(out).read()
    check(vm.returncode == 0, 'exit status 0 (got %s)' % vm.returncode)
    check('mismatch at' not in text, 'no mismatch in the guest output')
    if not failures:
        subprocess.run(['rm', '-rf', d])
    else:
        print(text[-2000:])
    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
