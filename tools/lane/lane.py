#!/usr/bin/python3
"""lane.py: the hardware-virtualization test lanes: an L1 Linux with real KVM, nested.

Our development machines' KVM is PVM (no VMX/SVM). Hardware-style KVM is reachable through
an emulator: QEMU's TCG with an AMD EPYC CPU model emulates AMD SVM (lane `svm`), Bochs emulates Intel
VMX (lane `vmx`). In it boots L1, Debian's own kernel (linux-image-amd64, downloaded and
unpacked into a cache, never installed), which loads kvm-amd or kvm-intel; the host's root is
shared with it read-only (9p) under a tmpfs overlay, so the same build directory and Python
run inside. tools/lane/README.md says more.

    lane.py prepare LANE                      fetch L1's kernel into the cache
    lane.py exec LANE [-t SEC] [--out DIR] [--scratch MIB] -- CMD...
                                              boot L1, run CMD in the host's cwd, power off;
                                              --out: L1's /lane-out is DIR (kept), not a temp;
                                              --scratch: an empty disk of MIB, ext4 at
                                              /scratch (svm; a sparse file, removed after)
    lane.py shell LANE                        boot L1 with a shell on the console
    lane.py run LANE BUILD                    run every lane test of BUILD inside one L1 boot
    lane.py result LANE BUILD NAME            one test's result, running the lane if needed

Tests run in the lanes exactly as on the host: the same commands `meson introspect` lists.
Exit status of `result`: the test's own (0, 77 skip, other = fail); 77 with a reason when the
lane cannot run at all (no emulator, no kernel), 1 when the lane itself broke.
"""
import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import l1

SKIP = 77
# An L1 that breaks with tests left is replaced by a fresh one for them, while:
MAX_BOOTS = 6  # a shard has had fewer L1s than this (the first included),
# and the lane has run for less than this (seconds; a machine's REPLACE_UNTIL): a fresh L1
# then still ends in time for make test's 25 minutes (svm's lane is its longest part)
REPLACE_UNTIL = 1380
HERE = Path(__file__).resolve().parent


def die(msg, status=1):
    print('lane: %s' % msg, file=sys.stderr)
    sys.exit(status)


# ---- the tests a lane runs -------------------------------------------------------------

def lane_tests(build, lane):
    """The build's tests that name this lane: meson test 'LANE_X' runs test X inside L1."""
    info = Path(build) / 'meson-info' / 'intro-tests.json'  # what `meson introspect` reads
    try:
        listed = json.loads(info.read_text())
    except (OSError, ValueError):
        listed = json.loads(subprocess.run(['meson', 'introspect', '--tests', str(build)],
                                           check=True, capture_output=True, text=True).stdout)
    tests = {t['name']: t for t in listed}
    prefix = lane + '_'
    names = [n[len(prefix):] for n in sorted(tests)
             if n.startswith(prefix) and n[len(prefix):] in tests]
    # UFVM_LANE_TESTS: shell patterns, a comma between: only those tests (to measure or
    # try a few by hand; `result` then reruns the lane with all of them)
    pats = [p for p in os.environ.get('UFVM_LANE_TESTS', '').split(',') if p]
    if pats:
        names = [n for p in pats for n in names if fnmatch.fnmatchcase(n, p)]
        names = list(dict.fromkeys(names))
    return [tests[n] for n in names]


def stamp(build, tests):
    """What the results depend on: the files the tests run (binaries, guests, scripts).
    Paths are absolute: `run build` and `result /abs/build` must agree."""
    build = Path(build).resolve()
    h = hashlib.sha256()
    paths = set()
    for t in tests:
        for a in t['cmd']:
            # files only: a directory's mtime moves whenever anything in it does (the build
            # directory, as ninja rewrites its logs), which is not a change of the test
            if a.startswith('/') and os.path.isfile(a):
                paths.add(a)
        h.update(json.dumps([t['name'], t['cmd']]).encode())
    for d in ('vmm', 'tools', 'guests'):
        p = Path(build) / d
        if p.is_dir():
            paths.update(str(f) for f in p.rglob('*') if f.is_file() and os.access(f, os.X_OK))
            paths.update(str(f) for f in p.rglob('*.elf'))
    paths.update(str(f) for f in (HERE.parent.parent / 'tests').glob('*.py'))
    paths.update(str(f) for f in HERE.glob('*.py'))
    for p in sorted(paths):
        try:
            st = os.stat(p)
        except OSError:
            continue
        h.update(('%s %d %d\n' % (p, st.st_mtime_ns, st.st_size)).encode())
    return h.hexdigest()[:16]


# ---- running them ----------------------------------------------------------------------

def lane_dir(build, lane):
    return Path(build).resolve() / ('lane-' + lane)


def shards(tests, n, previous):
    """tests split into n lists of about equal cost: each test's seconds in the previous
    run where known (longest first, each to the least loaded), else in turn by name."""
    n = max(1, min(n, len(tests)))
    out, load = [[] for _ in range(n)], [0.0] * n
    known = [t for t in tests if t['name'] in previous]
    rest = [t for t in tests if t['name'] not in previous]
    for t in sorted(known, key=lambda t: -previous[t['name']]):
        i = load.index(min(load))
        out[i].append(t)
        load[i] += previous[t['name']]
    for k, t in enumerate(rest):
        out[k % n].append(t)
    return [sorted(o, key=lambda t: t['name']) for o in out if o]


def lane_jobs(lane):
    """How many L1s run the lane's tests side by side: UFVM_LANE_JOBS, else the machine's
    JOBS (each L1 has one vCPU; an emulated L1 waits a lot, in tests' sleeps and timeouts,
    so two of them keep two host cores busy)."""
    v = os.environ.get('UFVM_LANE_JOBS', '')
    if v.isdigit() and int(v) > 0:
        return int(v)
    return getattr(l1.machine(lane), 'JOBS', 1)


def finished(sd):
    """The names of the tests with a result in an L1's results share."""
    with contextlib.suppress(OSError):
        for line in (sd / 'results.jsonl').read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                yield json.loads(line)['name']


def run_lane(build, lane, quiet=False):
    """Boot L1 (or JOBS L1s, each with its share of the tests) and run every lane test of
    BUILD inside; results land in lane_dir."""
    tests = lane_tests(build, lane)
    if not tests:
        die('no %s lane tests in %s%s (the build\'s -Dlanes option names the lanes it '
            'has tests for)' % (lane, build, ' matching UFVM_LANE_TESTS'
                                if os.environ.get('UFVM_LANE_TESTS') else ''), 2)
    d = lane_dir(build, lane)
    previous = {}
    with contextlib.suppress(OSError, ValueError, KeyError):
        for name, r in json.loads((d / 'summary.json').read_text())['results'].items():
            previous[name] = r['seconds']
    if not previous:  # a first run: the times measured when the lane was last tuned
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads((HERE / ('costs-%s.json' % lane)).read_text())
    if d.exists():
        shutil.rmtree(d)
    (d / 'log').mkdir(parents=True)
    st = stamp(build, tests)
    # what a lane without the host's root (vmx) must be given: every file a test names
    stage = {str(HERE / 'runner.py'), str(HERE.parent.parent / 'tests')}
    for t in tests:
        wd = t.get('workdir') or str(Path(build).resolve())  # meson runs tests there
        for a in t['cmd'][1:]:
            p = os.path.join(wd, a)  # an absolute a stays itself
            if os.path.exists(p):
                stage.add(os.path.normpath(p))
    parts = shards(tests, lane_jobs(lane), previous)
    with contextlib.suppress(Exception):  # fetched once, not by each L1's thread at once
        l1.kernel(lane)
    t0 = time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = [None] * len(parts)
    breaks = []  # each time an L1 broke with tests left (one() boots a fresh one)
    gave_up = []  # each shard that ended with tests left, and why
    gaps = []  # each watched L1's longest wait between two heartbeats (l1.Watchdog)

    def one(i):
        # each L1's /lane-out (l1.py: the results share) is a directory of its own
        sd = d / ('l1-%d' % i)
        (sd / 'log').mkdir(parents=True)
        todo, cpu, earlier, failed = list(parts[i]), {}, {}, set()
        until = getattr(l1.machine(lane), 'REPLACE_UNTIL', REPLACE_UNTIL)
        for boot in range(1, MAX_BOOTS + 1):
            plan = {'lane': lane, 'timeout': l1.TEST_TIMEOUT,
                    'slowdown': l1.machine(lane).SLOWDOWN,
                    'heartbeat': getattr(l1.machine(lane), 'WATCHDOG', False),
                    'tests': [{'name': t['name'], 'cmd': t['cmd'], 'env': t.get('env'),
                               'workdir': t.get('workdir')} for t in todo]}
            (sd / 'plan.json').write_text(json.dumps(plan))
            for f in ('beat', 'watch.json'):
                with contextlib.suppress(OSError):
                    (sd / f).unlink()
            cmd = ['/usr/bin/python3', str(HERE / 'runner.py'), '/lane-out',
                   '/lane-out/plan.json']
            con = d / ('console-%d.txt' % i)
            r = res[i] = l1.execute(lane, cmd, cwd=str(Path(build).resolve()), out=sd,
                                    console=con, quiet=quiet or len(parts) > 1,
                                    stage=sorted(stage),
                                    timeout=l1.BOOT_TIMEOUT + len(todo) * 120)
            with contextlib.suppress(OSError, ValueError):
                cpu.update(json.loads((sd / 'emulator_cpu.json').read_text()))
            with contextlib.suppress(OSError, ValueError):
                gaps.append(json.loads((sd / 'watch.json').read_text())['longest_beat_gap'])
            done = set(finished(sd))
            left = [t for t in todo if t['name'] not in done]
            if not left or not r.error or r.error.startswith('cannot start L1'):
                break
            # The L1 broke (wedged, crashed, timed out) in the middle of the runner's list,
            # which it takes in order: left[0] is the test it was in. A fresh L1 runs it
            # again, then the rest; a test during which L1 breaks twice is failed.
            cur = left[0]['name']
            log = sd / 'log' / (cur + '.txt')
            text = log.read_text(errors='replace') if log.exists() else ''
            earlier.setdefault(cur, []).append(
                '--- L1 %d, boot %d, broke during this test: %s\n%s\n' % (i, boot, r.error, text))
            breaks.append('L1 %d, boot %d: %s (during %s, %d tests left)' % (
                i, boot, r.error, cur, len(left)))
            if len(earlier[cur]) >= 2:
                failed.add(cur)
                with open(sd / 'results.jsonl', 'a') as f:
                    f.write(json.dumps({'name': cur, 'rc': -1, 'seconds': 0, 'tries': 0,
                                        'l1_broke': r.error}) + '\n')
                left = left[1:]
            if not left:
                break
            spent = time.monotonic() - t0
            stop = ('this shard has had %d L1s' % boot if boot == MAX_BOOTS else
                    'the lane has run %.0f s, past the %d s after which none starts' % (
                        spent, until) if spent > until else '')
            if stop:
                gave_up.append('L1 %d: no fresh L1 for the %d tests left: %s' % (i, len(left), stop))
            with open(con, 'a') as f:
                f.write('\nlane: L1 %d broke (%s) with %d tests left; %s\n' % (
                    i, r.error, len(left), 'no fresh L1: ' + stop if stop else 'a fresh L1 runs them'))
            if stop:
                break
            todo = left
        for name, texts in earlier.items():  # what the broken L1s printed, then the last run
            log = sd / 'log' / (name + '.txt')
            last = log.read_text(errors='replace') if log.exists() and name not in failed else ''
            log.write_text(''.join(texts) + ('--- the test in a fresh L1:\n' + last if last else ''))
        (sd / 'emulator_cpu.json').write_text(json.dumps(cpu))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(parts))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    got, boot_cpu = {}, []
    for i in range(len(parts)):
        sd = d / ('l1-%d' % i)
        if (sd / 'results.jsonl').exists():
            for line in (sd / 'results.jsonl').read_text().splitlines():
                r = json.loads(line)
                got[r['name']] = dict(r, l1=i)
        cpu = {}
        with contextlib.suppress(OSError, ValueError):
            cpu = json.loads((sd / 'emulator_cpu.json').read_text())
        for n, c in cpu.items():
            if n in got:
                got[n]['emulator_cpu'] = c
        boot_cpu.append(cpu.get('boot'))
        for f in (sd / 'log').glob('*.txt'):
            f.rename(d / 'log' / f.name)
    broken = [r for r in res if r is None or r.error]
    summary = {'stamp': st,
               'lane_status': max((r.status if r else 1) for r in res),
               'lane_error': '; '.join('L1 %d: %s' % (i, r.error if r else 'did not run')
                                       for i, r in enumerate(res) if r is None or r.error)
               if broken else '',
               'seconds': round(time.monotonic() - t0, 1),
               'cpu_seconds': round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 1),
               'boot_cpu_seconds': boot_cpu, 'l1s': len(parts), 'l1_breaks': breaks,
               'l1_gave_up': gave_up, 'longest_beat_gaps': sorted(gaps),
               'l1': next((r.info for r in res if r and r.info), ''),
               'results': got, 'planned': [t['name'] for t in tests]}
    (d / 'summary.json').write_text(json.dumps(summary, indent=1))
    return summary


@contextlib.contextmanager
def lane_lock(build, lane):
    """Held while a lane runs: `result` waits for a run in progress instead of starting one."""
    with open(Path(build).resolve() / ('.lane-%s.lock' % lane), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def result(build, lane, name):
    d = lane_dir(build, lane)
    with lane_lock(build, lane):
        try:
            s = json.loads((d / 'summary.json').read_text())
        except (OSError, ValueError):
            s = None
        tests = lane_tests(build, lane)
        if not s or s['stamp'] != stamp(build, tests):
            why = l1.unavailable(lane)
            if why:
                print('lane %s cannot run here: %s' % (lane, why))
                return SKIP
            s = run_lane(build, lane, quiet=True)
    r = s['results'].get(name)
    if r is None and 'cannot start L1' in s['lane_error']:
        print('lane %s cannot run here: %s' % (lane, s['lane_error']))
        return SKIP  # e.g. no kernel could be downloaded: say why, do not fail
    log = d / 'log' / (name + '.txt')
    print('lane %s (L1: %s), test %s, inside L1:' % (lane, s.get('l1') or '?', name))
    if log.exists():
        sys.stdout.write(log.read_text(errors='replace'))
    if r is None:
        why = ('; '.join(s.get('l1_gave_up', [])) or s['lane_error'] or
               'L1 stopped before this test; see %s' % d)
        print('lane %s: no result for %s: %s' % (lane, name, why))
        for con in sorted(d.glob('console-*.txt')):
            print('--- last lines of %s ---' % con.name)
            print('\n'.join(con.read_text(errors='replace').splitlines()[-30:]))
        return 1
    print('lane %s: %s exited %d after %.1f s inside L1' % (lane, name, r['rc'], r['seconds']))
    return r['rc'] if r['rc'] in (0, SKIP) else 1


def main(argv):
    if len(argv) < 2 or argv[1] in ('-h', '--help'):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    verb, rest = argv[1], argv[2:]
    if verb == 'prepare' and len(rest) == 1:
        why = l1.unavailable(rest[0])
        if why:
            die(why, SKIP)
        l1.kernel(rest[0], verbose=True)  # the download: setup.sh does it ahead of the tests
        return 0
    if verb in ('exec', 'shell') and rest:
        lane = rest[0]
        timeout, keep, scratch = 600, None, 0
        args = rest[1:]
        while len(args) >= 2 and args[0] in ('-t', '--out', '--scratch'):
            if args[0] == '-t':
                timeout = int(args[1])
            elif args[0] == '--scratch':
                if not args[1].isdigit() or not 16 <= int(args[1]) <= 65536:
                    die('--scratch %s: give the disk\'s size in MiB, 16 to 65536' % args[1], 2)
                scratch = int(args[1])
            else:
                keep = os.path.abspath(args[1])
            args = args[2:]
        if args and args[0] == '--':
            args = args[1:]
        why = l1.unavailable(lane)
        if why:
            die(why, SKIP)
        if verb == 'shell':
            return l1.shell(lane)
        if not args:
            die('exec needs a command')
        # files the command names (and UFVM_LANE_STAGE's) go with it where L1 cannot see
        # the host's root (vmx)
        stage = [a for a in args if os.path.exists(a)]
        stage += [p for p in os.environ.get('UFVM_LANE_STAGE', '').split(':') if p]
        with contextlib.ExitStack() as st:
            out = keep or st.enter_context(tempfile.TemporaryDirectory(prefix='ufvm-lane-'))
            r = l1.execute(lane, args, cwd=os.getcwd(), out=Path(out), timeout=timeout,
                           stage=[os.path.abspath(p) for p in stage], scratch=scratch)
        if r.error:
            print('lane: %s' % r.error, file=sys.stderr)
        return r.status
    if verb == 'run' and len(rest) == 2:
        why = l1.unavailable(rest[0])
        if why:
            die(why, SKIP)
        with lane_lock(rest[1], rest[0]):
            s = run_lane(rest[1], rest[0])
        bad = [n for n in s['planned'] if n not in s['results'] or
               s['results'][n]['rc'] not in (0, SKIP)]
        print('lane %s: %d tests in %.0f s (emulator CPU %.0f s), %d not passing%s' % (
            rest[0], len(s['planned']), s['seconds'], s['cpu_seconds'], len(bad),
            (': ' + ' '.join(bad)) if bad else ''))
        return 1 if bad or s['lane_error'] else 0
    if verb == 'result' and len(rest) == 3:
        return result(rest[1], rest[0], rest[2])
    die('usage: see lane.py --help', 2)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
