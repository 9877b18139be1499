#!/usr/bin/env python3
"""pagetrace.py: read a page-event trace (`ufvm run --trace-pages FILE`).

    pagetrace.py FILE            what happened: transitions, evictions and refaults, the
                                 delay from each eviction to its refault, the regions that
                                 refault most, and a timeline per second
    pagetrace.py --json FILE     the same figures as one JSON object
    pagetrace.py --check FILE    replay every page's transitions from NEW: each record must
                                 start where that page's previous one ended (exit 1 if not)

A record is (ns since the pager started, page, from, to, flags): mm/trace.c and
mm/README.md. An eviction is WRITEBACK -> SWAPPED (its content went to swap, or stayed
there) or any move to NEW (no write: the page held zeros, or the guest discarded it). A refault is the next
mapping of such a page: SWAPPED -> RESIDENT or UNMAPPED (a swap-in, readahead included)
or NEW -> RESIDENT (a refill: the guest touches again a page that was dropped without
a write, because it held only zeros or because the guest discarded it). A trace of a
VMM that was killed has no counts in its header: the records up to the first empty one
are read.
"""
import argparse
import json
import struct
import sys
from collections import Counter, defaultdict

STATES = ['NEW', 'RESIDENT', 'UNMAPPED', 'WRITEBACK', 'SWAPPED']
NEW, RESIDENT, UNMAPPED, WRITEBACK, SWAPPED = range(5)
HDR = struct.Struct('<8sIIQQQQ16x')
REC = struct.Struct('<QIBBBx')
REGION = 512  # pages: 2 MiB


def load(path):
    with open(path, 'rb') as f:
        data = f.read()
    if len(data) < HDR.size:
        raise ValueError('%s: shorter than a trace header' % path)
    magic, version, rsize, npages, psize, nrec, dropped = HDR.unpack_from(data)
    if magic != b'UFVMPTR1' or version != 1 or rsize != REC.size:
        raise ValueError('%s: not a ufvm page trace (magic %r, version %d)' % (path, magic,
                                                                               version))
    avail = (len(data) - HDR.size) // REC.size
    closed = nrec > 0 or avail == 0
    n = min(nrec, avail) if closed else avail
    recs = []
    for i in range(n):
        r = REC.unpack_from(data, HDR.size + i * REC.size)
        if not closed and r[2] == r[3]:  # a killed VMM's file: its first empty record ends it
            break
        recs.append(r)
    return {'pages': npages, 'page_size': psize, 'dropped': dropped, 'closed': closed,
            'records': recs}


def check(t):
    """Replay in record order (a page's records are ordered: taken under its lock)."""
    state = {}
    errors = []
    for i, (ns, pfn, frm, to, flags) in enumerate(t['records']):
        if pfn >= t['pages'] or frm >= len(STATES) or to >= len(STATES):
            errors.append('record %d: page %d, %d -> %d out of range' % (i, pfn, frm, to))
            continue
        if state.get(pfn, NEW) != frm:
            errors.append('record %d: page %d goes %s -> %s but was %s' % (
                i, pfn, STATES[frm], STATES[to], STATES[state.get(pfn, NEW)]))
        state[pfn] = to
    final = Counter(STATES[s] for s in state.values())
    final['NEW'] += t['pages'] - len(state)
    return errors, dict(final)


def quantiles(xs, qs=(0.5, 0.9, 0.99)):
    xs = sorted(xs)
    return {str(q): xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None for q in qs}


def analyse(t):
    trans = Counter()
    evicted_at = {}  # pfn -> ns of its last eviction, and whether it was written
    ever = set()  # pages that had content at some time
    refaults = {'swapin': [], 'zero': []}
    by_region = Counter()
    per_s = defaultdict(Counter)
    for ns, pfn, frm, to, flags in t['records']:
        trans['%s>%s' % (STATES[frm], STATES[to])] += 1
        sec = ns // 10**9
        kind = None
        if frm == WRITEBACK and to == SWAPPED:
            evicted_at[pfn] = (ns, True)
            per_s[sec]['swap-out'] += 1
        elif frm != NEW and to == NEW:  # no write: zeros, or discarded by the guest
            evicted_at[pfn] = (ns, False)
            per_s[sec]['drop'] += 1
        elif frm == SWAPPED and to in (RESIDENT, UNMAPPED):
            kind = 'swapin'
        elif frm == NEW and to in (RESIDENT, UNMAPPED):
            if pfn in evicted_at:
                kind = 'zero'
            elif pfn not in ever:
                per_s[sec]['first touch'] += 1
        if to in (RESIDENT, UNMAPPED, WRITEBACK):
            ever.add(pfn)
        if kind and pfn in evicted_at:
            refaults[kind].append((ns - evicted_at.pop(pfn)[0]) / 1e6)
            by_region[pfn // REGION] += 1
            per_s[sec]['swap-in' if kind == 'swapin' else 'refill'] += 1
    return {
        'records': len(t['records']),
        'dropped': t['dropped'],
        'span_s': round(t['records'][-1][0] / 1e9, 3) if t['records'] else 0,
        'pages': t['pages'],
        'transitions': dict(sorted(trans.items(), key=lambda kv: -kv[1])),
        'touched_pages': len(ever),
        'refaults': {k: {'count': len(v), 'delay_ms': quantiles(v),
                         'within_1s': sum(1 for d in v if d < 1000)}
                     for k, v in refaults.items()},
        'top_regions': [{'gpa': '0x%x' % (r * REGION * t['page_size']), 'refaults': n}
                        for r, n in by_region.most_common(10)],
        'per_second': {int(s): dict(c) for s, c in sorted(per_s.items())},
    }


def show(a):
    print('%d records over %.1f s, %d pages of guest RAM, %d touched%s' % (
        a['records'], a['span_s'], a['pages'], a['touched_pages'],
        ', %d transitions not recorded (the file was full)' % a['dropped'] if a['dropped']
        else ''))
    print('\ntransitions:')
    for k, n in a['transitions'].items():
        print('  %-22s %10d' % (k.replace('>', ' -> '), n))
    print('\nrefaults (the next mapping of an evicted page) and the delay since its eviction:')
    for k, what in (('swapin', 'swap-ins (read back)'),
                    ('zero', 'refills (dropped unwritten, touched again)')):
        r = a['refaults'][k]
        q = r['delay_ms']
        print('  %-44s %8d, %d within 1 s; delay median %s ms, 90%% %s ms, 99%% %s ms' % (
            what, r['count'], r['within_1s'], *('%.0f' % q[x] if q[x] is not None else '-'
                                                 for x in ('0.5', '0.9', '0.99'))))
    if a['top_regions']:
        print('\nregions (2 MiB) with the most refaults:')
        for r in a['top_regions']:
            print('  %14s %8d' % (r['gpa'], r['refaults']))
    cols = ['first touch', 'swap-out', 'drop', 'swap-in', 'refill']
    print('\nper second:\n  %5s %s' % ('s', ' '.join('%12s' % c for c in cols)))
    for s, c in a['per_second'].items():
        print('  %5d %s' % (s, ' '.join('%12d' % c.get(k, 0) for k in cols)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--json', action='store_true')
    ap.add_argument('--check', action='store_true')
    ap.add_argument('file')
    a = ap.parse_args()
    try:
        t = load(a.file)
    except (OSError, ValueError) as e:
        print('pagetrace: %s' % e, file=sys.stderr)
        return 2
    if a.check:
        errors, final = check(t)
        print(json.dumps({'records': len(t['records']), 'dropped': t['dropped'],
                          'closed': t['closed'], 'final': final, 'errors': errors[:20],
                          'nerrors': len(errors)}))
        return 1 if errors else 0
    r = analyse(t)
    if a.json:
        print(json.dumps(r))
    else:
        show(r)
    return 0


if __name__ == '__main__':
    sys.exit(main())
