#!/usr/bin/env python3
"""e2e_balloon.py: the balloon through the control socket, with the pager on.

    e2e_balloon.py UFVM UFVMCTL GUESTS_DIR ELF_GUEST

The conformance guest (conf.balloon_ctl=1) follows the target the host sets with
{"cmd": "balloon", "pages": N}; the pages it inflates must be NEW in the pager's
page map while it holds them, their neighbours untouched, and the guest checks
every other page's content. Also: malformed requests, ufvmctl's output, and the
errors of a VM without a balloon (an ELF guest, --no-balloon).
Exit status: 0 passed, 1 failed, 77 skipped (no usable /dev/kvm).
"""
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from cases import SLOW

POOL = 0x2400000 // 4096  # the guest's pool, in pages (guests/conformance/virtio.c)
N = 96
SENT = '0123456789abcdefghijklmnopqrstuvwxyz-_.:,/+'
fails = []


def check(cond, what):
    print('%s - %s' % ('ok' if cond else 'not ok', what))
    if not cond:
        fails.append(what)


class Ctl:
    def __init__(self, path, deadline=10 * SLOW):
        end = time.time() + deadline
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.05)
        self.f = self.s.makefile('rwb')

    def call(self, req):
        self.f.write((req if isinstance(req, str) else json.dumps(req)).encode() + b'\n')
        self.f.flush()
        return json.loads(self.f.readline())


def start(ufvm, args, sock):
    return subprocess.Popen([ufvm, 'run', '--api', sock] + args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def pagemap(c, first, count):
    a = c.call({'cmd': 'pagemap', 'first': first, 'count': count})
    return base64.b64decode(a['state']) if a.get('ok') else None


def linux_case(ufvm, ufvmctl, gdir, tmp):
    sock = os.path.join(tmp, 'ctl.sock')
    append = ('conf.mem=64 conf.cpus=1 conf.vdevs=1 conf.initrd=0 conf.bzimage=1 '
              'conf.balloon_ctl=1 conf.sentinel=' + SENT)
    p = start(ufvm, ['--mem', '64M', '--stats=json', '--kernel',
                     os.path.join(gdir, 'conformance.bzImage'), '--append', append], sock)
    try:
        c = Ctl(sock)
        for bad, why in (({'cmd': 'balloon', 'pages': -1}, 'negative'),
                         ({'cmd': 'balloon', 'pages': 'x'}, 'a string'),
                         ({'cmd': 'balloon', 'pages': 1.5}, 'a real'),
                         ({'cmd': 'balloon', 'pages': 16385}, 'more than guest RAM'),
                         ({'cmd': 'balloon', 'bytes': 4096}, 'an unknown key')):
            a = c.call(bad)
            check(a.get('ok') is False and 'bad argument' in a.get('error', ''),
                  'balloon: malformed (%s) refused: %s' % (why, a.get('error')))
        a = c.call('{"cmd": "balloon", "pages": ')
        check(a.get('ok') is False and 'malformed' in a['error'], 'balloon: broken JSON refused')
        # the guest checks that its first stats buffer is held: ask for stats (which hands
        # it back) only once it re-initialised the balloon for this test
        seen = []
        while not any('waiting for the host' in l for l in seen[-1:]):
            seen.append(p.stdout.readline().decode(errors='replace'))
            if not seen[-1]:
                break
        a = c.call({'cmd': 'balloon'})
        check(a.get('ok') and a['target_pages'] == 0, 'balloon info: target 0 at start')
        # the guest notified its first buffer before DRIVER_OK, as Linux's probe does, and
        # sends the next only when the host hands one back: a buffer held now is that one
        check(a.get('stats_requested') is True and a['stats'].get('free_memory') in (1000, 1001),
              'balloon info: the statistics notified before DRIVER_OK arrived (%s, %s)' %
              (a.get('stats_requested'), a.get('stats')))
        end = time.time() + 20 * SLOW
        while time.time() < end:
            a = c.call({'cmd': 'balloon'})
            if a['stats'].get('free_memory', 0) >= 1000:
                break
            time.sleep(0.1)
        check(a['stats'].get('free_memory', 0) >= 1000, 'balloon info: the guest\'s stats')
        before = pagemap(c, POOL, 256 + 16)
        a = c.call({'cmd': 'balloon', 'pages': N, 'id': 7})
        check(a.get('ok') and a['target_pages'] == N and a.get('id') == 7,
              'balloon: target set to %d pages' % N)
        end = time.time() + 20 * SLOW
        while time.time() < end and a.get('actual_pages') != N:
            time.sleep(0.1)
            a = c.call({'cmd': 'balloon'})
        check(a.get('actual_pages') == N, 'balloon: the guest inflated to the target')
        check(a['inflated_pages'] >= N and a['discarded_pages'] >= N,
              'balloon info: inflated %d, discarded %s' % (a['inflated_pages'],
                                                           a['discarded_pages']))
        # the pool was written: every inflated page held memory; conf_balloon's reports
        # (before this test) gave 528 written pages and 256 never touched
        check(a['inflated_freed_pages'] >= N, 'balloon info: %d inflated pages held memory' %
              a['inflated_freed_pages'])
        check(a['reported_freed_pages'] == 512 + 16 and a['reported_pages'] == 512 + 16 + 256,
              'balloon info: reported %d pages, %d held memory' % (a['reported_pages'],
                                                                 a['reported_freed_pages']))
        st = pagemap(c, POOL, 256 + 16)
        check(st is not None and all(s & 0xf == 0 for s in st[:N]),
              'pager: every inflated page is NEW')
        check(st is not None and all(s & 0xf != 0 for s in st[N:]),
              'pager: the pages after them are not (%s)' % (st[N:N + 4] if st else None))
        check(before is not None and all(s & 0xf != 0 for s in before),
              'pager: the pool was resident before')
        out = subprocess.run([ufvmctl, sock, 'balloon'], capture_output=True, text=True)
        check(out.returncode == 0 and '(96 / 96 pages)' in out.stdout and
              'free_memory' in out.stdout and 'discarded' in out.stdout,
              'ufvmctl balloon: human output\n' + out.stdout + out.stderr)
        out = subprocess.run([ufvmctl, '--json', sock, 'balloon', '0'], capture_output=True,
                             text=True)
        check(out.returncode == 0 and json.loads(out.stdout)['target_pages'] == 0,
              'ufvmctl --json balloon 0: deflate: ' + out.stdout)
        out = subprocess.run([ufvmctl, sock, 'balloon', '5000'], capture_output=True,
                             text=True)
        check(out.returncode == 2, 'ufvmctl balloon: a size not in pages is bad usage')
        o, e = p.communicate(timeout=60 * SLOW)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    o, e = ''.join(seen) + o.decode(errors='replace'), e.decode(errors='replace')
    check(p.returncode == 0 and 'conformance:' in o and ', 0 failed' in o,
          'the guest deflated, checked its pages and passed (status %d)' % p.returncode)
    if p.returncode or 'not ok' in o:
        print(o[-3000:], e[-2000:])


def no_balloon_case(ufvm, ufvmctl, args, sock, what):
    p = start(ufvm, args, sock)
    try:
        c = Ctl(sock)
        a = c.call({'cmd': 'stats'})
        check(a.get('ok') and a['pager']['discarded_pages'] == 0,
              '%s: stats has discarded_pages' % what)
        for req in ({'cmd': 'balloon'}, {'cmd': 'balloon', 'pages': 1}):
            a = c.call(req)
            check(a.get('ok') is False and 'no balloon' in a.get('error', ''),
                  '%s: %s: %s' % (what, json.dumps(req), a.get('error')))
        out = subprocess.run([ufvmctl, sock, 'balloon'], capture_output=True, text=True)
        check(out.returncode == 1 and 'no balloon' in out.stderr,
              '%s: ufvmctl balloon fails: %s' % (what, out.stderr.strip()))
        check(c.call({'cmd': 'balloon', 'pages': -1})['error'].startswith('bad argument'),
              '%s: a malformed request is still a bad argument' % what)
        c.call({'cmd': 'stop'})
        p.communicate(timeout=30 * SLOW)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def main():
    ufvm, ufvmctl, gdir, elf = sys.argv[1:5]
    try:
        os.close(os.open('/dev/kvm', os.O_RDWR))
    except OSError as e:
        print('skipped: /dev/kvm is not usable: %s' % e.strerror)
        return 77
    with tempfile.TemporaryDirectory(prefix='ufvm-balloon-') as tmp:
        linux_case(ufvm, ufvmctl, gdir, tmp)
        no_balloon_case(ufvm, ufvmctl, ['--cmdline', 'hot=8 cold=16 rounds=60000', elf],
                        os.path.join(tmp, 'e.sock'), 'ELF guest')
    print('%d failed' % len(fails))
    return 1 if fails else 0


if __name__ == '__main__':
    sys.exit(main())
