#!/usr/bin/env python3
"""e2e_memcached.py: guest memory swapped to real memcached servers on loopback.

    e2e_memcached.py --list
    e2e_memcached.py --ufvm UFVM --guests DIR [CASE...]

Each case starts its own memcached servers (Debian's memcached, -M, on free
loopback ports) and stops them afterwards; misbehaving servers are a real one
stopped with SIGSTOP, or a small proxy in front of a real one that starts
answering garbage when told. Exit status: 0 passed, 1 failed, 77 skipped
(no memcached, no /dev/kvm, no userfaultfd, or a ufvm without the backend).
"""
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402
from e2e_pager import SLOW, Api, Run, expect  # noqa: E402
from hoststall import StallMeter  # noqa: E402

MIB = 1 << 20


def free_port():
    for _ in range(100):
        port = random.randint(20000, 40000)
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
                return port
            except OSError:
                continue
    raise OSError('no free port')


class Memcached:
    """A real memcached on loopback, stopped (and continued first) when the case ends."""

    def __init__(self, mem_mib=64, evict=False):
        self.port = free_port()
        cmd = ['memcached', '-l', '127.0.0.1', '-p', str(self.port), '-U', '0', '-t', '1',
               '-m', str(mem_mib)] + ([] if evict else ['-M'])
        if os.geteuid() == 0:
            cmd += ['-u', 'nobody']
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise OSError('memcached on port %d did not start' % self.port)

    @property
    def addr(self):
        return '127.0.0.1:%d' % self.port

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGCONT)
            self.p.kill()
        self.p.wait()


class Proxy:
    """Forwards to a server until .garbage is set, then answers random bytes instead."""

    def __init__(self, target_port):
        self.target, self.garbage = target_port, False
        self.ls = socket.socket()
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return '127.0.0.1:%d' % self.port

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(('127.0.0.1', self.target))
            except OSError:
                c.close()
                continue
            threading.Thread(target=self._pipe, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, True), daemon=True).start()

    def _pipe(self, a, b, to_client):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if to_client and self.garbage:
                    data = os.urandom(len(data))
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        self.ls.close()


class Hostile:
    """A memcached of our own making that speaks the binary protocol honestly (sets, gets,
    deletes, noops; "stats settings" in text, as a -M server) until .mode is set, then
    answers every get with what libmemcached does not check: 'bigkey', a key of 60000
    bytes (its result's key field holds 251); 'flood', answers to keys never asked, without
    end; 'quietflood', errors to quiet sets never made, without end (libmemcached reads
    past them inside one call). Or, from the start: 'setflood', the same in answer to
    sets; 'longstats', a text "stats settings" line that never ends."""
    HDR = '>BBHBBHIIQ'

    def __init__(self, mode=None):
        self.mode, self.store = mode, {}
        self.ls = socket.socket()
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return '127.0.0.1:%d' % self.port

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _res(self, op, opaque, status=0, key=b'', extra=b'', val=b''):
        return struct.pack(self.HDR, 0x81, op, len(key), len(extra), 0, status,
                           len(extra) + len(key) + len(val), opaque, 0) + extra + key + val

    @staticmethod
    def _recvn(c, n):
        b = b''
        while len(b) < n:
            x = c.recv(n - len(b))
            if not x:
                raise EOFError
            b += x
        return b

    def _serve(self, c):
        try:
            if c.recv(1, socket.MSG_PEEK) != b'\x80':  # text: the start-up check
                c.recv(4096)
                if self.mode == 'longstats':
                    c.sendall(b'STAT pid 1\r\nSTAT ' + b'x' * 100000)
                    time.sleep(10 * SLOW)
                else:
                    c.sendall(b'STAT maxbytes 67108864\r\nSTAT evictions off\r\nEND\r\n')
                return
            while True:
                _, op, kl, el, _, _, bl, opq, _ = struct.unpack(self.HDR, self._recvn(c, 24))
                body = self._recvn(c, bl)
                key, val = body[el:el + kl], body[el + kl:]
                if op in (0x01, 0x11) and self.mode == 'setflood':
                    while True:  # errors to quiet sets never made, without end
                        c.sendall(self._res(0x11, opq, status=5, val=b'x'))
                elif op in (0x01, 0x11):  # set, setq
                    self.store[key] = val
                    if op == 0x01:
                        c.sendall(self._res(op, opq))
                elif op in (0x04, 0x14):  # delete, deleteq
                    self.store.pop(key, None)
                    if op == 0x04:
                        c.sendall(self._res(op, opq))
                elif op in (0x09, 0x0c, 0x0d) and self.mode == 'bigkey':  # getk(q)
                    c.sendall(self._res(0x0d, opq, key=b'A' * 60000, extra=bytes(4),
                                        val=bytes(4096)))
                elif op in (0x09, 0x0c, 0x0d) and self.mode == 'quietflood':
                    while True:
                        c.sendall(self._res(0x11, opq, status=5, val=b'x'))
                elif op in (0x09, 0x0c, 0x0d) and self.mode == 'flood':
                    while True:
                        c.sendall(self._res(0x0d, opq, key=b'ufvm:not-asked', extra=bytes(4),
                                            val=bytes(4096)))
                elif op in (0x09, 0x0c, 0x0d):
                    if key in self.store:
                        c.sendall(self._res(op, opq, key=key, extra=bytes(4),
                                            val=self.store[key]))
                    elif op == 0x0c:
                        c.sendall(self._res(op, opq, status=1))
                elif op == 0x10:  # stat: the settings as a -M server has them
                    c.sendall(self._res(op, opq, key=b'evictions', val=b'off') +
                              self._res(op, opq))
                elif op == 0x0b:  # version
                    c.sendall(self._res(op, opq, val=b'1.6.18'))
                elif op == 0x07:  # quit
                    break
                else:  # noop, version and the rest: answered, empty
                    c.sendall(self._res(op, opq))
        except (EOFError, OSError, struct.error):
            pass
        c.close()

    def stop(self):
        self.ls.close()


def url(servers, query=''):
    # the servers' time to answer grows under an emulator like everything else: a test that
    # is not about timeouts must not trip the default 1 s one (UFVM_TEST_SLOWDOWN)
    if 'timeout_ms' not in query and SLOW > 1:
        query += ('&' if query else '') + 'timeout_ms=%d' % min(60000, 1000 * SLOW)
    return 'memcached://' + ','.join(s.addr for s in servers) + (('?' + query) if query else '')


def ok_guest(r, f, what):
    err = getattr(r, 'done', {}).get('err')
    expect(not err, '%s: the step before the resume failed: %s' % (what, err), f)
    expect(r.status == 0, '%s: exit status %s, want 0: %s' % (what, r.status, r.err[-400:]), f)
    expect(re.search(r'ok \(0 (mismatches|bad tags)', r.out), '%s: guest did not verify ok' % what,
           f)


def servers_json(r):
    return (r.swap or {}).get('servers', [])


def limited(ufvm, g, guest, cmdline, f, what):
    servers = [Memcached() for _ in range(3)]
    try:
        r = Run(ufvm, ['--mem', '128M', '--mem-limit', '16M', '--stats=json', '--swap',
                       url(servers), '--cmdline', cmdline, os.path.join(g, guest)])
    finally:
        for s in servers:
            s.stop()
    ok_guest(r, f, what)
    st = r.stats or {}
    expect(st.get('swapout_pages', 0) > 0 and st.get('swapin_pages', 0) > 0,
           '%s: no swap traffic' % what, f)
    sv = servers_json(r)
    expect(len(sv) == 3 and all(s['pages_written'] > 0 and s['pages_read'] > 0 for s in sv),
           '%s: per-server traffic missing: %s' % (what, sv), f)
    expect(all(s['write_errors'] == 0 and s['read_errors'] == 0 and s['bad_values'] == 0
               for s in sv), '%s: server errors: %s' % (what, sv), f)
    return '%d pages out, %d in; per server written %s' % (
        st.get('swapout_pages', 0), st.get('swapin_pages', 0),
        '/'.join(str(s['pages_written']) for s in sv))


def case_memtouch(ufvm, g, f):
    """memtouch under a limit, swapping to 3 servers: 0 mismatches."""
    return limited(ufvm, g, 'memtouch.elf', 'mib=48 passes=2', f, 'memtouch')


def case_random(ufvm, g, f):
    """random (read-modify-write, verified) under a limit, swapping to 3 servers."""
    # nearly every access is a swap-in fault, a round trip to a server: under an emulator
    # (UFVM_TEST_SLOWDOWN) fewer of them prove the same
    n = max(4000, int(60000 / SLOW))
    return limited(ufvm, g, 'random.elf', 'mib=48 accesses=%d' % n, f, 'random')


def case_swapall(ufvm, g, f):
    """Whole-VM swap-out to 3 servers (replicas=1) and prefetch swap-in, twice, under a
    limit, so reclaim writes pages again while the swap-in still frees their old copies."""
    servers = [Memcached() for _ in range(3)]
    try:
        r = Run(ufvm, ['--mem', '128M', '--mem-limit', '40M', '--stats=json', '--swap',
                       url(servers, 'replicas=1'), '--swapout-at-mark', 'written', '--swapin',
                       'prefetch', '--cmdline', 'mib=32 passes=2 pause_ms=200',
                       os.path.join(g, 'memtouch.elf')])
    finally:
        for s in servers:
            s.stop()
    ok_guest(r, f, 'swapall')
    st = r.stats or {}
    expect(st.get('swapout_all_runs') == 2 and st.get('swapin_all_pages', 0) > 8192,
           'no whole-VM swap-out and prefetch: %s' % {k: st.get(k) for k in (
               'swapout_all_runs', 'swapin_all_pages')}, f)
    return '%d pages out whole, %d prefetched' % (st.get('swapout_all_pages', 0),
                                                  st.get('swapin_all_pages', 0))


def swapped_out_then(ufvm, g, servers, query, action, extra=()):
    """memtouch written, swapped out whole through the socket, action(servers) done while it
    is out, then resumed: its verify pass reads every page back on demand. The guest
    pauses 1.5 s after writing for the hook to take it; a host that holds the hook back
    longer (the sanitizers' pass beside both lanes) lets the guest verify and exit first,
    nothing swapped out or done to the servers: then it runs once more, on a socket of its
    own, as e2e_pager's cases do."""
    d = tempfile.mkdtemp(prefix='ufvm-mc-')
    try:
        for attempt in (1, 2):
            r = swapped_out_once(ufvm, g, servers, query, action, extra,
                                 os.path.join(d, 'api%d.sock' % attempt))
            err = r.done.get('err', '')
            if attempt == 2 or r.status != 0 or not re.match(r'(stats|pause): ', err):
                break
            print('note: the guest ended before the hook swapped it out (%s); once more' % err,
                  flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return r


def swapped_out_once(ufvm, g, servers, query, action, extra, sock):
    done = {}

    def hook(run):
        api, step = None, 'connect'
        try:
            api = Api(sock)
            step = 'stats'
            while api('stats')['pager']['resident_pages'] < 8192:
                time.sleep(0.01)
            step = 'pause'
            api('pause')
            # a write that outlasts timeout_ms (a loaded host, an emulator that stalls for
            # seconds) fails its pages, which stay resident, and the swap-out says so; the
            # server is skipped a second, longer if it fails again (mm/swap_memcached.c):
            # asked again until done
            step = 'swapout'
            deadline = time.time() + 30 * SLOW
            ans = api('swapout')
            while not ans.get('ok') and time.time() < deadline:
                time.sleep(2)
                ans = api('swapout')
            if not ans.get('ok'):
                raise ValueError('the swap-out did not succeed in %d s: %s; swap: %s' % (
                    30 * SLOW, ans, api('stats').get('swap')))
            done['out'], done['ms'] = ans['swapped_pages'], ans.get('ms')
            step = 'the action on the servers'
            action(servers)
            done['t'] = time.time()
            step = 'resume'
            api('resume')
        except (OSError, ValueError, KeyError) as e:
            done['err'] = '%s: %r' % (step, e)
            try:  # not left paused until the run's time is up
                api('stop', status=3)
            except (OSError, ValueError, TypeError, AttributeError):
                pass
    Run.hook = hook
    try:
        r = Run(ufvm, ['--mem', '128M', '--stats=json', '--api', sock, '--scan-interval', 'off',
                       '--swap', url(servers, query)] + list(extra) +
                ['--cmdline', 'mib=32 pause_ms=1500', os.path.join(g, 'memtouch.elf')])
    finally:
        Run.hook = None
    r.after = time.time() - done['t'] if 't' in done else None
    r.done = done
    return r


def kill_first(servers):
    servers[0].p.kill()
    servers[0].p.wait()


def case_kill_replicas1(ufvm, g, f):
    """A server killed while the guest is swapped out, replicas=1: nothing is lost."""
    servers = [Memcached() for _ in range(3)]
    try:
        r = swapped_out_then(ufvm, g, servers, 'replicas=1', kill_first)
    finally:
        for s in servers:
            s.stop()
    expect(r.done.get('out', 0) > 8192, 'not swapped out: %s' % r.done, f)
    ok_guest(r, f, 'replicas=1')
    sv = servers_json(r)
    fb = sum(s['fallbacks'] for s in sv)
    expect(fb > 0, 'no read fell back to a replica: %s' % sv, f)
    return '%d pages out (%s ms), %d reads served by replicas' % (r.done.get('out', 0),
                                                                  r.done.get('ms'), fb)


def case_kill_replicas0(ufvm, g, f):
    """The same without replicas: the VM stops, naming the page and the server."""
    servers = [Memcached() for _ in range(3)]
    try:
        r = swapped_out_then(ufvm, g, servers, '', kill_first)
    finally:
        for s in servers:
            s.stop()
    expect(r.status == 1, 'exit status %s, want 1' % r.status, f)
    m = re.search(r'ufvm: swap memcached://\S+: read of guest page 0x[0-9a-f]+ failed: .*'
                  r'no good copy of guest page 0x[0-9a-f]+ on %s \(down\)' %
                  re.escape(servers[0].addr), r.err)
    expect(m, 'no message naming the page and the dead server: %r' % r.err[-500:], f)
    expect(not re.search(r'[1-9]\d* mismatches', r.out), 'the guest saw wrong data', f)
    return m.group(0)[:160] if m else ''


def case_full_server(ufvm, g, f):
    """A full server (-m small, -M): pages stay resident, said once; the guest runs on."""
    servers = [Memcached(mem_mib=2)]
    try:
        r = Run(ufvm, ['--mem', '128M', '--mem-limit', '16M', '--stats=json', '--swap',
                       url(servers), '--cmdline', 'mib=48', os.path.join(g, 'memtouch.elf')])
    finally:
        for s in servers:
            s.stop()
    ok_guest(r, f, 'full server')
    n = len(re.findall(r'ufvm: swap memcached://\S+: write failed: .*did not keep it', r.err))
    expect(n == 1, 'a full server reported %d times, want once: %r' % (n, r.err[-600:]), f)
    we = (r.stats or {}).get('write_errors', 0)
    expect(we > 0, 'no write errors counted', f)
    return '%d pages kept resident' % we


def bounded_stop(ufvm, g, f, what, action, servers, query, budget):
    r = swapped_out_then(ufvm, g, servers, query, action)
    expect('err' not in r.done, '%s: the swap-out step failed: %s' % (what, r.done.get('err')), f)
    expect(r.status == 1, '%s: exit status %s, want 1: %r' % (what, r.status, r.err[-300:]), f)
    expect(re.search(r'read of guest page 0x[0-9a-f]+ failed', r.err),
           '%s: no read failure message: %r' % (what, r.err[-400:]), f)
    expect(r.after is not None and r.after < budget,
           '%s: took %s s after the fault, want < %g' % (what, r.after, budget), f)
    return '%s: swapped out in %s ms, stopped %.1f s after resume' % (what, r.done.get('ms'),
                                                                      r.after or -1)


# The timeout of the cases about timeouts: short enough that a hang shows, long enough that
# a server answering through a loaded host is not taken for one (500 ms was not, under the
# sanitizers beside both lanes: the start-up check timed out; 1500 ms was not in the SVM
# lane beside the full suite, where L1 stalls for seconds). A stop within 20 of them.
HANG_MS = int(1500 * max(1, SLOW / 2))
HANG_BUDGET = 20 * HANG_MS / 1000


def case_hung_server(ufvm, g, f):
    """A server stopped (SIGSTOP) while the guest is swapped out: a bounded timeout, then
    the VM stops cleanly without replicas, or reads from a replica with one."""
    msgs = []
    servers = [Memcached() for _ in range(3)]
    try:
        msgs.append(bounded_stop(ufvm, g, f, 'replicas=0', lambda s: s[0].p.send_signal(
            signal.SIGSTOP), servers, 'timeout_ms=%d' % HANG_MS, HANG_BUDGET))
    finally:
        for s in servers:
            s.stop()
    servers = [Memcached() for _ in range(3)]
    try:
        r = swapped_out_then(ufvm, g, servers, 'replicas=1&timeout_ms=%d' % HANG_MS,
                             lambda s: s[0].p.send_signal(signal.SIGSTOP))
    finally:
        for s in servers:
            s.stop()
    ok_guest(r, f, 'replicas=1, a hung server')
    msgs.append('replicas=1: swapped out in %s ms, guest ok' % r.done.get('ms'))
    return '; '.join(msgs)


def case_garbage_server(ufvm, g, f):
    """A server that starts answering garbage while the guest is swapped out: never taken
    for a page, never a hang: the VM stops with a clear message."""
    real = Memcached()
    proxy = Proxy(real.port)
    others = [Memcached() for _ in range(2)]
    servers = [proxy] + others

    def go_bad(s):
        s[0].garbage = True
    try:
        msg = bounded_stop(ufvm, g, f, 'garbage', go_bad, servers, 'timeout_ms=%d' % HANG_MS,
                           HANG_BUDGET)
    finally:
        proxy.stop()
        for s in [real] + others:
            s.stop()
    return msg


def case_hostile_server(ufvm, g, f):
    """A server that, once the guest is swapped out, answers gets with what libmemcached
    copies unchecked (a 60000-byte key), with answers to keys never asked, or with errors
    to requests never made, without end: never a crash or a write outside ufvm's buffers
    (the sanitizers' run), never a hang: the VM stops with a clear message, as for
    garbage."""
    msgs = []
    for mode in ('bigkey', 'flood', 'quietflood'):
        srv = Hostile()

        def go(s, mode=mode):
            s[0].mode = mode
        try:
            msgs.append(bounded_stop(ufvm, g, f, mode, go, [srv], 'timeout_ms=%d' % HANG_MS,
                                     HANG_BUDGET))
        finally:
            srv.stop()
    return '; '.join(msgs)


def case_hostile_writes(ufvm, g, f):
    """A server that answers sets with errors to requests never made, without end: each
    write is given up after 4 x timeout_ms (its pages stay resident, said once) and the
    guest runs on to verify every byte, as with a full server. Before, the first write
    never returned: the run's own timeout ended it."""
    srv = Hostile('setflood')
    t0 = time.time()
    try:
        r = Run(ufvm, ['--mem', '128M', '--mem-limit', '16M', '--stats=json', '--swap',
                       url([srv], 'timeout_ms=%d' % HANG_MS), '--cmdline', 'mib=48',
                       os.path.join(g, 'memtouch.elf')])
    finally:
        srv.stop()
    took = time.time() - t0
    ok_guest(r, f, 'hostile writes')
    n = len(re.findall(r'ufvm: swap memcached://\S+: write failed', r.err))
    expect(n == 1, 'the failed writes reported %d times, want once: %r' % (n, r.err[-600:]), f)
    return '%d write errors, %.1f s' % ((r.stats or {}).get('write_errors', 0), took)


def case_bad_cluster(ufvm, g, f):
    """Bad --swap memcached:// values and unusable servers fail at start, status 2, and
    promptly: a refused connection or an evicting server costs no timeout."""
    elf = os.path.join(g, 'hello.elf')
    evicting = Memcached(evict=True)
    longstats = Hostile('longstats')
    dead = free_port()
    # the cases that reach a server get the scaled timeout (url()); the time bound scales
    # with the machine and leaves out what the host held this test back (hoststall)
    bound = 10 * SLOW
    try:
        for u, why in (('memcached://', 'no server'),
                       ('memcached://127.0.0.1', 'want HOST:PORT'),
                       ('memcached://127.0.0.1:0', 'bad port'),
                       ('memcached://127.0.0.1:%d?replicas=1' % evicting.port, 'at least 2'),
                       ('memcached://127.0.0.1:%d?colour=red' % evicting.port, 'replicas=N'),
                       (url([SimpleNamespace(addr='127.0.0.1:%d' % dead)]), 'cannot reach'),
                       (url([evicting]), 'start it with -M'),
                       (url([longstats]), 'no evictions setting')):
            t0, meter = time.time(), StallMeter()
            r = subprocess.run([ufvm, 'run', '--swap', u, elf], capture_output=True,
                               text=True, timeout=3 * bound)
            took, held = time.time() - t0, meter.stop()
            expect(r.returncode == 2 and ('swap %s: cannot open' % u) in r.stderr and
                   why in r.stderr, '%s: status %d, stderr %r' % (u, r.returncode, r.stderr), f)
            expect(took - held < bound, '%s: took %.1f s (%.1f s of it a host stall), bound %.0f s'
                   % (u, took, held, bound), f)
    finally:
        evicting.stop()
        longstats.stop()
    return ''


CASES = {n[5:]: fn for n, fn in sorted(globals().items()) if n.startswith('case_')}


def main():
    a = cases.parse()
    if a.list:
        print('\n'.join(CASES))
        return 0
    if not shutil.which('memcached'):
        print('e2e_memcached: skipped: no memcached (apt-get install memcached)')
        return 77
    if cases.no_kvm('e2e_memcached'):
        return 77
    probe = subprocess.run([a.ufvm, 'run', '--swap', 'memcached://127.0.0.1:1',
                            os.path.join(a.guests, 'hello.elf')], capture_output=True, text=True,
                           timeout=30)
    if 'without libmemcached' in probe.stderr or 'no memcached backend' in probe.stderr:
        print('e2e_memcached: skipped: ' + probe.stderr.strip())
        return 77
    if 'userfaultfd' in probe.stderr and 'cannot reach' not in probe.stderr:
        print('e2e_memcached: skipped: ' + probe.stderr.strip())
        return 77

    def one(name):
        f = []
        msg = CASES[name](a.ufvm, a.guests, f)
        return f, msg
    return cases.run(a.cases or list(CASES), one)


if __name__ == '__main__':
    sys.exit(main())
