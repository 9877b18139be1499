#!/usr/bin/env python3
"""ufvmexp.py: overcommit experiments: a description file in, a table and plots out.

usage: tools/ufvmexp.py [--build DIR] [--out DIR] [--rounds N] [--modes M,M,...]
                        [--no-sweep] [--no-mix] EXPERIMENT.toml

An experiment (TOML; bench/experiments/ has examples, the format is in docs/experiments.md):
VMs with their guests and parameters, a budget, the modes to compare, and optionally a
sweep of one VM's local memory as a fraction of its working set. Modes:

  unconstrained  every VM under a pool with the budget = all their guest RAM (no pressure)
  static|wss|tax|pressure  under ufvmpool with the budget and that policy
  kernel         the same VMs with --pager off in one memory cgroup (v1) limited to the
                 budget (+ a slack per VM for the VMM itself), with a swap file: the host
                 kernel's own reclaim over KVM guests (root; swap turned off at the end)

Every mode runs each round (rounds alternate the order of modes, so drift hits all
alike); figures are medians. Printed: per VM runtime and slowdown against unconstrained,
the makespan (all VMs done), swap traffic, fault counts and the distribution of fault
service times; written to --out: results.json, the tables (results.md) and one PNG per pool
mode (resident memory per VM over time, stacked, with events: ufvmpool plot).
Exit status: 0 done, 1 a run failed (a guest did not verify, a VM did not exit), 2 usage.
"""
import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import tomllib

MiB = 1 << 20
POLICIES = ('static', 'wss', 'tax', 'pressure')
CGROOT = '/sys/fs/cgroup/memory'
LAT_LABELS = ['<1us', '1-2us', '2-4us', '4-8us', '8-16us', '16-32us', '32-64us', '64-128us',
              '128-256us', '256-512us', '0.5-1ms', '1-2ms', '2-4ms', '4-8ms', '8-16ms', '>=16ms']


def say(*a):
    print('ufvmexp:', *a, flush=True)


def size(s):
    m = re.fullmatch(r'(\d+)([KMG]?)', str(s).strip(), re.I)
    if not m:
        raise ValueError('not a size like 256M: %r' % s)
    return int(m.group(1)) << {'': 0, 'K': 10, 'M': 20, 'G': 30}[m.group(2).upper()]


class Experiment:
    def __init__(self, path, build):
        with open(path, 'rb') as f:
            d = tomllib.load(f)
        self.path = path
        self.title = d.get('title', os.path.basename(path))
        self.build = build
        self.budget = size(d['budget']) if 'budget' in d else None
        self.modes = d.get('modes', ['unconstrained', 'static', 'pressure'])
        self.rounds = int(d.get('rounds', 3))
        self.timeout = float(d.get('timeout', 600))
        self.interval = int(d.get('interval_ms', 500))
        self.slack = size(d.get('kernel_slack', '8M'))  # per VM: the VMM's own memory
        self.vms = d.get('vm', [])
        self.sweep = d.get('sweep')
        for v in self.vms:
            for k in ('name', 'guest', 'mem'):
                if k not in v:
                    raise ValueError('[[vm]] %s needs %s' % (v.get('name', '?'), k))
        for m in self.modes:
            if m not in POLICIES + ('unconstrained', 'kernel'):
                raise ValueError('unknown mode %r' % m)
        if self.vms and self.budget is None:
            raise ValueError('budget is required with [[vm]]')

    def guest(self, name):
        return os.path.join(self.build, 'guests', name + '.elf')

    def args(self, v, pager=True):
        a = ['--mem', v['mem']] + (['--stats=json'] if pager else ['--pager', 'off'])
        a += shlex.split(v.get('args', ''))
        if v.get('cmdline'):
            a += ['--cmdline', v['cmdline']]
        return a + [self.guest(v['guest'])]


def parse_log(text):
    """The guest's verdict and the pager's --stats=json, from a VM's output."""
    st = None
    for line in text.splitlines():
        if line.startswith('{"pager"'):
            try:
                st = json.loads(line)['pager']
            except ValueError:
                pass
    ok = bool(re.search(r'^\w+: ok \(', text, re.M)) and 'FAILED' not in text
    return ok, st


def vm_result(name, runtime, status, text, majflt=None):
    ok, st = parse_log(text)
    r = {'vm': name, 'runtime_s': runtime, 'status': status, 'verified': ok and status == 0}
    if st:
        r.update({k: st.get(k, 0) for k in (
            'faults_missing', 'faults_minor', 'faults_swapin', 'swapin_bytes', 'swapout_bytes',
            'refault_ns', 'stall_ns', 'max_resident_pages')})
        r['fault_lat_us'] = st.get('fault_lat_us_log2', [])
    if majflt is not None:
        r['majflt'] = majflt
    return r


# ---- modes under the pool ----

def run_pool(exp, mode, out, tag):
    budget = sum(size(v['mem']) for v in exp.vms) if mode == 'unconstrained' else exp.budget
    policy = 'static' if mode == 'unconstrained' else mode
    d = os.path.join(out, 'run-%s' % tag)
    os.makedirs(d, exist_ok=True)
    series = os.path.join(out, 'series-%s.jsonl' % tag)
    cmd = [os.path.join(exp.build, 'pool/ufvmpool'), 'run', '--budget', '%dK' % (budget >> 10),
           '--policy', policy, '--interval', str(exp.interval), '--series', series, '--dir', d,
           '--exit-when-done', '-q', '--ufvm', os.path.join(exp.build, 'vmm/ufvm')]
    for v in exp.vms:
        cmd += ['--start', '%s:%d=%s' % (v['name'], int(v.get('shares', 1)),
                                         shlex.join(exp.args(v)))]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=exp.timeout)
    except subprocess.TimeoutExpired:
        return None, 'timed out after %.0f s' % exp.timeout
    wall = time.monotonic() - t0
    start, end = {}, {}
    for line in open(series):
        o = json.loads(line)
        ev = o.get('event', '')
        if ev.startswith('started:'):
            start[o['vm']] = o['t']
        m = re.search(r'exited with status (\d+)|killed by signal (\d+)', ev)
        if m and o['vm'] not in end:
            end[o['vm']] = (o['t'], int(m.group(1)) if m.group(1) else 128 + int(m.group(2)))
    res = []
    for v in exp.vms:
        n = v['name']
        text = open(os.path.join(d, n + '.log'), errors='replace').read()
        if n not in start or n not in end:
            return None, '%s: no start or exit in the series (pool: %s)' % (n, p.stderr[-300:])
        res.append(vm_result(n, end[n][0] - start[n], end[n][1], text))
    makespan = max(e[0] for e in end.values()) - min(start.values())
    return {'mode': mode, 'makespan_s': makespan, 'wall_s': wall, 'vms': res,
            'series': series}, None


# ---- the kernel's own reclaim: --pager off in one memory cgroup with swap ----

class StatPoller:
    """Reads the cgroup's memory.stat every 10 ms while a run is timed (both sides alike;
    bench/pager_bench.py uses it too).

    Without it the kernel side is OOM-killed: with the whole VM in shmem pages that KVM's
    fault path marks accessed twice (straight onto the active list) and no file pages in the
    cgroup, memcg reclaim finds the inactive lists empty and only deactivates anon pages when
    inactive_is_low() says so, which reads the memcg's rstat counters; those are flushed only
    every 2 s (or when someone reads memory.stat), so while the VM fills its limit they still
    say 0/0, nothing is deactivated, 16 reclaim passes in a row isolate no page, and the
    charge ends in the OOM killer. Reading memory.stat flushes them, as any container
    monitor does. See bench/README.md.
    """

    def __init__(self, cg):
        self.cg, self.stop = cg, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.wait(0.01):
            try:
                with open(self.cg + '/memory.stat') as f:
                    f.read()
            except OSError:
                pass

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join()


class KernelSwap:
    """A memory cgroup v1 and a swap file; both gone again on exit, whatever happens."""

    def __init__(self, limit, swap_bytes, tmp):
        self.cg = '%s/ufvmexp-%d' % (CGROOT, os.getpid())
        self.swap = os.path.join(tmp, 'ufvmexp-kswap-%d' % os.getpid())
        self.limit, self.swap_bytes, self.on = limit, swap_bytes, False

    def __enter__(self):
        if not os.path.isdir(CGROOT):
            raise OSError('no memory cgroup v1 at ' + CGROOT)
        subprocess.run(['fallocate', '-l', str(self.swap_bytes), self.swap], check=True)
        os.chmod(self.swap, 0o600)
        subprocess.run(['mkswap', self.swap], check=True, capture_output=True)
        subprocess.run(['swapon', self.swap], check=True)
        self.on = True
        os.makedirs(self.cg, exist_ok=True)
        with open(self.cg + '/memory.limit_in_bytes', 'w') as f:
            f.write(str(self.limit))
        return self

    def __exit__(self, *a):
        if self.on:
            subprocess.run(['swapoff', self.swap])
        try:
            os.unlink(self.swap)
        except OSError:
            pass
        try:
            os.rmdir(self.cg)
        except OSError:
            pass


def vmstat(key):
    with open('/proc/vmstat') as f:
        return int(re.search(r'^%s (\d+)' % key, f.read(), re.M).group(1))


def run_kernel(exp, out, tag, ks):
    procs, t0 = [], time.monotonic()
    in0, out0 = vmstat('pswpin'), vmstat('pswpout')
    d = os.path.join(out, 'run-%s' % tag)
    os.makedirs(d, exist_ok=True)
    with StatPoller(ks.cg):
        for v in exp.vms:
            log = open(os.path.join(d, v['name'] + '.log'), 'w')
            cmd = ['sh', '-c', 'echo $$ > %s/cgroup.procs && exec "$@"' % ks.cg, 'sh',
                   os.path.join(exp.build, 'vmm/ufvm'), 'run'] + exp.args(v, pager=False)
            procs.append((v, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log,
                          time.monotonic()))
        res, ends, deadline = {}, {}, t0 + exp.timeout
        while len(res) < len(procs):
            for v, p, log, ts in procs:
                if v['name'] in res:
                    continue
                pid, st, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    ends[v['name']] = time.monotonic()
                    log.close()
                    status = os.waitstatus_to_exitcode(st)
                    status = status if status >= 0 else 128 - status
                    text = open(log.name, errors='replace').read()
                    res[v['name']] = vm_result(v['name'], ends[v['name']] - ts, status, text,
                                               ru.ru_majflt)
            if time.monotonic() > deadline:
                for v, p, log, ts in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                return None, 'timed out after %.0f s' % exp.timeout
            time.sleep(0.02)
    return {'mode': 'kernel', 'makespan_s': max(ends.values()) - t0,
            'wall_s': time.monotonic() - t0, 'vms': [res[v['name']] for v in exp.vms],
            'swapin_bytes': (vmstat('pswpin') - in0) * 4096,
            'swapout_bytes': (vmstat('pswpout') - out0) * 4096}, None


# ---- the sweep: one VM alone, local memory as a fraction of its working set ----

def run_alone(exp, sw, limit):
    v = dict(sw, name='sweep')
    cmd = [os.path.join(exp.build, 'vmm/ufvm'), 'run'] + \
        (['--mem-limit', '%dK' % (limit >> 10)] if limit else []) + exp.args(v)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        text = p.communicate(timeout=exp.timeout)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return None
    return vm_result('sweep', time.monotonic() - t0, p.returncode, text)


def headroom(need):
    """A limit that leaves need bytes to the guest: need plus the two reclaim batches the
    pager keeps free below its limit (1/256 of it each, 128 KiB to 2 MiB: mm/README.md)."""
    limit = -(-need // 4096) * 4096
    while limit - 2 * min(2 * MiB, max(128 * 1024, limit // 4096 // 256 * 4096)) < need:
        limit += 4096
    return limit


def sweep(exp, rounds, out):
    sw = exp.sweep
    wss = size(sw['wss'])
    fr = sw.get('fractions', [1.0, 0.75, 0.5, 0.25])
    rows = {}
    # Local memory is the data's share of the limit: the limit also holds what the guest
    # keeps beside its data (code, stack, page tables: measured without a limit) and the
    # two reclaim batches the pager keeps free below it (mm/README.md).
    extra = None
    for r in range(rounds):
        for f in [None] + fr:
            limit = 0
            if f:
                limit = max(4 * MiB, headroom(int(wss * f) + extra))
            x = run_alone(exp, sw, limit)
            if not x or not x['verified']:
                say('sweep: %s: run failed or did not verify' % (f or 'no limit'))
                return None
            if f is None and extra is None:
                extra = max(0, x.get('max_resident_pages', 0) * 4096 - wss)
            say('sweep round %d: %s: %.2f s, %d swap-in faults' % (
                r, 'no limit' if f is None else '%d%% (limit %d MiB)' % (f * 100, limit // MiB),
                x['runtime_s'], x.get('faults_swapin', 0)))
            rows.setdefault(f, []).append(x)
    base = statistics.median(x['runtime_s'] for x in rows[None])
    table = []
    for f in [None] + fr:
        xs = rows[f]
        rt = statistics.median(x['runtime_s'] for x in xs)
        n = statistics.median(x.get('faults_swapin', 0) for x in xs)
        svc = statistics.median(x['refault_ns'] / x['faults_swapin'] / 1000
                                for x in xs if x.get('faults_swapin')) if n else None
        stall = statistics.median(x['stall_ns'] / x['faults_swapin'] / 1000
                                  for x in xs if x.get('faults_swapin')) if n else None
        seen = (rt - base) * 1e6 / n if n else None
        table.append({'fraction': f, 'limit': headroom(int(wss * f) + extra) if f else None,
                      'extra': extra, 'runtime_s': rt,
                      'slowdown': rt / base, 'swapin_faults': n, 'us_per_fault_service': svc,
                      'us_per_fault_stall': stall, 'us_per_fault_guest': seen})
    return table


# ---- tables ----

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(exp, runs):
    """Medians per mode: makespan, per-VM runtime, swap traffic, faults, latencies."""
    s = {}
    for mode, rs in runs.items():
        vm = {}
        for v in exp.vms:
            xs = [next(x for x in r['vms'] if x['vm'] == v['name']) for r in rs]
            lat = [0] * 16
            for x in xs:
                for i, c in enumerate(x.get('fault_lat_us', [])[:16]):
                    lat[i] += c
            vm[v['name']] = {
                'runtime_s': med(x['runtime_s'] for x in xs),
                'swapin_faults': med(x.get('faults_swapin', x.get('majflt')) for x in xs),
                'swapin_mib': med(x.get('swapin_bytes', 0) / MiB for x in xs) if mode != 'kernel' else None,
                'swapout_mib': med(x.get('swapout_bytes', 0) / MiB for x in xs) if mode != 'kernel' else None,
                'stall_s': med(x.get('stall_ns', 0) / 1e9 for x in xs) if mode != 'kernel' else None,
                'lat': lat}
        s[mode] = {'makespan_s': med(r['makespan_s'] for r in rs), 'vms': vm,
                   'total_runtime_s': med(sum(x['runtime_s'] for x in r['vms']) for r in rs)}
        if mode == 'kernel':
            s[mode]['swapin_mib'] = med(r['swapin_bytes'] / MiB for r in rs)
            s[mode]['swapout_mib'] = med(r['swapout_bytes'] / MiB for r in rs)
    base = s.get('unconstrained')
    for mode in s:
        for n, x in s[mode]['vms'].items():
            x['slowdown'] = x['runtime_s'] / base['vms'][n]['runtime_s'] if base else None
    return s


def fmt(v, f='%.2f'):
    return '-' if v is None else f % v


def tables(exp, s, sw):
    L = ['## %s' % exp.title, '']
    if s:
        L += ['Budget %d MiB for %s; medians of %d rounds. Runtime in s (slowdown against '
              'unconstrained).' % (exp.budget // MiB, ', '.join(
                  '%s (%s, %s)' % (v['name'], v['guest'], v['mem']) for v in exp.vms),
                  exp.rounds), '']
        names = [v['name'] for v in exp.vms]
        L.append('| mode | makespan s | ' + ' | '.join(names) +
                 ' | swap-in faults | swap in MiB | swap out MiB |')
        L.append('|---|---:|' + '---:|' * len(names) + '---:|---:|---:|')
        for mode in exp.modes:
            if mode not in s:
                continue
            x = s[mode]
            cells = ['%s (%s)' % (fmt(x['vms'][n]['runtime_s']), fmt(x['vms'][n]['slowdown'], '%.2fx'))
                     for n in names]
            fin = sum(x['vms'][n]['swapin_faults'] or 0 for n in names)
            si = x.get('swapin_mib', sum(x['vms'][n]['swapin_mib'] or 0 for n in names))
            so = x.get('swapout_mib', sum(x['vms'][n]['swapout_mib'] or 0 for n in names))
            L.append('| %s | %s | %s | %d%s | %.0f | %.0f |' % (
                mode, fmt(x['makespan_s']), ' | '.join(cells), fin,
                ' (major faults)' if mode == 'kernel' else '', si, so))
        L += ['', 'Fault service time (the pager\'s histogram, all VMs; kernel mode has none):', '',
              '| mode | ' + ' | '.join(LAT_LABELS[:14]) + ' | more |',
              '|---|' + '---:|' * 15]
        for mode in exp.modes:
            if mode not in s or mode == 'kernel':
                continue
            lat = [sum(s[mode]['vms'][n]['lat'][i] for n in names) for i in range(16)]
            L.append('| %s | %s | %d |' % (mode, ' | '.join(str(c) for c in lat[:14]),
                                          sum(lat[14:])))
    if sw:
        L += ['', '### Local memory as a fraction of the working set', '',
              '%s, %s guest RAM, `%s`, working set %s, alone; medians of %d. The limit is '
              'the fraction of the working set plus what the guest holds beside it (%d KiB, '
              'measured without a limit) plus the two reclaim batches kept free below the '
              'limit.' % (
                  exp.sweep['guest'], exp.sweep['mem'], exp.sweep.get('cmdline', ''),
                  exp.sweep['wss'], exp.rounds, (sw[0]['extra'] or 0) // 1024), '',
              '| local memory | limit | runtime s | slowdown | swap-in faults | µs/fault, service '
              '| µs/fault, vCPU stall | µs/fault, guest-visible |',
              '|---|---:|---:|---:|---:|---:|---:|---:|']
        for r in sw:
            L.append('| %s | %s | %.2f | %.2fx | %s | %s | %s | %s |' % (
                'no limit' if r['fraction'] is None else '%d%%' % (r['fraction'] * 100),
                '-' if r['limit'] is None else '%d MiB' % (r['limit'] // MiB), r['runtime_s'],
                r['slowdown'], fmt(r['swapin_faults'], '%d'), fmt(r['us_per_fault_service'], '%.0f'),
                fmt(r['us_per_fault_stall'], '%.0f'), fmt(r['us_per_fault_guest'], '%.0f')))
        L += ['', 'For comparison, FluidMem (Caldwell et al., ICDCS 2020) reports 25 µs per '
              'page fault to RAMCloud and 107 µs to SSD swap.']
    return '\n'.join(L) + '\n'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('experiment')
    ap.add_argument('--build', default='build')
    ap.add_argument('--out', default=None)
    ap.add_argument('--rounds', type=int)
    ap.add_argument('--modes')
    ap.add_argument('--no-sweep', action='store_true')
    ap.add_argument('--no-mix', action='store_true')
    a = ap.parse_args()
    try:
        exp = Experiment(a.experiment, os.path.abspath(a.build))
    except (OSError, ValueError, KeyError, tomllib.TOMLDecodeError) as e:
        print('ufvmexp: %s: %s' % (a.experiment, e), file=sys.stderr)
        return 2
    if a.rounds:
        exp.rounds = a.rounds
    if a.modes:
        exp.modes = a.modes.split(',')
    out = a.out or os.path.join(os.environ.get('TMPDIR', '/tmp'), 'ufvmexp-%d' % os.getpid())
    os.makedirs(out, exist_ok=True)
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        print('ufvmexp: /dev/kvm is not usable here', file=sys.stderr)
        return 77
    runs, failed = {}, False
    ks = None
    if exp.vms and not a.no_mix:
        if 'kernel' in exp.modes:
            foot = sum(size(v['mem']) for v in exp.vms)
            ks = KernelSwap(exp.budget + exp.slack * len(exp.vms), foot + 256 * MiB,
                            os.environ.get('TMPDIR', '/tmp'))
        try:
            if ks:
                ks.__enter__()
            for r in range(exp.rounds):
                order = exp.modes if r % 2 == 0 else list(reversed(exp.modes))
                for mode in order:
                    tag = '%s-%d' % (mode, r)
                    res, why = run_kernel(exp, out, tag, ks) if mode == 'kernel' else \
                        run_pool(exp, mode, out, tag)
                    if not res:
                        say('%s round %d: %s' % (mode, r, why))
                        failed = True
                        continue
                    bad = [x['vm'] for x in res['vms'] if not x['verified']]
                    say('%s round %d: makespan %.2f s; %s%s' % (
                        mode, r, res['makespan_s'], ', '.join(
                            '%s %.2f s' % (x['vm'], x['runtime_s']) for x in res['vms']),
                        '; NOT VERIFIED: ' + ', '.join(bad) if bad else ''))
                    if bad:
                        failed = True
                    runs.setdefault(mode, []).append(res)
        except OSError as e:
            say('kernel mode: %s' % e)
            failed = True
        finally:
            if ks:
                ks.__exit__()
    s = summarize(exp, runs) if runs else None
    sw = sweep(exp, exp.rounds, out) if exp.sweep and not a.no_sweep else None
    if exp.sweep and not a.no_sweep and sw is None:
        failed = True
    for mode, rs in runs.items():
        if mode == 'kernel':
            continue
        png = os.path.join(out, 'pool-%s.png' % mode)
        subprocess.run([os.path.join(exp.build, 'pool/ufvmpool'), 'plot', rs[0]['series'], png,
                        '--title', '%s: %s' % (exp.title, mode)], capture_output=True)
    text = tables(exp, s, sw)
    print(text)
    with open(os.path.join(out, 'results.md'), 'w') as f:
        f.write(text)
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump({'experiment': exp.path, 'runs': runs, 'summary': s, 'sweep': sw}, f, indent=1)
    say('results and plots in %s' % out)
    return 1 if failed else 0


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # finally: swap off, cgroup gone
    sys.exit(main())
