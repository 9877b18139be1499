"""cases.py: what the end-to-end scripts share: the machine's slowness (SLOW, all of them),
and for those made of named cases (e2e_pager, e2e_memcached, e2e_stop) their command line
and the loop that runs the cases.

    SCRIPT --list                                   the cases, one a line
    SCRIPT --ufvm UFVM --guests DIR [...] [CASE...] run them (all when none is named)

A case reports failures (a list of what went wrong) and a message; it is skipped when it
raises Skip or its message starts with SKIP. Exit status: 0 passed, 1 failed, 77 all
skipped (meson's skip).
"""
import argparse
import os
import sys
import time
import traceback

# A slower machine (an emulator's nested KVM, the lanes) multiplies waits and time bounds:
# UFVM_TEST_SLOWDOWN (the lanes set it)
SLOW = float(os.environ.get('UFVM_TEST_SLOWDOWN', '1'))


class Skip(Exception):
    """The case needs something this host lacks."""


def parse(extra=()):
    """The command line: --list, --ufvm, --guests, the case names, and the options extra
    names (each taking a value)."""
    ap = argparse.ArgumentParser()
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--ufvm')
    ap.add_argument('--guests')
    for opt in extra:
        ap.add_argument(opt)
    ap.add_argument('cases', nargs='*')
    return ap.parse_args()


def no_kvm(prog):
    """Why this host cannot run VMs, printed as a skip; None if it can."""
    if os.access('/dev/kvm', os.R_OK | os.W_OK):
        return None
    print('%s: skipped: /dev/kvm is not usable here' % prog)
    return 77


def run(names, one):
    """Run each case: one(name) -> (failures, message). Prints a line per case; the exit
    status."""
    failed = skipped = 0
    for name in names:
        t0 = time.time()
        try:
            f, msg = one(name)
        except Skip as e:
            f, msg = [], 'SKIP: %s' % e
        except Exception:  # a case that broke is a failure that says where, not a crash
            traceback.print_exc(file=sys.stdout)
            f, msg = ['raised %s' % traceback.format_exc().strip().splitlines()[-1]], ''
        dt = time.time() - t0
        if f:
            failed += 1
            print('FAIL %s (%.1f s): %s' % (name, dt, '; '.join(f)), flush=True)
        elif msg.startswith('SKIP'):
            skipped += 1
            print('skip %s: %s' % (name, msg), flush=True)
        else:
            print('ok   %s (%.1f s) %s' % (name, dt, msg), flush=True)
    if failed:
        return 1
    return 77 if names and skipped == len(names) else 0
