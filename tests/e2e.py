#!/usr/bin/env python3
"""e2e.py: end-to-end tests: run guests under `ufvm run`, judge output and exit status.

    e2e.py --list                               names of all cases, one a line
    e2e.py --ufvm UFVM --guests DIR [CASE...]   run the cases (all if none given)

Exit status: 0 all passed, 1 a case failed, 77 skipped (no usable /dev/kvm).
Every ufvm run has a timeout, so a hanging VM fails its case instead of the suite.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import badelf

# seconds per ufvm run; every case here takes well under 2 s (on a slower machine, such as
# an emulator's nested KVM, UFVM_TEST_SLOWDOWN multiplies it)
TIMEOUT = 30 * float(os.environ.get('UFVM_TEST_SLOWDOWN', '1'))
MEM = '128M'
SMALL = '64M'  # negative guests and bad images: badelf.py assumes 64 MiB

# Messages of ufvm itself (docs/ABI.md): option errors point at --help.
USAGE_HINT = r'(?i)usage|--help'


@dataclass
class Case:
    args: list          # ufvm arguments; '{guest:NAME}' and '{elf:NAME}' are expanded
    status: int = 0     # expected exit status of ufvm
    want: list = field(default_factory=list)     # regexes the output must match
    reject: list = field(default_factory=list)   # regexes it must not match
    check: object = None  # optional f(output) -> error string or None
    max_rss_mib: int = 0  # if set: ufvm's peak RSS (guest RAM included) must stay below


def run_guest(guest, cmdline=None, mem=MEM, cpus=None, extra=()):
    args = ['run'] + list(extra) + ['--mem', mem]
    if cpus is not None:
        args += ['--cpus', str(cpus)]
    if cmdline is not None:
        args += ['--cmdline', cmdline]
    return args + ['{guest:%s}' % guest]


def hottest_share(lo, hi):
    """random prints the hottest page's share of accesses: a crude check of the distribution."""
    def check(out):
        m = re.search(r'hottest page got \d+ accesses \((\d+)\.(\d+)%\)', out)
        if not m:
            return 'no "hottest page" line'
        share = int(m.group(1)) + int(m.group(2)) / 100
        if not lo <= share <= hi:
            return 'hottest page share %.2f%% is outside [%g%%, %g%%]' % (share, lo, hi)
        return None
    return check


def smp_lines(n):
    def check(out):
        got = len(re.findall(r'^smp: cpu \d+: write', out, re.M))
        return None if got == n else 'expected %d per-vCPU lines, got %d' % (n, got)
    return check


def marks_in_order(*labels):
    def check(out):
        pos = 0
        for label in labels:
            m = re.compile(r"mark '%s'" % re.escape(label)).search(out, pos)
            if not m:
                return "mark '%s' missing or out of order" % label
            pos = m.end()
        return None
    return check


OK = r'\b(ok) \(0 '
NOT_FAILED = [r'FAILED']

CASES = {
    # --- hello: boot info, command line, exit status plumbing
    'hello': Case(run_guest('hello', 'a=1 b=two', mem=SMALL),
                  want=[r'Hello from ufvm guest \(cpu 0 of 1, 64 MiB RAM\)',
                        r'cmdline: "a=1 b=two"', r'argv\[2\] = "b=two"', r'abi 1\b']),
    'hello-exit-status': Case(run_guest('hello', 'exit=7', mem=SMALL), status=7),
    'hello-4cpus': Case(run_guest('hello', mem=SMALL, cpus=4),
                        want=[r'\(cpu 0 of 4, 64 MiB RAM\)']),
    'hello-64g': Case(run_guest('hello', 'probe', mem='64G'),
                      want=[r'65536 MiB RAM', r'probe: 64 GiB steps and the last word at '
                            r'0xffffffff8: ok']),
    'hello-64cpus': Case(run_guest('hello', mem=SMALL, cpus=64),
                         want=[r'\(cpu 0 of 64, 64 MiB RAM\)']),
    'smp-64cpus': Case(run_guest('smp', 'mib=16 iters=2000', mem='256M', cpus=64), want=[OK],
                       reject=NOT_FAILED, check=smp_lines(64)),
    'hello-cmdline-max': Case(run_guest('hello', 'x' * 4095, mem=SMALL),
                              want=[r'cmdline: "x{4095}"']),
    'hello-bad-param': Case(run_guest('hello', 'exit=300', mem=SMALL), status=2,
                            want=[r'usage: hello']),
    # --- memtouch: pattern write + verify
    'memtouch-1m': Case(run_guest('memtouch', 'mib=1 passes=2'), want=[OK], reject=NOT_FAILED),
    'memtouch-16m': Case(run_guest('memtouch', 'mib=16 passes=2 seed=42'), want=[OK],
                         reject=NOT_FAILED),
    'memtouch-96m': Case(run_guest('memtouch', 'mib=96 passes=2'),
                         want=[OK, r'pass 1: 0 mismatches', r'verify +96 MiB in .* MiB/s'],
                         reject=NOT_FAILED),
    'memtouch-marks': Case(run_guest('memtouch', 'mib=4 pause_ms=20', extra=['-v']),
                           want=[OK],
                           check=marks_in_order('write-start', 'write-done', 'written',
                                                'verify-start', 'verify-done')),
    'memtouch-too-big': Case(run_guest('memtouch', 'mib=1024', mem=SMALL), status=2,
                             want=[r'does not fit', r'usage: memtouch']),
    'memtouch-bad-value': Case(run_guest('memtouch', 'mib=12Q', mem=SMALL), status=2,
                               want=[r"'12Q' is not a valid number", r'usage: memtouch']),
    'memtouch-unknown-key': Case(run_guest('memtouch', 'pages=3', mem=SMALL), status=2,
                                 want=[r"unknown key 'pages'", r'usage: memtouch']),
    # --- hotcold
    'hotcold': Case(run_guest('hotcold', 'hot=8 cold=48 rounds=6'),
                    want=[OK, r'round 6: [\d.]+ ms'], reject=NOT_FAILED),
    'hotcold-defaults': Case(run_guest('hotcold'), want=[OK, r'round 10:'], reject=NOT_FAILED),
    # --- random
    'random-uniform': Case(run_guest('random', 'mib=32 accesses=1M'),
                           want=[OK, r'[\d.]+ accesses/s'], reject=NOT_FAILED,
                           check=hottest_share(0, 0.1)),
    'random-zipf': Case(run_guest('random', 'mib=32 dist=zipf theta=0.99 accesses=1M seed=3'),
                        want=[OK, r'zipf theta=0\.990000'], reject=NOT_FAILED,
                        check=hottest_share(5, 20)),
    'random-zipf-mild': Case(run_guest('random', 'mib=16 dist=zipf theta=0.5 accesses=500K'),
                             want=[OK], reject=NOT_FAILED, check=hottest_share(0.2, 3)),
    'random-bad-theta': Case(run_guest('random', 'dist=zipf theta=1.5', mem=SMALL), status=2,
                             want=[r'usage: random']),
    'random-bad-dist': Case(run_guest('random', 'dist=normal', mem=SMALL), status=2,
                            want=[r'usage: random']),
    # --- smp
    'smp-1cpu': Case(run_guest('smp', 'mib=16', cpus=1), want=[OK], reject=NOT_FAILED,
                     check=smp_lines(1)),
    'smp-2cpus': Case(run_guest('smp', 'mib=16', cpus=2), want=[OK], reject=NOT_FAILED,
                      check=smp_lines(2)),
    'smp-3cpus': Case(run_guest('smp', 'mib=16 iters=300000 counters=7', cpus=3), want=[OK],
                      reject=NOT_FAILED, check=smp_lines(3)),
    'smp-4cpus': Case(run_guest('smp', 'mib=32', cpus=4), want=[OK], reject=NOT_FAILED,
                      check=smp_lines(4)),
    # --- hypercall arguments: stop the VM (status 2) vs. an error code to the guest
    'badaddr-high': Case(run_guest('badaddr', 'where=high', mem=SMALL), status=2,
                         want=[r'0xfffff000.*outside guest RAM|outside guest RAM.*0xfffff000'],
                         reject=NOT_FAILED),
    'badaddr-end': Case(run_guest('badaddr', 'where=end', mem=SMALL), status=2,
                        want=[r'0x4000000\b.*outside guest RAM'], reject=NOT_FAILED),
    'badaddr-straddle': Case(run_guest('badaddr', 'where=straddle', mem=SMALL), status=2,
                             want=[r'0x3fffff8\b.*outside guest RAM'], reject=NOT_FAILED),
    'badbuf': Case(run_guest('badbuf', mem=SMALL),
                   want=[r'badbuf: ok \(0 wrong', r'buf just past the end of RAM +-> ret -14'],
                   reject=NOT_FAILED),
    # --- guest crashes: reported with vector and registers, status 3
    'nullderef': Case(run_guest('nullderef', mem=SMALL), status=3,
                      want=[r'(?i)page fault|#PF', r'(?i)\bcr2[ =:]+(0x)?0+\b',
                            r'(?i)\brip[ =:]+(0x)?0*8000'],
                      reject=NOT_FAILED),
    'divzero': Case(run_guest('divzero', mem=SMALL), status=3,
                    want=[r'(?i)divide|#DE'], reject=NOT_FAILED),
    'triplefault': Case(run_guest('triplefault', mem=SMALL), status=3,
                        want=[r'IDT cleared', r'(?i)triple fault|shutdown'], reject=NOT_FAILED),
    # a crash report forged from CPL 3 on the stubs' port is an unexpected port, not a crash
    'forged-exception': Case(run_guest('forgeexc', mem=SMALL), status=3,
                             want=[r'unexpected port I/O: out port 0x5ff'],
                             reject=NOT_FAILED + [r'guest exception', r'#DE']),
    # --- bad command lines: status 2 and a hint where to look
    'cli-unknown-option': Case(['run', '--bogus', '{guest:hello}'], status=2,
                               want=[r'--bogus', USAGE_HINT]),
    # an abbreviation getopt_long would take (--mem-l for --mem-limit) could hide an
    # option from a check by name (the pool's of a VM's arguments): refused
    'cli-abbreviated-option': Case(['run', '--mem-l', '32M', '{guest:hello}'], status=2,
                                   want=[r"'--mem-l': write options in full \('--mem-limit'\)",
                                         USAGE_HINT]),
    'cli-unknown-command': Case(['frobnicate', '{guest:hello}'], status=2,
                                want=[r'frobnicate', USAGE_HINT]),
    'cli-no-args': Case([], status=2, want=[r'no command given', USAGE_HINT]),
    'cli-missing-argument': Case(['run', '--mem'], status=2,
                                 want=[r"'--mem' needs an argument", USAGE_HINT]),
    'cli-help': Case(['--help'], want=[r'usage: ufvm run', r'--mem-limit']),
    'cli-run-help': Case(['run', '--help'], want=[r'usage: ufvm run']),
    'cli-version': Case(['--version'], want=[r'^ufvm \d+\.\d+\.\d+ \(guest ABI \d+\)']),
    'cli-pin-no-such-cpu': Case(['run', '--pin', '1000', '{guest:hello}'], status=2,
                                want=[r'--pin 1000: .*this host.s CPUs']),
    'hello-pinned': Case(['run', '--pin', '0', '--mem', SMALL, '{guest:hello}'],
                         want=[r'Hello from ufvm guest']),
    'cli-guest-is-fifo': Case(['run', '{fifo}'], status=2, want=[r'not a regular file']),
    'cli-mem-zero': Case(['run', '--mem', '0', '{guest:hello}'], status=2,
                         want=[r"--mem.*'0'", USAGE_HINT]),
    'cli-mem-bad-suffix': Case(['run', '--mem', '3X', '{guest:hello}'], status=2,
                               want=[r"--mem.*'3X'", USAGE_HINT]),
    'cli-mem-too-small': Case(['run', '--mem', '1M', '{guest:hello}'], status=2,
                              want=[r"--mem.*'1M'"]),
    'cli-mem-too-big': Case(['run', '--mem', '65G', '{guest:hello}'], status=2,
                            want=[r"--mem.*'65G'"]),
    'cli-cpus-zero': Case(['run', '--cpus', '0', '{guest:hello}'], status=2,
                          want=[r"--cpus.*'0'", USAGE_HINT]),
    'cli-cpus-65': Case(['run', '--cpus', '65', '{guest:hello}'], status=2,
                        want=[r"--cpus.*'65'", USAGE_HINT]),
    'cli-cpus-not-a-number': Case(['run', '--cpus', 'two', '{guest:hello}'], status=2,
                                  want=[r"--cpus.*'two'"]),
    'cli-cmdline-too-long': Case(['run', '--cmdline', 'x' * 4096, '{guest:hello}'], status=2,
                                 want=[r'--cmdline.*too long']),
    'cli-missing-guest-file': Case(['run', '/nonexistent/guest.elf'], status=2,
                                   want=[r'/nonexistent/guest\.elf.*No such file']),
    # option errors name the option, however its value was given
    'cli-mem-limit-too-small': Case(['run', '--mem-limit', '1', '{guest:hello}'], status=2,
                                    want=[r"--mem-limit: invalid value '1'", USAGE_HINT]),
    'cli-mem-limit-too-small-eq': Case(['run', '--mem-limit=1', '{guest:hello}'], status=2,
                                       want=[r"--mem-limit: invalid value '1'"]),
    'cli-scan-rate-zero': Case(['run', '--scan-rate', '0', '{guest:hello}'], status=2,
                               want=[r"--scan-rate: invalid value '0'"]),
    # accepted silently once: a limit that limits nothing, marks no guest can make,
    # /proc and /sys files as swap
    'cli-mem-limit-above-mem': Case(['run', '--mem', '64M', '--mem-limit', '128M',
                                     '{guest:hello}'], status=2,
                                    want=[r'--mem-limit: 128 MiB is more than .*--mem 64 MiB']),
    'cli-swapout-mark-empty': Case(['run', '--swapout-at-mark', '', '{guest:hello}'], status=2,
                                   want=[r"--swapout-at-mark: invalid value '' \(a mark label "
                                         r"of 1\.\.64 bytes\)"]),
    'cli-swapout-mark-too-long': Case(['run', '--swapout-at-mark', 'm' * 65, '{guest:hello}'],
                                      status=2, want=[r'--swapout-at-mark: invalid value']),
    'cli-swapout-mark-64': Case(['run', '--mem', SMALL, '--swapout-at-mark', 'm' * 64,
                                 '{guest:hello}'], want=[r'Hello from ufvm guest']),
    'cli-swap-proc-mem': Case(['run', '--swap', '/proc/self/mem', '{guest:hello}'], status=2,
                              want=[r'swap file /proc/self/mem: cannot open: a /proc or /sys']),
    'cli-swap-sys': Case(['run', '--swap', '/sys/kernel/mm/transparent_hugepage/enabled',
                          '{guest:hello}'], status=2, want=[r'a /proc or /sys file']),
    # a control socket path that cannot be used is bad input (2), not a host failure (1)
    'cli-api-empty': Case(['run', '--api', '', '{guest:hello}'], status=2,
                          want=[r'--api: empty path']),
    'cli-api-no-dir': Case(['run', '--api', '/nonexistent/dir/sock', '{guest:hello}'], status=2,
                           want=[r'control socket /nonexistent/dir/sock: .*No such file']),
    'cli-no-guest': Case(['run', '--mem', '64M'], status=2, want=[r'(?i)no guest', USAGE_HINT]),
    'cli-guest-is-directory': Case(['run', '/'], status=2, want=[r"'?/'?.*regular file|directory"]),
    # --- the ELF generator's own good image must load and run
    'elf-good': Case(['run', '--mem', SMALL, '{elf:good}'], status=badelf.GOOD_STATUS,
                     want=[re.escape(badelf.GOOD_TEXT.decode().strip())]),
    # a 1 GiB bss costs nothing until the guest touches it (guest RAM starts all zeros)
    'elf-huge-bss': Case(['run', '--mem', '2G', '{elf:huge-bss}'], status=badelf.GOOD_STATUS,
                         want=[re.escape(badelf.GOOD_TEXT.decode().strip())], max_rss_mib=64),
}
for _name, (_data, _regex, _what) in badelf.BAD.items():
    CASES['elf-' + _name] = Case(['run', '--mem', SMALL, '{elf:%s}' % _name], status=2,
                                 want=[re.escape(_name) + r'\.elf', '(?i)' + _regex])


def kvm_unusable():
    try:
        os.close(os.open('/dev/kvm', os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return '/dev/kvm: %s' % e.strerror
    return None


def expand(args, guests, elfdir):
    out = []
    for a in args:
        m = re.fullmatch(r'\{(guest|elf):([\w-]+)\}', a)
        if a == '{fifo}':  # a FIFO with no writer: open() must not wait for one
            fifo = elfdir / 'fifo.elf'
            if not fifo.exists():
                os.mkfifo(fifo)
            out.append(str(fifo))
        elif not m:
            out.append(a)
        elif m.group(1) == 'guest':
            out.append(str(guests / (m.group(2) + '.elf')))
        else:
            out.append(str(elfdir / (m.group(2) + '.elf')))
    return out


def run_rusage(argv, timeout):
    """Run argv; (status, stdout, stderr, peak RSS in KiB of that process alone)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    bufs = {}
    readers = [threading.Thread(target=lambda k, f: bufs.__setitem__(k, f.read()), args=a)
               for a in (('out', p.stdout), ('err', p.stderr))]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            os.wait4(p.pid, 0)
            p.returncode = -9
            for t in readers:
                t.join()
            raise subprocess.TimeoutExpired(argv, timeout, bufs.get('out'), bufs.get('err'))
        time.sleep(0.005)
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    return p.returncode, bufs['out'], bufs['err'], ru.ru_maxrss


def run_case(name, case, ufvm, guests, elfdir):
    argv = [ufvm] + expand(case.args, guests, elfdir)
    shown = ' '.join(a if len(a) < 80 else a[:20] + '...(%d bytes)' % len(a) for a in argv)
    print('### %s: %s' % (name, shown))
    t0 = time.monotonic()
    try:
        rc, stdout, stderr, maxrss_kib = run_rusage(argv, TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode(errors='replace') + (e.stderr or b'').decode(errors='replace')
        print(out)
        print('FAIL %s: no exit within %d s' % (name, TIMEOUT))
        return False
    secs = time.monotonic() - t0
    out = stdout.decode(errors='replace') + stderr.decode(errors='replace')
    print(out if len(out) < 20000 else out[:20000] + '\n...(output cut)')
    errors = []
    if rc != case.status:
        errors.append('exit status %d, expected %d' % (rc, case.status))
    if case.max_rss_mib and maxrss_kib >= case.max_rss_mib * 1024:
        errors.append('peak RSS %d KiB, expected under %d MiB' % (maxrss_kib, case.max_rss_mib))
    errors += ['output lacks /%s/' % r for r in case.want if not re.search(r, out)]
    errors += ['output has /%s/' % r for r in case.reject if re.search(r, out)]
    if case.check:
        err = case.check(out)
        if err:
            errors.append(err)
    for e in errors:
        print('FAIL %s: %s' % (name, e))
    if not errors:
        print('ok %s (%.2f s)' % (name, secs))
    return not errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--list', action='store_true', help='print the case names and exit')
    ap.add_argument('--ufvm', help='the ufvm binary')
    ap.add_argument('--guests', help='directory with the guest .elf files')
    ap.add_argument('cases', nargs='*', help='cases to run (default: all)')
    opts = ap.parse_args()
    if opts.list:
        print('\n'.join(CASES))
        return 0
    if not opts.ufvm or not opts.guests:
        ap.error('--ufvm and --guests are required')
    unknown = [c for c in opts.cases if c not in CASES]
    if unknown:
        ap.error('unknown case(s): %s' % ', '.join(unknown))
    why = kvm_unusable()
    if why:
        print('skip: %s (the e2e tests run real VMs)' % why)
        return 77
    guests = Path(opts.guests)
    with tempfile.TemporaryDirectory(prefix='ufvm-e2e-') as tmp:
        elfdir = Path(tmp)
        badelf.write_all(elfdir)
        failed = [c for c in (opts.cases or CASES)
                  if not run_case(c, CASES[c], opts.ufvm, guests, elfdir)]
    if failed:
        print('%d case(s) failed: %s' % (len(failed), ' '.join(failed)))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
