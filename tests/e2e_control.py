#!/usr/bin/env python3
"""e2e_control.py: every control-socket request, good and malformed, and ufvmctl's output.

usage: e2e_control.py UFVM UFVMCTL HOTCOLD.elf
Runs a long hotcold guest with --api, talks to it over the socket (python3
stdlib only) and through ufvmctl, then stops it with an exit status.
"""
import base64
import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

UFVM, CTL, GUEST = sys.argv[1:4]
MEM = 128 << 20
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(20)
        self.s.connect(path)
        self.buf = b""

    def send_raw(self, data):
        self.s.sendall(data)

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, req):
        self.send_raw((req if isinstance(req, str) else json.dumps(req)).encode() + b"\n")
        return self.recv()

    def close(self):
        self.s.close()


def ctl(*args):
    p = subprocess.run([CTL, *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def guest_lines(path):
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def test_malformed(c):
    bad = [
        ("not json", "not json at all", "malformed request"),
        ("an array", "[1, 2]", "not a JSON object"),
        ("cmd not a string", '{"cmd": 5}', 'no "cmd"'),
        ("no cmd", "{}", 'no "cmd"'),
        ("empty line", "", "malformed request"),
        ("unknown command", '{"cmd": "explode"}', "unknown command 'explode'"),
        ("unknown key", '{"cmd": "stats", "verbose": 1}', "unknown key 'verbose'"),
        ("duplicate key", '{"cmd": "stats", "cmd": "pause"}', "malformed request"),
        ("reclaim without pages", '{"cmd": "reclaim"}', "'pages' is required"),
        ("reclaim negative", '{"cmd": "reclaim", "pages": -1}', "bad argument"),
        ("reclaim string", '{"cmd": "reclaim", "pages": "x"}', "bad argument"),
        ("reclaim too many", '{"cmd": "reclaim", "pages": %d}' % (MEM // 4096 + 1), "bad argument"),
        ("limit without bytes", '{"cmd": "limit"}', "bad argument"),
        ("limit bad size", '{"cmd": "limit", "bytes": "12Q"}', "not a size"),
        ("limit above RAM", '{"cmd": "limit", "bytes": "1G"}', "larger than guest RAM"),
        ("swapout prefetch not bool", '{"cmd": "swapout", "prefetch": 3}', "'prefetch'"),
        ("pagemap first < 0", '{"cmd": "pagemap", "first": -1}', "bad argument"),
        ("pagemap first past RAM", '{"cmd": "pagemap", "first": %d}' % (MEM // 4096), "bad argument"),
        ("pagemap count 0", '{"cmd": "pagemap", "count": 0}', "bad argument"),
        ("stop status 256", '{"cmd": "stop", "status": 256}', "bad argument"),
        ("truncated JSON", '{"cmd": "stats"', "malformed request"),
    ]
    for what, line, want in bad:
        a = c.call(line)
        check(a.get("ok") is False and want in a.get("error", ""),
              "malformed: %s -> error containing %r (got %r)" % (what, want, a.get("error")))
        # the connection stays usable after every error
        check(c.call({"cmd": "stats"}).get("ok") is True, "malformed: %s: connection still usable" % what)
    a = c.call({"cmd": "explode", "id": 42})
    check(a.get("id") == 42 and a.get("ok") is False, "an error answer echoes the request id")


def test_oversized(c):
    c.send_raw(b"x" * 70000 + b"\n")
    a = c.recv()
    check(a.get("ok") is False and "too long" in a.get("error", ""), "oversized line -> 'too long'")
    # a long line sent in pieces, then a valid request in the same write as its tail
    c.send_raw(b'{"cmd": "stats", "pad": "' + b"y" * 40000)
    time.sleep(0.05)
    c.send_raw(b"z" * 40000 + b'"}\n{"cmd": "stats", "id": "after"}\n')
    a, b = c.recv(), c.recv()
    check(a.get("ok") is False and "too long" in a.get("error", ""), "oversized line in pieces -> one error")
    check(b.get("id") == "after" and b.get("ok") is True, "the request after an oversized line is served")
    exact = b'{"cmd":"stats","id":"%s"}' % (b"p" * (65536 - 23))
    check(len(exact) == 65536, "(test) a request of exactly 64 KiB")
    a = c.call(exact.decode())
    check(a.get("ok") is True, "a request of exactly 65536 bytes is accepted")
    a = c.call(exact.decode().replace("pp", "ppp", 1))
    check(a.get("ok") is False and "too long" in a.get("error", ""), "65537 bytes are too long")


def test_clients(sock):
    cs = [Client(sock) for _ in range(4)]
    for i, c in enumerate(cs):
        c.send_raw(b"".join(b'{"cmd":"stats","id":%d}\n' % (i * 10 + k) for k in range(3)))
    for i, c in enumerate(cs):
        ids = [c.recv().get("id") for _ in range(3)]
        check(ids == [i * 10, i * 10 + 1, i * 10 + 2], "client %d: pipelined answers in order" % i)
    # clients that vanish: mid-request, and before reading a large answer
    cs[0].send_raw(b'{"cmd": "sta')
    cs[0].close()
    cs[1].send_raw(b'{"cmd": "pagemap"}\n' * 20)
    cs[1].s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cs[1].close()
    half = cs[2]
    half.send_raw(b'{"cmd": "pagemap", "id": "half"}\n')
    half.s.shutdown(socket.SHUT_WR)
    check(half.recv().get("id") == "half", "a half-closed client still gets its answer")
    half.close()
    time.sleep(0.2)
    check(cs[3].call({"cmd": "stats"}).get("ok") is True, "the server survives clients that vanish")
    cs[3].close()


def test_requests(c, out_path):
    a = c.call({"cmd": "stats", "id": "s1"})
    vm = a.get("vm", {})
    check(a.get("ok") is True and a.get("id") == "s1", "stats: ok, id echoed")
    check(vm.get("mem_bytes") == MEM and vm.get("pages") == MEM // 4096 and vm.get("cpus") == 1,
          "stats: vm size, pages and vCPUs")
    pager = a.get("pager")
    check(pager is None or (isinstance(pager, dict) and "resident_pages" in pager),
          "stats: pager is null or carries its counters")

    check(c.call({"cmd": "pause"}).get("ok") is True, "pause: ok")
    check(c.call({"cmd": "stats"})["vm"]["paused"] is True, "pause: stats says paused")
    n0 = guest_lines(out_path)
    time.sleep(0.5)
    check(guest_lines(out_path) == n0, "pause: the guest makes no progress")
    check(c.call({"cmd": "pause"}).get("ok") is True, "pause twice: ok")
    check(c.call({"cmd": "resume"}).get("ok") is True, "resume: ok")
    time.sleep(0.5)
    check(guest_lines(out_path) > n0, "resume: the guest runs again")
    check(c.call({"cmd": "stats"})["vm"]["paused"] is False, "resume: stats says running")

    a = c.call({"cmd": "pagemap"})
    st = base64.b64decode(a.get("state", ""))
    check(a.get("ok") is True and a.get("count") == MEM // 4096 == len(st), "pagemap: one byte per page")
    check(sum(a.get("counts", {}).values()) == len(st), "pagemap: state counts add up")
    in_memory = a.get("counts", {}).get("resident", 0) + a.get("counts", {}).get("unmapped", 0)
    check(in_memory >= 24 * 256, "pagemap: the guest's 24 MiB are in memory (resident or sampled)")
    a = c.call({"cmd": "pagemap", "first": 100, "count": 7})
    check(a.get("first") == 100 and len(base64.b64decode(a["state"])) == 7, "pagemap: a sub-range")
    a = c.call({"cmd": "pagemap", "first": MEM // 4096 - 3, "count": 100})
    check(a.get("count") == 3, "pagemap: a range past the end is clipped")

    for req in ({"cmd": "swapout"}, {"cmd": "swapin"}, {"cmd": "swapout", "prefetch": True},
                {"cmd": "wss"}, {"cmd": "limit", "bytes": "64M"}, {"cmd": "reclaim", "pages": 100},
                {"cmd": "limit", "bytes": 0}):
        a = c.call(req)
        name = json.dumps(req)
        if a.get("ok"):
            check(True, "%s: ok" % name)
        else:
            check(a.get("error", "").startswith("not available:") and
                  (pager is None or req["cmd"] in ("wss", "limit", "reclaim")),
                  "%s: ok or 'not available' (got %r)" % (name, a.get("error")))
    if pager is not None:
        a = c.call({"cmd": "swapout"})
        check(a.get("ok") is True and a.get("pages_out", 0) > 0, "swapout: pages written")
        a = c.call({"cmd": "swapin"})
        check(a.get("ok") is True and a.get("swapped_pages") == 0, "swapin: nothing left in swap")


def test_ufvmctl(sock, tmp):
    rc, out, err = ctl(sock, "stats")
    check(rc == 0 and "guest RAM" in out and "128.0 MiB" in out, "ufvmctl stats: human output")
    rc, out, err = ctl("--json", sock, "stats")
    check(rc == 0 and json.loads(out)["vm"]["mem_bytes"] == MEM, "ufvmctl --json stats")
    rc, out, _ = ctl(sock, "pause")
    check(rc == 0 and out.strip() == "paused", "ufvmctl pause")
    rc, out, _ = ctl(sock, "stats")
    check("paused" in out, "ufvmctl stats after pause")
    rc, out, _ = ctl(sock, "resume")
    check(rc == 0 and out.strip() == "resumed", "ufvmctl resume")
    rc, out, _ = ctl(sock, "pagemap")
    check(rc == 0 and out.startswith("pages 0..%d" % (MEM // 4096)) and "resident" in out, "ufvmctl pagemap")
    for args in (["swapout"], ["swapin"], ["swapout", "--prefetch"], ["wss"], ["limit", "64M"],
                 ["reclaim", "10"], ["limit", "0"]):
        rc, out, err = ctl(sock, *args)
        check((rc == 0 and out) or (rc == 1 and "not available" in err),
              "ufvmctl %s: done, or 'not available' on stderr with status 1" % " ".join(args))
        if args[0].startswith("swap") and rc == 0:
            check(out.startswith(args[0] + ":") and "pages out" in out, "ufvmctl %s: summary" % args[0])
    rc, out, _ = ctl(sock, "top", "-n", "2")
    lines = out.splitlines()
    check(rc == 0 and len(lines) == 3 and "resident" in lines[0] and "\033" not in out,
          "ufvmctl top -n 2 (not a tty): a header and one plain line per second")
    png = os.path.join(tmp, "heat.png")
    rc, out, err = ctl(sock, "heatmap", png, "1")
    ok = rc == 0 and os.path.exists(png)
    if ok:
        with open(png, "rb") as f:
            head = f.read(24)
        w, h = struct.unpack(">II", head[16:24])
        ok = head[:8] == b"\x89PNG\r\n\x1a\n" and w >= 400 and h >= 300
    check(ok, "ufvmctl heatmap: a PNG picture (%s)" % (out.strip() or err.strip()))
    for args, what in ((["x"], "no command"), ([sock, "explode"], "unknown command"),
                       ([sock, "limit"], "limit without size"), ([sock, "reclaim", "abc"], "bad count"),
                       ([sock, "stop", "300"], "bad status"), ([sock, "heatmap"], "heatmap without file")):
        rc, _, err = ctl(*args)
        check(rc == 2 and err.startswith("ufvmctl: "), "ufvmctl usage error: %s -> status 2" % what)
    rc, _, err = ctl(os.path.join(tmp, "nope.sock"), "stats")
    check(rc == 1 and "cannot connect" in err, "ufvmctl: a missing socket -> status 1, says so")


def test_dirty(tmp):
    """The hot set (8 MiB = 2048 pages) is rewritten every round: each harvest after the
    first reports it, plus a few stack pages, and nothing of the cold set."""
    p = subprocess.run([UFVM, "run", "--dirty-track=sideways", GUEST], capture_output=True, text=True)
    check(p.returncode == 2 and "--dirty-track" in p.stderr, "--dirty-track=sideways: status 2")
    for mode in ("bitmap", "ring"):
        sock = os.path.join(tmp, "dirty-%s.sock" % mode)
        outp = os.path.join(tmp, "dirty-%s.out" % mode)
        vm = subprocess.Popen([UFVM, "run", "--mem", "128M", "--dirty-track=" + mode, "--api", sock,
                               "--cmdline", "hot=8 cold=16 rounds=60000", GUEST],
                              stdout=open(outp, "w"), stderr=subprocess.PIPE)
        try:
            # harvest only once the cold set is written and the rounds run (a loaded
            # machine can take longer than any fixed sleep to get there)
            for _ in range(400):
                if vm.poll() is not None or (os.path.exists(sock) and
                                             "hotcold: round 2:" in open(outp).read()):
                    break
                time.sleep(0.05)
            if not os.path.exists(sock):
                check(False, "dirty %s: ufvm started (%s)" % (mode, vm.stderr.read().decode()[-300:]))
                continue
            c = Client(sock)

            def last_round():
                r = re.findall(r"hotcold: round (\d+):", open(outp).read())
                return int(r[-1]) if r else 0

            c.call({"cmd": "dirty"})
            # two whole rounds inside the window: every hot page written at least once
            r0, t_end = last_round(), time.time() + 20
            while last_round() < r0 + 2 and time.time() < t_end and vm.poll() is None:
                time.sleep(0.05)
            a = c.call({"cmd": "dirty"})
            bits = base64.b64decode(a.get("bitmap", ""))
            n = sum(bin(b).count("1") for b in bits)
            check(a.get("ok") is True and a.get("mode") == mode and n == a.get("dirty_pages"),
                  "dirty %s: bitmap and count agree (%s)" % (mode, a.get("error")))
            check(2048 <= n <= 2048 + 64, "dirty %s: the 2048-page hot set is dirty, the cold set is not (%d)"
                  % (mode, n))
            rc, out, _ = ctl(sock, "dirty")
            check(rc == 0 and out.startswith("dirty: ") and "(%s)" % mode in out, "ufvmctl dirty (%s)" % mode)
            c.call({"cmd": "stop"})
            vm.wait(timeout=20)
            check(vm.returncode == 0, "dirty %s: the VM stops cleanly" % mode)
        finally:
            if vm.poll() is None:
                vm.kill()
                vm.wait()


def main():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        skip("/dev/kvm is missing or not accessible")
    tmp = tempfile.mkdtemp(prefix="ufvm-ctl-")
    sock = os.path.join(tmp, "vm.sock")
    out_path = os.path.join(tmp, "guest.out")

    notsock = os.path.join(tmp, "plain")
    open(notsock, "w").close()
    p = subprocess.run([UFVM, "run", "--api", notsock, GUEST], capture_output=True, text=True, timeout=30)
    check(p.returncode == 1 and notsock in p.stderr and "not a socket" in p.stderr,
          "--api on a regular file: status 1, names the path (%s)" % p.stderr.strip())

    with open(out_path, "wb") as out:
        vm = subprocess.Popen([UFVM, "run", "--mem", "128M", "--api", sock, "--cmdline",
                               "hot=8 cold=16 rounds=60000", GUEST], stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            if os.path.exists(sock) or vm.poll() is not None:
                break
            time.sleep(0.05)
        if not os.path.exists(sock):
            with open(out_path) as f:
                skip("ufvm did not open its socket: " + f.read()[-500:])
        check(stat.S_IMODE(os.stat(sock).st_mode) == 0o600, "the socket is mode 0600")
        time.sleep(0.3)  # let the guest write its sets
        c = Client(sock)
        test_requests(c, out_path)
        test_malformed(c)
        test_oversized(c)
        test_clients(sock)
        test_ufvmctl(sock, tmp)
        check(c.call({"cmd": "stats"}).get("ok") is True, "the first client is still served")
        a = c.call({"cmd": "dirty"})
        check(a.get("ok") is False and "not available" in a.get("error", ""), "dirty without --dirty-track")
        rc, out, _ = ctl(sock, "stop", "7")
        check(rc == 0 and out.strip() == "stopping", "ufvmctl stop 7")
        vm.wait(timeout=20)
        check(vm.returncode == 7, "ufvm exits with the status given to stop (got %s)" % vm.returncode)
        check(not os.path.exists(sock), "the socket file is removed at exit")
    finally:
        if vm.poll() is None:
            vm.kill()
            vm.wait()
    test_dirty(tmp)
    if failures:
        print("%d check(s) failed" % len(failures))
        with open(out_path, "rb") as f:
            sys.stdout.write(f.read()[-2000:].decode(errors="replace"))
        sys.exit(1)
    print("all control checks passed")


if __name__ == "__main__":
    main()
