#!/usr/bin/env python3
"""e2e_pool.py: three small VMs under one pool budget, end to end (pool/README.md).

usage: e2e_pool.py UFVMPOOL UFVM GUESTS_DIR

Checks, waiting for conditions rather than for time:
- the resident total of the VMs stays within the budget plus one reclaim batch per VM
  at every decision (the pool's time series) and at every `status`;
- a VM that exits returns its memory: the others' limits grow to fill the budget;
- a VM that cannot shrink (every swap write fails) is reported as stuck, with why, while
  the pool keeps answering and squeezes the others instead;
- a VM killed with SIGKILL is gone and its memory returns;
- malformed requests get one-line errors; status, ps, top and plot work from the CLI;
- a VM that cannot be started (its log file cannot be created) is reported gone, and the
  pool signals nothing else: not its own process group (it once did kill(0, SIGTERM));
- hostile peers (fake control sockets served by this script, attached with --attach): one
  that floods without a newline is dropped and the pool's memory stays bounded; one whose
  stats fail from the start is gone with its error, and the others still get memory; one
  whose stats fail after it was measured is charged what it held, like a late VM; one
  that never answers is charged what its process holds (RssAnon + RssShmem).
"""
import csv as csvmod
import functools
import json
import os
import signal
import subprocess
import sys
import socket
import tempfile
import threading
import time

from cases import SLOW
from ctlsock import request

POOL, UFVM, GUESTS = sys.argv[1:4]
MiB = 1 << 20
BUDGET = 56 * MiB
failures = []
call = functools.partial(request, timeout=20 * SLOW)


def check(cond, what):
    print(('ok   ' if cond else 'FAIL ') + what, flush=True)
    if not cond:
        failures.append(what)


def wait_for(what, cond, timeout=60 * SLOW):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = cond()
        if r:
            return r
        time.sleep(0.1)
    check(False, what + ' (not within %d s)' % timeout)
    return None


def vms(st):
    return {v['name']: v for v in st['vms']}


def batch(limit):
    # reclaim's batch for that limit (mm_reclaim_batch, mm/README.md): 1/256, 128 KiB to 2 MiB
    return min(2 * MiB, max(128 * 1024, limit // 256 // 4096 * 4096))


def within_budget(st):
    up = [v for v in st['vms'] if v['state'] not in ('gone', 'waiting')]
    if any(v['stuck'] or v['late'] for v in up):
        return True  # a VM that cannot shrink is charged what it holds: checked apart
    total = sum(v['resident_bytes'] for v in up)
    return total <= st['budget_bytes'] + sum(batch(v['limit_bytes']) for v in up)


def main():
    d = tempfile.mkdtemp(prefix='ufvm-e2e-pool.')
    sock, series = os.path.join(d, 'pool.sock'), os.path.join(d, 'series.jsonl')
    g = lambda n: os.path.join(GUESTS, n + '.elf')
    # a: hot/cold, long; b: sequential passes, long; c: short, exits (40 passes with a
    # 100 ms pause each: at least 4 s on any host; without the pauses, on a fast one, it
    # once ended at 0.5 s, before a and b were up)
    pool = subprocess.Popen(
        [POOL, 'run', '--budget', '%dM' % (BUDGET // MiB), '--policy', 'static', '--interval',
         '200', '--stuck', '1500', '--api', sock, '--series', series, '--dir', d, '--ufvm', UFVM,
         '--start', "a=--mem 64M --cmdline 'hot=6 cold=20 rounds=65000' " + g('hotcold'),
         '--start', "b=--mem 64M --cmdline 'mib=28 passes=100000' " + g('memtouch'),
         '--start', "c=--mem 64M --cmdline 'mib=12 passes=40 pause_ms=100' " + g('memtouch')],
        stderr=subprocess.PIPE, text=True)
    try:
        run(sock, series, d, g)
    finally:
        if pool.poll() is None:
            try:
                call(sock, {'cmd': 'stop'})
            except OSError:
                pool.send_signal(signal.SIGTERM)
        try:
            err = pool.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            pool.kill()
            err = pool.communicate()[1]
        print('--- pool stderr\n' + err)
    check(pool.returncode == 0, 'the pool exits 0 after a stop request (got %s)' % pool.returncode)
    check(not os.path.exists(sock), 'the pool removed its socket')
    # every decision in the series: resident total within budget + a batch per VM
    over, n, ts = [], 0, {}
    for line in open(series):
        o = json.loads(line)
        if 'resident_bytes' in o and 'vm' in o:
            ts.setdefault(o['t'], []).append(o)
    for t, rows in ts.items():
        if any(r['state'] in ('stuck', 'late') for r in rows):
            continue
        n += 1
        # d cannot shrink (every swap write fails): until the pool has seen that (--stuck),
        # what d holds beyond its limit is d's doing; the rest must keep within the budget
        total = sum(min(r['resident_bytes'], r['limit_bytes']) if r['vm'] == 'd' else
                    r['resident_bytes'] for r in rows)
        if total > BUDGET + sum(batch(r['limit_bytes']) for r in rows):
            over.append((t, total // MiB))
    check(n > 10 and not over, 'all %d decisions within budget + batch (over: %s)' % (n, over[:5]))
    # a CSV series, and --exit-when-done with the VM's own exit status
    csv = os.path.join(d, 'series.csv')
    r = subprocess.run([POOL, 'run', '--budget', '16M', '--interval', '100', '--series', csv,
                        '--dir', os.path.join(d, 'csv'), '--ufvm', UFVM, '--exit-when-done', '-q',
                        '--start', "one=--mem 32M --cmdline 'mib=8 passes=20' " +
                        os.path.join(GUESTS, 'memtouch.elf')], capture_output=True, text=True,
                       timeout=120)
    rows = open(csv).read().splitlines()
    check(r.returncode == 0, '--exit-when-done: exit 0 after the VM exited 0 (%d: %s)' % (
        r.returncode, r.stderr[-300:]))
    check(rows[0].startswith('t,kind,vm,state,resident_bytes') and
          any(',vm,one,' in x for x in rows) and any(',event,one,' in x and 'exited' in x for x in rows),
          'CSV series: header, VM rows and events (%d rows)' % len(rows))
    widths = set(len(x) for x in csvmod.reader(rows))
    check(widths == {len(rows[0].split(','))}, 'CSV series: every row has the header\'s columns %s' % widths)
    launch_fails(d)
    hostile_peers(d)
    hung_peer(d)
    png = os.path.join(d, 'pool.png')
    r = subprocess.run([POOL, 'plot', series, png], capture_output=True, text=True)
    check(r.returncode == 0 and os.path.getsize(png) > 2000, 'plot writes a PNG: ' + r.stderr)
    if not failures:
        subprocess.run(['rm', '-rf', d])
    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


def in_own_session(cmd, timeout):
    """Run cmd under a shell that reports a SIGTERM to its process group, in a session of
    its own (a pool that signals its group cannot reach the test runner): (rc, out, err)."""
    w = subprocess.Popen(['bash', '-c', 'trap "echo wrapper got SIGTERM" TERM; "$@"; echo "rc=$?"',
                          'wrapper'] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = w.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(w.pid, signal.SIGKILL)
        out, err = w.communicate()
        out += 'rc=timeout'
    rc = out.rsplit('rc=', 1)[1].strip() if 'rc=' in out else '?'
    return rc, out, err


def launch_fails(d):
    # the VM's log file cannot be created (a directory is in its place): launch fails
    # before fork, while the VM has no pid yet
    fd = os.path.join(d, 'fail')
    os.makedirs(os.path.join(fd, 'a.log'))
    start = "a=--mem 32M --cmdline 'mib=4 passes=1' " + os.path.join(GUESTS, 'memtouch.elf')
    rc, out, err = in_own_session([POOL, 'run', '--budget', '64M', '--interval', '100', '--dir', fd,
                                   '--ufvm', UFVM, '--exit-when-done', '--start', start],
                                  timeout=30 * SLOW)
    check('wrapper got SIGTERM' not in out, 'a failed launch signals nobody else (%r)' % out)
    check(rc == '1', '--exit-when-done: a VM that could not start ends the pool with 1 (rc=%s)' % rc)
    check('a: gone: cannot start: cannot create its log file' in err,
          'the failed launch is reported: ' + err[-300:])
    # without --exit-when-done the pool carries on: the VM is gone, the pool answers
    sock = os.path.join(fd, 'pool.sock')
    w = subprocess.Popen(['bash', '-c', 'trap "echo wrapper got SIGTERM" TERM; "$@"; echo "rc=$?"',
                          'wrapper', POOL, 'run', '--budget', '64M', '--interval', '100',
                          '--dir', fd, '--ufvm', UFVM, '--api', sock, '-q', '--start', start],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        st = wait_for('the pool answers after a failed launch',
                      lambda: os.path.exists(sock) and call(sock, {'cmd': 'status'}), 20 * SLOW)
        a = vms(st)['a'] if st else {}
        check(a.get('state') == 'gone' and 'cannot create its log file' in a.get('why', '') and
              a.get('exit') == {'status': 127} and a.get('pid') == 0,
              'status: the VM that could not start is gone, says why, exit 127: %s' % {
                  k: a.get(k) for k in ('state', 'why', 'exit', 'pid')})
        r = call(sock, {'cmd': 'stop'}) if st else {}
        check(r.get('ok') is True, 'the pool still takes requests: stop: %s' % r)
        out, err = w.communicate(timeout=20 * SLOW)
    except (subprocess.TimeoutExpired, OSError) as e:
        os.killpg(w.pid, signal.SIGKILL)
        out, err = w.communicate()
        check(False, 'the pool with a failed launch stops on request (%s)' % e)
    check('wrapper got SIGTERM' not in out and out.strip().endswith('rc=0'),
          'stopped, exit 0, nobody else signalled (%r)' % out)


class FakeVM:
    """A control socket served by this script, for peers no real VM would be:
    'flood' sends bytes without a newline (up to FLOOD bytes, or until the pool closes);
    'refuse' answers every request {"ok":false,"error":"unknown command"} (another pool's
    socket does); 'flaky' answers like a VM with the pager, then its stats fail."""
    FLOOD = 64 * MiB

    def __init__(self, path, mode):
        self.path, self.mode, self.sent, self.closed_by_peer = path, mode, 0, False
        self.stats_answered = 0
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            if self.mode == 'flood':
                chunk = b'x' * 65536
                while self.sent < self.FLOOD:
                    self.sent += c.send(chunk)
                return
            buf = b''
            while True:
                got = c.recv(65536)
                if not got:
                    return
                buf += got
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    c.sendall(json.dumps(self.answer(json.loads(line))).encode() + b'\n')
        except (BrokenPipeError, ConnectionResetError):
            self.closed_by_peer = True
        finally:
            c.close()

    def answer(self, req):
        if self.mode == 'refuse':
            return {'ok': False, 'error': 'unknown command'}
        if req.get('cmd') == 'stats':
            self.stats_answered += 1
            if self.stats_answered > 2:
                return {'ok': False, 'error': 'stats broke'}
            return {'ok': True, 'vm': {'pages': 8192, 'cpus': 1, 'paused': False},
                    'pager': {'resident_pages': 1024, 'swapped_pages': 0, 'limit_pages': 2048}}
        if req.get('cmd') == 'limit':
            return {'ok': True}
        return {'ok': False, 'error': 'access sampling is off'}

    def close(self):
        self.srv.close()


def proc_status(pid, key):
    for line in open('/proc/%d/status' % pid):
        if line.startswith(key + ':'):
            return int(line.split()[1]) * 1024
    return 0


def pool_session(pool, sock, what, body):
    """body() beside a pool started in a session of its own, then a stop request: the pool
    ends with status 0 (one that does not is killed, and that is a failure)."""
    try:
        body()
        r = call(sock, {'cmd': 'stop'})
        check(r.get('ok') is True, 'stop %s: %s' % (what, r))
        err = pool.communicate(timeout=30 * SLOW)[1]
    except (subprocess.TimeoutExpired, OSError) as e:
        os.killpg(pool.pid, signal.SIGKILL)
        err = pool.communicate()[1]
        check(False, 'the pool %s stops on request (%s)' % (what, e))
    check(pool.returncode == 0, 'it exits 0 (%s)' % pool.returncode)
    print('--- pool stderr (%s)\n%s' % (what, err[-3000:]))


def hostile_peers(d):
    hd = os.path.join(d, 'hostile')
    os.makedirs(hd)
    sock = os.path.join(hd, 'pool.sock')
    fakes = {m: FakeVM(os.path.join(hd, m + '.sock'), m) for m in ('flood', 'refuse', 'flaky')}
    # in a session of its own: nothing it does reaches the test runner
    pool = subprocess.Popen(
        [POOL, 'run', '--budget', '64M', '--interval', '100', '--late', str(int(3000 * SLOW)),
         '--api', sock, '--dir', hd, '--ufvm', UFVM,
         '--start', "v=--mem 32M --cmdline 'mib=8 passes=100000' " + os.path.join(GUESTS, 'memtouch.elf')] +
        sum((['--attach', '%s=%s' % (m, f.path)] for m, f in fakes.items()), []),
        stderr=subprocess.PIPE, text=True, start_new_session=True)

    def body():
        st = wait_for('the pool answers beside hostile peers',
                      lambda: os.path.exists(sock) and call(sock, {'cmd': 'status'}), 20 * SLOW)
        # the flood: dropped once a line passes 64 KiB, the pool's memory stays bounded
        fl = fakes['flood']
        st = wait_for('the flooding peer is gone', lambda: (lambda s: s if vms(s)['flood']['state'] == 'gone'
                                                            else None)(call(sock, {'cmd': 'status'})))
        if st:
            check('too long' in vms(st)['flood']['why'], 'the flood is gone, says why: ' + vms(st)['flood']['why'])
        wait_for('the flooding peer stops (the pool closed, or it sent all)',
                 lambda: fl.closed_by_peer or fl.sent >= fl.FLOOD, 30 * SLOW)
        # VmHWM: the peak (a pool that buffered the flood frees it when the link closes)
        hwm = proc_status(pool.pid, 'VmHWM')
        check(fl.closed_by_peer and hwm < 32 * MiB,
              'the pool closed the flood after %.1f MiB, its peak RSS %.1f MiB' % (
                  fl.sent / MiB, hwm / MiB))
        # a peer whose stats fail from the start: gone, with its error; the others grow
        st = wait_for('the peer whose stats fail is gone', lambda: (lambda s: s if vms(s)['refuse']['state'] == 'gone'
                                                                    else None)(call(sock, {'cmd': 'status'})))
        if st:
            check('unknown command' in vms(st)['refuse']['why'],
                  'it says why: ' + vms(st)['refuse']['why'])
        st = wait_for('the started VM runs beside them', lambda: (lambda s: s if vms(s)['v']['state'] == 'up' and
                                                                  vms(s)['v']['resident_bytes'] >= 8 * MiB
                                                                  else None)(call(sock, {'cmd': 'status'})))
        if st:
            check(vms(st)['v']['limit_bytes'] >= 16 * MiB,
                  'the started VM got memory: limit %d MiB' % (vms(st)['v']['limit_bytes'] // MiB))
        # a measured peer whose stats then fail: late, charged what it held (8 MiB limit)
        st = wait_for('the peer whose stats broke is late', lambda: (lambda s: s if vms(s)['flaky']['state'] == 'late'
                                                                     else None)(call(sock, {'cmd': 'status'})))
        if st:
            f = vms(st)['flaky']
            check(f['charge_bytes'] >= max(8 * MiB, f['limit_bytes']) and any('stats broke' in e['what'] for e in st['events']
                                                        if e['vm'] == 'flaky'),
                  'charged what it held (%d MiB), the failure reported' % (f['charge_bytes'] // MiB))
    try:
        pool_session(pool, sock, 'beside hostile peers', body)
    finally:
        for f in fakes.values():
            f.close()


HANG = r"""
import socket, sys, threading
held = b'\1' * (40 << 20)  # 40 MiB it holds (written: resident)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(4)
print('ready', flush=True)
def serve(c):
    while c.recv(65536):
        pass  # never answers
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""


def hung_peer(d):
    # a VMM that hangs before its first answer: a process of its own holding 40 MiB,
    # serving a socket that never answers; attached beside a VM the pool starts
    hd = os.path.join(d, 'hung')
    os.makedirs(hd)
    sock, hsock = os.path.join(hd, 'pool.sock'), os.path.join(hd, 'hang.sock')
    hang = subprocess.Popen([sys.executable, '-c', HANG, hsock], stdout=subprocess.PIPE, text=True)
    hang.stdout.readline()
    budget = 64 * MiB
    pool = subprocess.Popen(
        [POOL, 'run', '--budget', '64M', '--interval', '100', '--late', str(int(1000 * SLOW)),
         '--api', sock, '--dir', hd, '--ufvm', UFVM, '--attach', 'hang=' + hsock,
         '--start', "v=--mem 64M --cmdline 'mib=8 passes=100000' " + os.path.join(GUESTS, 'memtouch.elf')],
        stderr=subprocess.PIPE, text=True, start_new_session=True)

    def body():
        st = wait_for('the hung peer is late and the started VM up', lambda: (lambda s: s if (
            vms(s)['hang']['state'] == 'late' and vms(s)['v']['state'] == 'up') else None)(
            call(sock, {'cmd': 'status'})) if os.path.exists(sock) else None)
        if st:
            h, v = vms(st)['hang'], vms(st)['v']
            rss = proc_status(hang.pid, 'RssAnon') + proc_status(hang.pid, 'RssShmem')
            check(h['pid'] == hang.pid and 40 * MiB <= h['charge_bytes'] <= rss + 4 * MiB,
                  'the hung peer (pid %s) is charged what its process holds: %.1f MiB (it holds %.1f)' % (
                      h['pid'], h['charge_bytes'] / MiB, rss / MiB))
            check(v['limit_bytes'] + h['charge_bytes'] <= budget,
                  'the started VM gets what the hung one leaves: limit %.1f MiB' % (v['limit_bytes'] / MiB))
    try:
        pool_session(pool, sock, 'beside a hung peer', body)
    finally:
        hang.kill()
        hang.wait()


def run(sock, series, d, g):
    st = wait_for('the pool socket answers', lambda: os.path.exists(sock) and call(sock, {'cmd': 'status'}))
    if not st:
        return
    wait_for('three VMs up', lambda: sum(v['state'] == 'up' for v in call(sock, {'cmd': 'status'})['vms']) == 3)
    # static: an equal third each, and the total kept while they run
    st = wait_for('limits split equally', lambda: (lambda s: s if all(
        abs(v['limit_bytes'] - BUDGET // 3) <= 4096 for v in s['vms']) else None)(call(sock, {'cmd': 'status'})))
    samples = []
    for _ in range(10):
        st = call(sock, {'cmd': 'status'})
        samples.append(within_budget(st))
        time.sleep(0.1)
    check(all(samples), 'status: resident total within budget + batch while three run')

    # c exits: its memory returns to a and b
    # (its socket may close before the pool reaps it: wait for both)
    st = wait_for('c exits', lambda: (lambda s: s if vms(s)['c']['state'] == 'gone' and 'exit' in vms(s)['c']
                                      else None)(call(sock, {'cmd': 'status'})))
    if st:
        check(vms(st)['c'].get('exit') == {'status': 0}, 'c exited with status 0: %s' % vms(st)['c'].get('exit'))
    st = wait_for('a and b get the whole budget', lambda: (lambda s: s if abs(
        vms(s)['a']['limit_bytes'] + vms(s)['b']['limit_bytes'] - BUDGET) <= 8192 else None)(
        call(sock, {'cmd': 'status'})))

    # d cannot shrink: every swap write fails (ENOSPC)
    r = call(sock, {'cmd': 'start', 'name': 'd', 'args': [
        '--mem', '64M', '--test-swap-fail=write:28:0', '--cmdline', 'mib=40 passes=100000',
        g('memtouch')]})
    check(r.get('ok') is True, 'start d: %s' % r)
    st = wait_for('d reported stuck', lambda: (lambda s: s if vms(s)['d']['stuck'] else None)(
        call(sock, {'cmd': 'status'})))
    if st:
        dv = vms(st)['d']
        check('cannot shrink' in dv['why'], 'd says why: ' + dv['why'])
        check(any('cannot shrink' in e['what'] for e in st['events'] if e['vm'] == 'd'),
              'an event reports it')
        t0 = time.monotonic()
        call(sock, {'cmd': 'status'})
        check(time.monotonic() - t0 < 2 * SLOW, 'the pool answers while d is stuck')
        # the others are squeezed to what d leaves
        st = wait_for('a and b squeezed to what d leaves', lambda: (lambda s: s if (
            vms(s)['a']['limit_bytes'] + vms(s)['b']['limit_bytes'] + vms(s)['d']['charge_bytes']
            <= BUDGET + 8192 or vms(s)['a']['limit_bytes'] == 4 * MiB) else None)(call(sock, {'cmd': 'status'})))
        # killed: gone, its memory returns
        os.kill(dv['pid'], signal.SIGKILL)
        st = wait_for('d gone after SIGKILL', lambda: (lambda s: s if vms(s)['d']['state'] == 'gone' else None)(
            call(sock, {'cmd': 'status'})))
        if st:
            check(vms(st)['d'].get('exit') in ({'signal': 9}, None), 'd was killed by signal 9')
        wait_for('a and b get the whole budget back', lambda: (lambda s: s if abs(
            vms(s)['a']['limit_bytes'] + vms(s)['b']['limit_bytes'] - BUDGET) <= 8192 else None)(
            call(sock, {'cmd': 'status'})))

    # bad requests: one-line errors, nothing changes
    for req, want in (('not json', 'malformed request'), ('[1]', 'not a JSON object'),
                      ({'cmd': 'fly'}, 'unknown command'), ({'cmd': 'status', 'x': 1}, "unknown key 'x'"),
                      ({'cmd': 'start', 'name': 'b', 'args': ['x.elf']}, 'in the pool'),
                      ({'cmd': 'start', 'name': 'e', 'args': ['--mem-limit', '8M', 'x.elf']}, '--mem-limit'),
                      ({'cmd': 'start', 'name': 'bad/name', 'args': ['x.elf']}, 'VM name'),
                      ({'cmd': 'attach', 'name': 'f', 'socket': '/nonexistent.sock'}, 'no such socket'),
                      ({'cmd': 'set', 'budget': '1M'}, 'at least 4M'),
                      ({'cmd': 'set', 'policy': 'greedy'}, 'static, wss, tax or pressure'),
                      ({'cmd': 'detach', 'name': 'a'}, 'cannot detach')):
        r = call(sock, req)
        check(r.get('ok') is False and want in r.get('error', ''), 'error for %s: %s' % (req, r.get('error')))
    r = call(sock, {'cmd': 'mark', 'label': 'checked errors', 'id': 7})
    check(r == {'ok': True, 'id': 7}, 'mark echoes the id: %s' % r)
    r = call(sock, {'cmd': 'set', 'policy': 'pressure'})
    check(r.get('policy') == 'pressure', 'policy switched at run time')

    # the CLI
    r = subprocess.run([POOL, sock, 'status'], capture_output=True, text=True)
    check(r.returncode == 0 and 'NAME' in r.stdout and 'pressure' in r.stdout, 'ufvmpool status:\n' + r.stdout)
    r = subprocess.run([POOL, sock, 'ps'], capture_output=True, text=True)
    check(r.returncode == 0 and 'RssShmem' in r.stdout and '\na ' in r.stdout, 'ufvmpool ps:\n' + r.stdout)
    r = subprocess.run([POOL, sock, 'top', '-n', '2'], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.count('NAME') == 2, 'ufvmpool top -n 2 (not a tty): two tables')
    r = subprocess.run([POOL, sock, 'attach'], capture_output=True, text=True)
    check(r.returncode == 2, 'bad usage exits 2')


if __name__ == '__main__':
    sys.exit(main())
