#!/usr/bin/env python3
"""pool_bench.py: three VMs sharing half their footprint, each ratio measured side by side.

    pool_bench.py BUILD_DIR

Runs bench/experiments/pool_mix.toml through tools/ufvmexp.py: a hot/cold, a zipf and a
sequential VM in a budget of half their combined footprint, under
  unconstrained  no memory pressure (the slowdown baseline)
  kernel         --pager off in one memory cgroup with swap: the host kernel's reclaim
  static         ufvmpool, equal split
  wss, tax, pressure  ufvmpool's other policies
rounds alternating the order of modes; medians. Targets (issue 10):
  total completion time (makespan), best pool policy / kernel   <= 0.70
  best pool policy / static split                                 <= 0.85
  no VM slower than 2x its unconstrained run under the best policy
Then the sweep of local memory (bench/experiments/sweep.toml), figures only.
Knobs: BENCH_ROUNDS (3), BENCH_OUT (results dir), BENCH_SWEEP=0 skips the sweep.
Exit status: 0 targets met, 1 a target missed, 2 could not measure, 77 skipped.
"""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tools'))
import ufvmexp  # noqa: E402


def say(*a):
    print('pool_bench:', *a, flush=True)


def verdict(what, ratio, target):
    ok = ratio <= target
    say('%s: %.2f (target <= %.2f): %s' % (what, ratio, target, 'PASS' if ok else 'MISS'))
    return ok


def reaction(results):
    """Seconds from each VM's exit to the first decision where the VMs left have limits
    summing to the budget (or to all their guest RAM), over the pool runs' series."""
    import json
    try:
        with open(results) as f:
            runs = json.load(f)['runs']
    except (OSError, ValueError, KeyError):
        return []
    out = []
    for mode, rs in runs.items():
        for r in rs:
            if 'series' not in r or mode == 'unconstrained':
                continue
            rows, exits, budget = {}, [], None
            for line in open(r['series']):
                o = json.loads(line)
                if 'pool' in o:
                    budget = o['pool']['budget_bytes']
                elif 'resident_bytes' in o:
                    rows.setdefault(o['t'], []).append(o)
                elif 'gone:' in o.get('event', ''):
                    exits.append(o['t'])
            for t0 in exits:
                for t in sorted(x for x in rows if x > t0):
                    live = [v for v in rows[t] if v['state'] != 'gone']
                    if not live:
                        break
                    if sum(v['limit_bytes'] for v in live) >= budget - (1 << 20) or all(
                            v['limit_bytes'] >= v['target_bytes'] for v in live):
                        out.append(t - t0)
                        break
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        say('SKIP: /dev/kvm is not usable here')
        return 77
    build = os.path.abspath(sys.argv[1])
    rounds = int(os.environ.get('BENCH_ROUNDS', '3'))
    out = os.environ.get('BENCH_OUT') or os.path.join(os.environ.get('TMPDIR', '/tmp'),
                                                      'ufvm-pool-bench')
    os.makedirs(out, exist_ok=True)
    args = ['--build', build, '--rounds', str(rounds)]
    if os.geteuid() != 0 or not os.path.isdir(ufvmexp.CGROOT):
        say('SKIP: the kernel baseline needs root and memory cgroup v1 at ' + ufvmexp.CGROOT)
        return 77
    sys.argv = ['ufvmexp'] + args + ['--out', os.path.join(out, 'mix'),
                                     os.path.join(HERE, 'experiments', 'pool_mix.toml')]
    rc = ufvmexp.main()
    import json
    try:
        with open(os.path.join(out, 'mix', 'results.json')) as f:
            s = json.load(f)['summary']
    except (OSError, ValueError, KeyError):
        s = None
    if rc or not s or not all(m in s for m in ('kernel', 'static', 'unconstrained')):
        say('ERROR: the runs did not all complete (see above)')
        return 2
    pools = {m: s[m] for m in ufvmexp.POLICIES if m in s}
    best = min(pools, key=lambda m: pools[m]['makespan_s'])
    say('makespan medians: ' + ', '.join('%s %.2f s' % (m, s[m]['makespan_s']) for m in s))
    say('best policy: %s' % best)
    ok = verdict('makespan, pool (%s) / kernel' % best,
                 s[best]['makespan_s'] / s['kernel']['makespan_s'], 0.70)
    ok &= verdict('makespan, pool (%s) / static split' % best,
                  s[best]['makespan_s'] / s['static']['makespan_s'], 0.85)
    worst = max(s[best]['vms'].items(), key=lambda kv: kv[1]['slowdown'])
    ok &= verdict('largest slowdown under %s (%s) / unconstrained' % (best, worst[0]),
                  worst[1]['slowdown'], 2.0)
    for m in ('kernel', 'static'):
        w = max(s[m]['vms'].items(), key=lambda kv: kv[1]['slowdown'])
        say('for reference, largest slowdown under %s: %s %.2fx' % (m, w[0], w[1]['slowdown']))
    react = reaction(os.path.join(out, 'mix', 'results.json'))
    if react:
        say('reaction: after a VM exits, the others hold its memory within %.2f s (median of '
            '%d exits; max %.2f s): the budget is handed on at the next decision' %
            (statistics.median(react), len(react), max(react)))
    if os.environ.get('BENCH_SWEEP', '1') != '0':
        sys.argv = ['ufvmexp'] + args + ['--out', os.path.join(out, 'sweep'),
                                         os.path.join(HERE, 'experiments', 'sweep.toml')]
        if ufvmexp.main():
            say('ERROR: the sweep did not complete')
            return 2
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
