"""runner.py: inside L1, run a lane's tests one by one and record each one's status and log.

    python3 runner.py OUT_DIR PLAN.json

Each test runs as meson would run it (its command, environment and working directory) with
a timeout. Python's start costs 1-3 s under an emulator, ~1 s of it imports; most tests are
Python scripts, so this process imports the common modules once and forks a child per
script test that runs the script as __main__ (runpy), as `python3 script args` would.
A failed test gets one more try, both logs kept: times inside the emulator are 10-50x the
host's and noisy; a failure that repeats is a failure.
Results: OUT_DIR/results.jsonl (a line per test) and OUT_DIR/log/NAME.txt. OUT_DIR/beat is
rewritten every few seconds while this runs if the plan asks (svm): the host tells a
wedged L1 (no beat) from a slow test (lane.py: it boots a fresh L1 for the tests left).
"""
# the modules the tests import, imported once before any fork
import argparse, base64, contextlib, dataclasses, errno, fcntl, hashlib, json, os, pty  # noqa
import random, re, runpy, select, shutil, signal, socket, stat, statistics, struct  # noqa
import subprocess, sys, tempfile, termios, textwrap, threading, time, traceback  # noqa
from pathlib import Path  # noqa


def is_python(c):
    return os.path.basename(c).startswith('python3')


def run_script(t, log_fd, timeout):
    """fork; the child runs the Python script of t's command as __main__."""
    cmd = t['cmd']
    script, args = cmd[1], cmd[2:]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            sys.stdin = open(0, closefd=False)
            sys.stdout = open(1, 'w', buffering=1, closefd=False)
            sys.stderr = open(2, 'w', buffering=1, closefd=False)
            os.environ.update(t.get('env') or {})
            if t.get('workdir'):
                os.chdir(t['workdir'])
            sys.argv = [script] + args
            sys.path[0] = os.path.dirname(os.path.abspath(script))
            runpy.run_path(script, run_name='__main__')
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code & 255)
    return wait_child(pid, timeout)


def wait_child(pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)


def run_command(t, log_fd, timeout):
    p = subprocess.Popen(t['cmd'], cwd=t.get('workdir') or None,
                         env=dict(os.environ, **(t.get('env') or {})), stdout=log_fd,
                         stderr=log_fd, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return None


def attempt(t, log, mode, timeout):
    with open(log, mode) as f:
        f.write('$ %s\n' % ' '.join(t['cmd']))
        f.flush()
        py = is_python(t['cmd'][0]) and len(t['cmd']) > 1 and t['cmd'][1].endswith('.py')
        rc = (run_script if py else run_command)(t, f.fileno(), timeout)
        if rc is None:
            f.write('\nlane: timed out after %d s inside L1\n' % timeout)
            return -1
        return rc


def heartbeat(path, every=5):
    """A child that rewrites PATH (a new file renamed over it: a reader never sees it
    half written) every few seconds while this process lives; its pid. Forked before
    anything else runs, with no thread yet to leave a lock held."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()  # a test's timeout kills its own process group, never this one
        n = 0
        while os.getppid() == parent:
            n += 1
            with open(path + '.new', 'w') as f:
                f.write('%d %.1f\n' % (n, time.monotonic()))
            os.rename(path + '.new', path)
            time.sleep(every)
    finally:
        os._exit(0)


def main():
    out, plan = sys.argv[1], json.load(open(sys.argv[2]))
    beat = heartbeat(os.path.join(out, 'beat')) if plan.get('heartbeat') else None
    try:
        run_plan(out, plan)
    finally:
        if beat:  # gone before L1 packs up its results (vmx tars them)
            os.kill(beat, signal.SIGKILL)
            os.waitpid(beat, 0)


def run_plan(out, plan):
    # tests scale their waits and latency bounds by it: this machine is that much slower
    os.environ.setdefault('UFVM_TEST_SLOWDOWN', str(plan['slowdown']))
    os.makedirs(os.path.join(out, 'log'), exist_ok=True)
    with open(os.path.join(out, 'results.jsonl'), 'a') as done:
        for t in plan['tests']:
            log = os.path.join(out, 'log', t['name'] + '.txt')
            t0 = time.monotonic()
            rc = attempt(t, log, 'w', plan['timeout'])
            tries = 1
            if rc not in (0, 77):
                with open(log, 'a') as f:
                    f.write('\nlane: status %d; trying once more\n\n' % rc)
                rc = attempt(t, log, 'a', plan['timeout'])
                tries = 2
            dt = time.monotonic() - t0
            print('lane: %s rc=%d %.1fs%s' % (t['name'], rc, dt,
                                               ' (2 tries)' if tries > 1 else ''), flush=True)
            done.write(json.dumps({'name': t['name'], 'rc': rc, 'seconds': round(dt, 2),
                                   'tries': tries}) + '\n')
            done.flush()
            os.fsync(done.fileno())


if __name__ == '__main__':
    main()
