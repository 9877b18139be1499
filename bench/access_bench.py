#!/usr/bin/env python3
"""access_bench.py: access tracking benchmarks, each a ratio measured side by side in one run.

    access_bench.py BUILD wss       WSS estimate of hotcold's known hot set vs the truth
    access_bench.py BUILD overhead  guest time with access sampling on vs off
    access_bench.py BUILD dirty     dirty harvesting, KVM's ring vs its bitmap

Prints figures and a `... (target ...): PASS|MISS` line; exit 0 met, 1 missed,
77 skipped. Knobs: BENCH_PAIRS (overhead/dirty runs per side, default 5).
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20
PAGE = 4096


class VM:
    def __init__(self, build, args, cmdline, mem="544M", guest="hotcold.elf"):
        self.dir = tempfile.mkdtemp(prefix="ufvm-bench-")
        self.sock = os.path.join(self.dir, "api.sock")
        self.outp = os.path.join(self.dir, "out")
        self.p = subprocess.Popen([os.path.join(build, "vmm/ufvm"), "run", "--mem", mem,
                                   "--api", self.sock, *args, "--cmdline", cmdline,
                                   os.path.join(build, "guests", guest)],
                                  stdout=open(self.outp, "w"), stderr=subprocess.DEVNULL)
        self.s = None

    def text(self):
        with open(self.outp) as f:
            return f.read()

    def wait_for(self, what, timeout=60):
        t = time.time() + timeout
        while what not in self.text():
            if self.p.poll() is not None or time.time() > t:
                raise RuntimeError("guest ended before '%s'" % what)
            time.sleep(0.02)

    def call(self, req):
        if not self.s:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.connect(self.sock)
            self.buf = b""
        self.s.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self.buf:
            self.buf += self.s.recv(1 << 20)
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def wait(self, timeout=300):
        self.p.wait(timeout=timeout)
        return self.p.returncode

    def round_ms(self):
        """The guest's own time for its rounds (start-up and fill excluded)."""
        return sum(float(m) for m in re.findall(r"round \d+: ([0-9.]+) ms", self.text()))


def verdict(name, ok, target):
    print("%s (target %s): %s" % (name, target, "PASS" if ok else "MISS"))
    return 0 if ok else 1


def bench_wss(build):
    hot, cold = 64, 448
    vm = VM(build, ["--scan-interval", "1000"], "hot=%d cold=%d rounds=60000" % (hot, cold))
    vm.wait_for("initial fill")
    t0 = time.time()
    est = []
    while time.time() - t0 < 3.2:  # at most 3 windows of 1 s after the hot set is in use
        time.sleep(0.4)
        w = vm.call({"cmd": "wss"})
        est.append((time.time() - t0, w["windows"][0]["pages"], w["scans"]))
    vm.call({"cmd": "stop"})
    vm.wait()
    truth = hot * MIB // PAGE
    for t, pages, scans in est:
        print("wss: t=%.1f s after the fill, %d scans: 1 s window %d pages (%.1f MiB), truth %d"
              % (t, scans, pages, pages * PAGE / MIB, truth))
    ratio = est[-1][1] / truth
    print("wss: estimate / truth after 3 windows = %.3f (hot %d MiB of %d MiB touched)"
          % (ratio, hot, hot + cold))
    return verdict("wss accuracy", abs(ratio - 1) <= 0.05, "within 5%")


def paired(build, sides, cmdline, mem, pairs, probe=None):
    """Run each side's args alternately, `pairs` times; the guest's round time per run."""
    res = {k: [] for k in sides}
    extra = {k: [] for k in sides}
    for i in range(pairs):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for k in order:
            vm = VM(build, sides[k], cmdline, mem=mem)
            if probe:
                extra[k] += probe(vm)
            if vm.wait() != 0:
                raise RuntimeError("%s: guest failed:\n%s" % (k, vm.text()[-500:]))
            res[k].append(vm.round_ms())
    return res, extra


def bench_overhead(build, pairs):
    cmd = "hot=64 cold=64 rounds=400"
    # --api alone turns sampling on (at 1 s): the off side must say off
    sides = {"off": ["--scan-interval", "off"], "on": ["--scan-interval", "1000"]}
    res, _ = paired(build, sides, cmd, "160M", pairs)
    for k in sides:
        print("overhead: tracking %-3s: guest round time, median %.0f ms over %d runs %s"
              % (k, statistics.median(res[k]), pairs, [round(x) for x in res[k]]))
    ratio = statistics.median(res["on"]) / statistics.median(res["off"])
    pr = [a / b for a, b in zip(res["on"], res["off"])]
    print("overhead: median(on) / median(off) = %.3f (%s; default scan rate: 1/64 of RAM per 1 s)"
          % (ratio, cmd))
    print("overhead: per-pair ratios %s, median %.3f" % ([round(x, 3) for x in pr],
                                                          statistics.median(pr)))
    return verdict("tracking slowdown", ratio <= 1.03, "<= 1.03")


def harvest_probe(vm):
    """Harvest every 100 ms while the guest runs; time each `dirty` request."""
    lat = []
    try:
        vm.wait_for("initial fill")
        while vm.p.poll() is None:
            t = time.perf_counter()
            a = vm.call({"cmd": "dirty"})
            if a.get("ok"):
                lat.append((time.perf_counter() - t) * 1e3)
            time.sleep(0.1)
    except (OSError, RuntimeError, ValueError):
        pass
    return lat[1:]  # the first reports every page


def bench_dirty(build, pairs):
    cmd = "hot=64 cold=64 rounds=30"  # with a harvest every 100 ms a round takes ~0.5 s
    # sampling off on every side: only the dirty log differs
    so = ["--scan-interval", "off"]
    sides = {"off": so, "bitmap": so + ["--dirty-track=bitmap"], "ring": so + ["--dirty-track=ring"]}
    res, lat = paired(build, sides, cmd, "160M", pairs, probe=harvest_probe)
    for k in sides:
        med = statistics.median(lat[k]) if lat[k] else float("nan")
        print("dirty: %-6s guest round time median %.0f ms; harvest request median %.2f ms over %d"
              % (k, statistics.median(res[k]), med, len(lat[k])))
    g = statistics.median(res["ring"]) / statistics.median(res["bitmap"])
    h = statistics.median(lat["ring"]) / statistics.median(lat["bitmap"])
    gb = statistics.median(res["bitmap"]) / statistics.median(res["off"])
    gr = statistics.median(res["ring"]) / statistics.median(res["off"])
    print("dirty: guest time ring/bitmap = %.3f (bitmap/off %.3f, ring/off %.3f); "
          "harvest time ring/bitmap = %.3f" % (g, gb, gr, h))
    print("dirty: figures only, no target")
    return 0


def main():
    build, what = sys.argv[1], sys.argv[2]
    pairs = int(os.environ.get("BENCH_PAIRS", "5"))
    if not os.path.exists("/dev/kvm"):
        print("skipped: no /dev/kvm")
        return 77
    if what == "wss":
        return bench_wss(build)
    if what == "overhead":
        return bench_overhead(build, pairs)
    return bench_dirty(build, pairs)


if __name__ == "__main__":
    sys.exit(main())
