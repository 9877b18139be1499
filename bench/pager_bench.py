#!/usr/bin/env python3
"""pager_bench.py: the pager's benchmarks (issue 3 section 9), each a ratio measured side by side.

    pager_bench.py BUILD_DIR first-touch|overcommit|swapall|scaling

first-touch  memtouch's first write of N MiB, pager on / --pager off      target <= 0.8
overcommit   seq / hot-cold / random at 2x overcommit, ufvm's swap vs the
             host kernel's swap of the same VM (--pager off in a memory
             cgroup with the same limit, a swap file on the same fs)     target <= 0.7/0.7/1.2
swapall      whole-VM swap-out and prefetch swap-in throughput vs dd
             writing and reading a file of the same size on the same fs  target >= 0.8
scaling      first-touch throughput of the smp guest, 2 vCPUs / 1        target >= 1.6

    pager_bench.py BUILD_DIR ab BASE_BUILD_DIR

memcached    the memcached backend (3 local servers) against the file backend:
             overcommit runtime, median swap-in fault time, whole-VM
             swap-out/in bandwidth                target <= 1.3 seq, 1.5 random; >= 0.5

ab           this build against another build of ufvm, both swapping to a file:
             the overcommit workloads' runtime and whole-VM swap-out/in
             bandwidth                                         target <= 1.03 / >= 0.97

Rounds alternate the two sides so drift hits both; figures are medians.
Knobs: BENCH_ROUNDS (5), BENCH_MIB (512; overcommit uses 128), TMPDIR (swap and dd files),
BENCH_IDLE_POLL=1 (root: the host's idle CPUs poll instead of halting for the whole run,
as tuned's latency-performance profile has them: on a virtual host that halts its idle
CPUs, waking one costs the hypervisor's tens of microseconds; bench/README.md).
Exit status: 0 targets met, 1 a target missed, 2 could not measure, 77 skipped.
"""
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))
from ufvmexp import StatPoller  # noqa: E402  (memory.stat read every 10 ms)

ROUNDS = int(os.environ.get('BENCH_ROUNDS', '5'))
MIB = int(os.environ.get('BENCH_MIB', '512'))
TMP = os.environ.get('TMPDIR', '/tmp')
CG = '/sys/fs/cgroup/memory/ufvm-bench'


def say(*a):
    print('pager_bench:', *a, flush=True)


def ufvm(build, args, cg=False, timeout=600):
    cmd = [os.path.join(build, 'vmm/ufvm'), 'run'] + args
    if cg:
        cmd = ['sh', '-c', 'echo $$ > %s/cgroup.procs && exec "$@"' % CG, 'sh'] + cmd
    t0 = time.monotonic()
    u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    r.wall = time.monotonic() - t0
    u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r.cpu = u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime  # user + system
    r.stats = None
    for line in r.stderr.splitlines():
        if line.startswith('{"pager"'):
            r.stats = json.loads(line)['pager']
    return r


def guest(build, name):
    return os.path.join(build, 'guests', name + '.elf')


def verdict(what, ratio, target, better):
    ok = ratio <= target if better == 'lower' else ratio >= target
    say('%s: %.2f (target %s %.2f): %s' % (what, ratio, '<=' if better == 'lower' else '>=',
                                            target, 'PASS' if ok else 'MISS'))
    return ok


def write_ms(out):
    m = re.search(r'write\s+\d+ MiB in ([\d.]+) ms', out)
    return float(m.group(1)) if m else None


def first_touch(build):
    mem = '%dM' % (MIB + 256)
    on, off = [], []
    for i in range(ROUNDS):
        for side in (('on', 'off') if i % 2 == 0 else ('off', 'on')):
            r = ufvm(build, ['--mem', mem, '--pager', side, '--cmdline', 'mib=%d' % MIB,
                             guest(build, 'memtouch')])
            ms = write_ms(r.stdout)
            if r.returncode or ms is None:
                say('ERROR: memtouch --pager %s: status %d %s' % (side, r.returncode, r.stderr))
                return 2
            (on if side == 'on' else off).append(ms)
    a, b = statistics.median(on), statistics.median(off)
    say('first touch of %d MiB: pager %.1f ms, --pager off %.1f ms (medians of %d)' %
        (MIB, a, b, ROUNDS))
    return 0 if verdict('first-touch time, pager / kernel', a / b, 0.8, 'lower') else 1


def smp_rate(out, ncpus, mib):
    # the VM's throughput: every vCPU's bytes over the wall-clock span from the first
    # vCPU's start to the last one's end (a per-vCPU rate would assume they overlap)
    m = re.search(r'all %d vCPUs wrote \d+ MiB in [\d.]+ ms \(wall clock\): ([\d.]+) MiB/s'
                  % ncpus, out)
    return float(m.group(1)) if m else None


def scaling(build):
    mem = '%dM' % (MIB + 256)
    res = {1: [], 2: []}
    for i in range(ROUNDS):
        for n in ((1, 2) if i % 2 == 0 else (2, 1)):
            r = ufvm(build, ['--mem', mem, '--cpus', str(n), '--cmdline',
                             'mib=%d iters=1000' % MIB, guest(build, 'smp')])
            rate = smp_rate(r.stdout, n, MIB)
            if r.returncode or rate is None:
                say('ERROR: smp --cpus %d: status %d %s' % (n, r.returncode, r.stderr))
                return 2
            res[n].append(rate)
    a, b = statistics.median(res[2]), statistics.median(res[1])
    say('first touch of %d MiB by smp: 2 vCPUs %.0f MiB/s, 1 vCPU %.0f MiB/s (medians of %d)' %
        (MIB, a, b, ROUNDS))
    return 0 if verdict('first-touch throughput, 2 vCPUs / 1', a / b, 1.6, 'higher') else 1


def dd(args):
    r = subprocess.run(['dd'] + args, capture_output=True, text=True)
    m = re.search(r'copied, ([\d.]+) s', r.stderr)
    return float(m.group(1)) if m else None


def swapall(build):
    mem = '%dM' % (MIB + 256)
    res = {}
    path = os.path.join(TMP, 'ufvm-bench-dd')
    swap = os.path.join(TMP, 'ufvm-bench-swap')
    for direct in (False, True):
        out, inn, ddw, ddr = [], [], [], []
        for i in range(ROUNDS):
            extra = ['--swap', swap] + (['--swap-direct'] if direct else [])
            r = ufvm(build, ['--mem', mem, '--stats=json', '--swapout-at-mark', 'written',
                             '--swapin', 'prefetch'] + extra +
                     ['--cmdline', 'mib=%d pause_ms=4000' % MIB, guest(build, 'memtouch')])
            s = r.stats
            if r.returncode or not s or not s['swapout_all_ns'] or not s['swapin_all_ns']:
                say('ERROR: swap-out run: status %d %s' % (r.returncode, r.stderr[-300:]))
                return 2
            out.append(s['swapout_all_pages'] * 4096 / s['swapout_all_ns'] * 1e9 / 2**20)
            inn.append(s['swapin_all_pages'] * 4096 / s['swapin_all_ns'] * 1e9 / 2**20)
            size = s['swapout_all_pages'] * 4096 // 2**20
            # like for like: O_DIRECT against O_DIRECT; buffered swap I/O (no fsync, read
            # back while still cached) against dd into and out of the page cache
            flags = ['oflag=direct'] if direct else []
            w = dd(['if=/dev/zero', 'of=' + path, 'bs=1M', 'count=%d' % size] + flags)
            rd = dd(['if=' + path, 'of=/dev/null', 'bs=1M'] +
                    (['iflag=direct'] if direct else []))
            os.unlink(path)
            ddw.append(size / w)
            ddr.append(size / rd)
        res[direct] = [statistics.median(x) for x in (out, inn, ddw, ddr)]
        kind = 'O_DIRECT' if direct else 'buffered (dd: through the page cache)'
        o, n, w, rd = res[direct]
        say('%s: swap-out %.0f MiB/s vs dd write %.0f MiB/s; swap-in %.0f MiB/s vs dd read '
            '%.0f MiB/s (medians of %d, %d MiB)' % (kind, o, w, n, rd, ROUNDS, size))
    rm_ufvm_swap()
    ok = verdict('swap-out / dd write (O_DIRECT)', res[True][0] / res[True][2], 0.8, 'higher')
    ok &= verdict('swap-in / dd read (O_DIRECT)', res[True][1] / res[True][3], 0.8, 'higher')
    verdict('swap-out / dd write (buffered, info)', res[False][0] / res[False][2], 0.8, 'higher')
    verdict('swap-in / dd read (buffered, info)', res[False][1] / res[False][3], 0.8, 'higher')
    return 0 if ok else 1


WORKLOADS = [  # name, guest, cmdline; 128 MiB touched under a 64 MiB limit
    ('sequential', 'memtouch', 'mib=128 passes=2', 0.7),
    ('hot/cold', 'hotcold', 'hot=16 cold=112 rounds=10', 0.7),
    ('random', 'random', 'mib=128 accesses=200000', 1.2),
]


def cg_read(name):
    with open(CG + '/' + name) as f:
        return int(f.read().split()[0])


def cg_reset():
    for name in ('memory.failcnt', 'memory.max_usage_in_bytes'):
        with open(CG + '/' + name, 'w') as f:
            f.write('0')


def pswpout():
    with open('/proc/vmstat') as f:
        return int(re.search(r'^pswpout (\d+)', f.read(), re.M).group(1))


def cg_setup(limit):
    swapfile = os.path.join(TMP, 'ufvm-bench-kswap')
    if not os.path.isdir('/sys/fs/cgroup/memory'):
        return None, 'no memory cgroup v1 at /sys/fs/cgroup/memory'
    if subprocess.run(['fallocate', '-l', '1G', swapfile]).returncode:
        return None, 'cannot create %s' % swapfile
    os.chmod(swapfile, 0o600)
    if subprocess.run(['mkswap', swapfile], capture_output=True).returncode or \
       subprocess.run(['swapon', swapfile]).returncode:
        os.unlink(swapfile)
        return None, 'cannot enable swap on %s (needs root)' % swapfile
    os.makedirs(CG, exist_ok=True)
    with open(CG + '/memory.limit_in_bytes', 'w') as f:
        f.write(str(limit))
    return swapfile, None


def rm_ufvm_swap():
    try:
        os.unlink(os.path.join(TMP, 'ufvm-bench-swap'))  # ufvm's own swap file
    except OSError:
        pass


def cg_teardown(swapfile):
    subprocess.run(['swapoff', swapfile])
    os.unlink(swapfile)
    rm_ufvm_swap()
    try:
        os.rmdir(CG)
    except OSError:
        pass


def overcommit(build):
    limit = 64 << 20
    slack = 8 << 20  # the VMM's own memory (binary, heap, KVM): charged to the cgroup only
    swapfile, why = cg_setup(limit + slack)
    if not swapfile:
        say('SKIP: ' + why)
        return 77
    rc = 0
    try:
        for name, g, cmdline, target in WORKLOADS:
            t_u, t_k, kills = [], [], 0
            for i in range(ROUNDS):
                for side in (('u', 'k') if i % 2 == 0 else ('k', 'u')):
                    if side == 'u':
                        with StatPoller(CG):
                            r = ufvm(build, ['--mem', '256M', '--mem-limit', '64M', '--swap',
                                             os.path.join(TMP, 'ufvm-bench-swap'),
                                             '--cmdline', cmdline, guest(build, g)])
                        if r.returncode:
                            say('ERROR: %s under ufvm: %s' % (name, r.stderr[-300:]))
                            return 2
                        t_u.append(r.wall)
                    else:
                        cg_reset()
                        out0 = pswpout()
                        with StatPoller(CG):
                            r = ufvm(build, ['--mem', '256M', '--pager', 'off', '--cmdline',
                                             cmdline, guest(build, g)], cg=True)
                        # evidence that the kernel really swapped under the limit
                        say('%s, kernel run %d: status %d, %.2f s, max usage %d MiB, '
                            'failcnt %d, %d MiB swapped out' %
                            (name, i, r.returncode, r.wall, cg_read('memory.max_usage_in_bytes')
                             >> 20, cg_read('memory.failcnt'), (pswpout() - out0) >> 8))
                        if r.returncode == -9 or r.returncode == 137:
                            kills += 1
                        elif r.returncode:
                            say('ERROR: %s under kernel swap: %s' % (name, r.stderr[-300:]))
                            return 2
                        else:
                            t_k.append(r.wall)
            u = statistics.median(t_u)
            say('%s: ufvm runs %s s; kernel runs %s s' % (
                name, ' '.join('%.2f' % t for t in t_u), ' '.join('%.2f' % t for t in t_k)))
            if not t_k:
                say('%s: ufvm %.2f s; kernel swap: OOM-killed in all %d runs' % (name, u, kills))
                say('%s time, ufvm / kernel swap: NO RATIO (target <= %.2f): the host kernel '
                    'could not run it (MISS)' % (name, target))
                rc = 1
                continue
            k = statistics.median(t_k)
            say('%s: ufvm %.2f s, kernel swap %.2f s (medians; %d kernel runs OOM-killed)' %
                (name, u, k, kills))
            if not verdict('%s time, ufvm / kernel swap' % name, u / k, target, 'lower'):
                rc = 1
    finally:
        cg_teardown(swapfile)
    return rc


def ab_side(build, args):
    r = ufvm(build, args)
    if r.returncode or not r.stats:
        say('ERROR: %s %s: status %d %s' % (build, ' '.join(args[-2:]), r.returncode,
                                             r.stderr[-300:]))
        return None
    return r


def ab(build, base):
    """This build against another build of ufvm (BENCH_BASE), side by side: the overcommit
    workloads (runtime) and whole-VM swap-out and prefetch swap-in (bandwidth), both
    swapping to a file on TMPDIR. Target: no more than 3% slower, or 3% less bandwidth."""
    swap = os.path.join(TMP, 'ufvm-bench-swap')
    ok = True
    for name, g, cmdline, _ in WORKLOADS:
        t = {build: [], base: []}
        for i in range(ROUNDS):
            for b in ((build, base) if i % 2 == 0 else (base, build)):
                r = ab_side(b, ['--mem', '256M', '--mem-limit', '64M', '--stats=json',
                                '--swap', swap, '--cmdline', cmdline, guest(b, g)])
                if not r:
                    return 2
                t[b].append(r.wall)
        a, z = statistics.median(t[build]), statistics.median(t[base])
        say('%s: this build %.2f s, base %.2f s (medians of %d; runs %s / %s)' % (
            name, a, z, ROUNDS, ' '.join('%.2f' % x for x in t[build]),
            ' '.join('%.2f' % x for x in t[base])))
        ok &= verdict('%s time, this build / base' % name, a / z, 1.03, 'lower')
    mem, bw = '%dM' % (MIB + 256), {build: ([], []), base: ([], [])}
    for i in range(ROUNDS):
        for b in ((build, base) if i % 2 == 0 else (base, build)):
            r = ab_side(b, ['--mem', mem, '--stats=json', '--swapout-at-mark', 'written',
                            '--swapin', 'prefetch', '--swap', swap, '--cmdline',
                            'mib=%d pause_ms=4000' % MIB, guest(b, 'memtouch')])
            if not r:
                return 2
            s = r.stats
            bw[b][0].append(s['swapout_all_pages'] * 4096 / s['swapout_all_ns'] * 1e9 / 2**20)
            bw[b][1].append(s['swapin_all_pages'] * 4096 / s['swapin_all_ns'] * 1e9 / 2**20)
    for k, what in ((0, 'whole-VM swap-out'), (1, 'whole-VM prefetch swap-in')):
        a, z = statistics.median(bw[build][k]), statistics.median(bw[base][k])
        say('%s of %d MiB: this build %.0f MiB/s, base %.0f MiB/s (medians of %d)' % (
            what, MIB, a, z, ROUNDS))
        ok &= verdict('%s bandwidth, this build / base' % what, a / z, 0.97, 'higher')
    rm_ufvm_swap()
    return 0 if ok else 1


def median_us(hist):
    """The median of a log2 histogram (bucket 0: < 1 us, bucket i: [2^(i-1), 2^i) us),
    interpolated within its bucket: good to the bucket's resolution."""
    n = sum(hist)
    if not n:
        return None
    half, seen = n / 2, 0
    for i, c in enumerate(hist):
        if seen + c >= half and c:
            lo, hi = (0, 1) if i == 0 else (2 ** (i - 1), 2 ** i)
            return lo + (hi - lo) * (half - seen) / c
        seen += c
    return None


def start_memcached(n, mib):
    procs, addrs = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        cmd = ['memcached', '-l', '127.0.0.1', '-p', str(port), '-U', '0', '-t', '1', '-M',
               '-m', str(mib)] + (['-u', 'nobody'] if os.geteuid() == 0 else [])
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        addrs.append('127.0.0.1:%d' % port)
    time.sleep(0.5)
    return procs, 'memcached://' + ','.join(addrs)


def proc_cpu(procs):
    """CPU time (user + system, s) the processes used so far."""
    t = 0
    for p in procs:
        with open('/proc/%d/stat' % p.pid) as f:
            v = f.read().rsplit(')', 1)[1].split()
        t += int(v[11]) + int(v[12])
    return t / os.sysconf('SC_CLK_TCK')


def memcached_vs_file(build):
    """The memcached backend (3 servers on loopback, no replicas) against the io_uring file
    backend, side by side: the overcommit workloads, the median swap-in fault service
    time, whole-VM swap-out and prefetch swap-in bandwidth. Also CPU time (user + system),
    steadier than wall time on a loaded host: ufvm's own, and ufvm's plus the servers'
    (the file backend's kernel work is in ufvm's system time, memcached's in theirs)."""
    if not shutil.which('memcached'):
        say('SKIP: no memcached (apt-get install memcached)')
        return 77
    procs, mc = start_memcached(3, 1024)
    swap = os.path.join(TMP, 'ufvm-bench-swap-vs-mc')  # ufvm creates it, removes it at exit
    targets = {'sequential': 1.3, 'random': 1.5}
    ok = True
    try:
        for name, g, cmdline, _ in WORKLOADS:
            t = {'file': [], 'mc': []}
            cpu = {'file': [], 'mc': []}
            allcpu = {'file': [], 'mc': []}
            lat = {'file': [0] * 16, 'mc': [0] * 16}
            for i in range(ROUNDS):
                for side in (('file', 'mc') if i % 2 == 0 else ('mc', 'file')):
                    c0 = proc_cpu(procs)
                    r = ab_side(build, ['--mem', '256M', '--mem-limit', '64M', '--stats=json',
                                        '--swap', swap if side == 'file' else mc,
                                        '--cmdline', cmdline, guest(build, g)])
                    if not r:
                        return 2
                    t[side].append(r.wall)
                    cpu[side].append(r.cpu)
                    allcpu[side].append(r.cpu + proc_cpu(procs) - c0)
                    for k, c in enumerate(r.stats.get('swapin_lat_us_log2', [])):
                        lat[side][k] += c
            a, z = statistics.median(t['mc']), statistics.median(t['file'])
            lm, lf = median_us(lat['mc']), median_us(lat['file'])
            say('%s: memcached %.2f s, file %.2f s (medians of %d; runs %s / %s); median '
                'swap-in fault service time: memcached %.0f us, file %.0f us' % (
                    name, a, z, ROUNDS, ' '.join('%.2f' % x for x in t['mc']),
                    ' '.join('%.2f' % x for x in t['file']), lm or 0, lf or 0))
            if name in targets:
                ok &= verdict('%s time, memcached / file' % name, a / z, targets[name], 'lower')
            else:
                say('%s time, memcached / file: %.2f (no target)' % (name, a / z))
            say('%s CPU time, memcached / file: ufvm %.2f s / %.2f s = %.2f; ufvm and the '
                'servers %.2f s / %.2f s = %.2f (medians)' % (
                    name, statistics.median(cpu['mc']), statistics.median(cpu['file']),
                    statistics.median(cpu['mc']) / statistics.median(cpu['file']),
                    statistics.median(allcpu['mc']), statistics.median(allcpu['file']),
                    statistics.median(allcpu['mc']) / statistics.median(allcpu['file'])))
        mem, bw = '%dM' % (MIB + 256), {'file': ([], []), 'mc': ([], [])}
        runcpu = {'file': [], 'mc': []}
        for i in range(ROUNDS):
            for side in (('file', 'mc') if i % 2 == 0 else ('mc', 'file')):
                c0 = proc_cpu(procs)
                r = ab_side(build, ['--mem', mem, '--stats=json', '--swapout-at-mark', 'written',
                                    '--swapin', 'prefetch', '--swap',
                                    swap if side == 'file' else mc, '--cmdline',
                                    'mib=%d pause_ms=4000' % MIB, guest(build, 'memtouch')])
                if not r:
                    return 2
                s = r.stats
                if not s['swapout_all_ns'] or not s['swapin_all_ns']:
                    say('ERROR: whole-VM swap-out/in to %s did not happen: %s' % (
                        side, r.stderr[-300:]))
                    return 2
                runcpu[side].append(r.cpu + proc_cpu(procs) - c0)
                bw[side][0].append(s['swapout_all_pages'] * 4096 / s['swapout_all_ns'] * 1e9 /
                                   2**20)
                bw[side][1].append(s['swapin_all_pages'] * 4096 / s['swapin_all_ns'] * 1e9 /
                                   2**20)
        for k, what in ((0, 'whole-VM swap-out'), (1, 'whole-VM prefetch swap-in')):
            a, z = statistics.median(bw['mc'][k]), statistics.median(bw['file'][k])
            say('%s of %d MiB: memcached (3 servers) %.0f MiB/s, file %.0f MiB/s (medians of '
                '%d)' % (what, MIB, a, z, ROUNDS))
            ok &= verdict('%s bandwidth, memcached / file' % what, a / z, 0.5, 'higher')
        say('whole-VM runs (memtouch writing %d MiB, out, in, verify), CPU time of ufvm and '
            'the servers, memcached / file: %.2f s / %.2f s = %.2f (medians)' % (
                MIB, statistics.median(runcpu['mc']), statistics.median(runcpu['file']),
                statistics.median(runcpu['mc']) / statistics.median(runcpu['file'])))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        rm_ufvm_swap()
    return 0 if ok else 1


def idle_poll():
    """Hold the CPU latency QoS request at 0 until we exit: cpuidle then picks its
    polling state (/sys/devices/system/cpu/cpu0/cpuidle/state0) for idle CPUs."""
    try:
        fd = os.open('/dev/cpu_dma_latency', os.O_WRONLY)
        os.write(fd, (0).to_bytes(4, sys.byteorder))
    except OSError as e:
        say('BENCH_IDLE_POLL: cannot hold /dev/cpu_dma_latency at 0: %s' % e)
        return None
    say('BENCH_IDLE_POLL: idle CPUs poll for this run (/dev/cpu_dma_latency held at 0)')
    return fd


def main():
    if os.environ.get('BENCH_IDLE_POLL') == '1' and idle_poll() is None:
        return 2
    if len(sys.argv) == 3 and sys.argv[2] == 'memcached':
        return memcached_vs_file(os.path.abspath(sys.argv[1]))
    if len(sys.argv) == 4 and sys.argv[2] == 'ab':
        return ab(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[3]))
    if len(sys.argv) != 3 or sys.argv[2] not in ('first-touch', 'overcommit', 'swapall',
                                                 'scaling'):
        print(__doc__)
        return 2
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        say('SKIP: /dev/kvm is not usable here')
        return 77
    build = os.path.abspath(sys.argv[1])
    fn = {'first-touch': first_touch, 'overcommit': overcommit, 'swapall': swapall,
          'scaling': scaling}[sys.argv[2]]
    return fn(build)


if __name__ == '__main__':
    sys.exit(main())
