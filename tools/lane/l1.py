"""l1.py: boot L1 (a Debian kernel with real KVM, under an emulator) and run one command.

Both lanes share this: the kernel comes from Debian's linux-image-amd64 (apt-get download +
dpkg-deb -x into a cache, never installed on the host), L1's init is busybox, the command
runs in the host's working directory (same paths), and what it writes to /lane-out comes
back to the host. What differs is the machine (svm.py, vmx.py): QEMU's TCG (`-cpu EPYC-Rome-v2`: AMD
SVM) shares the host's root over 9p; Bochs (Intel VMX) has no 9p, so L1 gets the files the
command needs in its initramfs and sends /lane-out back over its serial console.
"""
import collections
import contextlib
import json
import os
import resource
import shlex
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BOOT_TIMEOUT = 180      # seconds for L1 to reach its init, generously (emulated, under load)
TEST_TIMEOUT = 300      # seconds for one test inside L1 (times there are 10-50x the host's)

LANES = {'svm': 'kvm-amd', 'vmx': 'kvm-intel'}


@dataclass
class Result:
    status: int      # the command's exit status, or 1 if L1 broke
    error: str       # why L1 broke ('' if it did not)
    info: str        # what L1 was (kernel, emulator, KVM module)
    cpu_seconds: float = 0.0  # the emulator's CPU time: less noisy than wall time


def cache_dir():
    d = os.environ.get('UFVM_LANE_CACHE')
    if d:
        return Path(d)
    if os.geteuid() == 0:
        return Path('/var/cache/ufvm/lane')
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'ufvm' / 'lane'


def machine(lane):
    import svm
    import vmx
    return {'svm': svm, 'vmx': vmx}[lane]


def emulator(lane):
    return machine(lane).EMULATOR


def unavailable(lane):
    """Why this lane cannot run here, or None."""
    if lane not in LANES:
        return 'unknown lane %r (svm or vmx)' % lane
    if os.geteuid() != 0:
        return 'the lanes run as root (L1 shares the host root over 9p)'
    m = machine(lane)
    for prog, pkg in ((m.EMULATOR, m.PACKAGE), ('busybox', 'busybox-static'),
                      ('dpkg-deb', 'dpkg')) + m.NEEDS:
        if not shutil.which(prog):
            return '%s is missing (Debian package %s; tools/setup.sh installs it)' % (prog, pkg)
    if not Path('/bin/busybox').exists() or b'ld-linux' in Path('/bin/busybox').read_bytes()[:4096]:
        return '/bin/busybox is not static (Debian package busybox-static)'
    if not kernel_dir() and not shutil.which('apt-get'):
        return 'no cached L1 kernel and no apt-get to download one'
    return None


# ---- the kernel ------------------------------------------------------------------------

def kernel_dir():
    """The unpacked Debian kernel package in the cache, or None."""
    c = cache_dir()
    for d in sorted(c.glob('linux-image-*-amd64'), reverse=True):
        if list((d / 'boot').glob('vmlinuz-*')) and (d / 'lib' / 'modules').is_dir():
            return d
    return None


def fetch_kernel(verbose=False):
    """apt-get download Debian's current amd64 kernel and unpack it into the cache."""
    c = cache_dir()
    c.mkdir(parents=True, exist_ok=True)
    show = subprocess.run(['apt-cache', 'show', 'linux-image-amd64'], capture_output=True,
                          text=True)
    m = re.search(r'^Depends: *(linux-image-[0-9][^ ,\n]*-amd64)', show.stdout, re.M)
    if not m:
        raise RuntimeError('apt-cache knows no linux-image-amd64 (run apt-get update?)')
    pkg = m.group(1)
    dest = c / pkg
    if (dest / 'boot').is_dir():
        return dest
    if verbose:
        print('lane: downloading %s (Debian kernel for L1) into %s' % (pkg, c), flush=True)
    tmp = c / 'download'
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    os.chmod(tmp, 0o777)  # apt's _apt sandbox user writes here
    r = subprocess.run(['apt-get', 'download', '-q', pkg], cwd=tmp, capture_output=True,
                       text=True)
    debs = list(tmp.glob('*.deb'))
    if r.returncode != 0 or not debs:
        raise RuntimeError('apt-get download %s failed: %s' % (pkg, r.stderr.strip()[-300:]))
    part = c / (pkg + '.part')
    shutil.rmtree(part, ignore_errors=True)
    subprocess.run(['dpkg-deb', '-x', str(debs[0]), str(part)], check=True)
    part.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


def modules_closure(moddir, wanted):
    """wanted modules plus their dependencies (from each .ko's .modinfo), in load order."""
    index = {}
    for ko in moddir.rglob('*.ko'):
        index[ko.name[:-3].replace('-', '_')] = ko
    order, seen = [], set()

    def visit(name):
        key = name.replace('-', '_')
        if key in seen:
            return
        seen.add(key)
        ko = index.get(key)
        if ko is None:
            return  # built in
        m = re.search(rb'depends=([^\0]*)\0', ko.read_bytes())
        for dep in (m.group(1).decode().split(',') if m and m.group(1) else []):
            visit(dep)
        order.append(ko)
    for w in wanted:
        visit(w)
    return order


# ---- L1's initramfs ----------------------------------------------------------------------

# L1's init: the lane's machine sets up the root and /lane-out (ROOT_SETUP), then this runs
# the command (or a shell) with the host's paths, and the machine collects /lane-out (DONE).
INIT = r'''#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/sbin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
# a module's parameters from the command line (kvm_intel.x=y), as modprobe would pass them
for m in $(cat /modules.order); do
	n=$(echo ${m%.ko} | tr - _)
	insmod /lib/modules/$m $(tr ' ' '\n' </proc/cmdline | sed -n "s/^$n\.//p") 2>/dev/null || echo "L1: insmod $m failed"
done
say() { echo "L1: $*"; }
fail() { say "$*"; echo 1 > /out/rc 2>/dev/null; @DONE@; poweroff -f; }
mkdir -p /out /newroot
@ROOT_SETUP@
for d in proc sys dev; do mount --bind /$d /newroot/$d; done
mkdir -p /newroot/dev/pts /newroot/dev/shm /newroot/lane-out /newroot/tmp /newroot/run
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
mount -t tmpfs shm /newroot/dev/shm
# L1's /tmp is its own; a host directory under /tmp the command lives in (a clone in
# /tmp, say) is carried over it
for k in $(cat /out/keep 2>/dev/null); do mkdir -p "/kept$k"; mount --bind "/newroot$k" "/kept$k"; done
mount -t tmpfs tmp /newroot/tmp
for k in $(cat /out/keep 2>/dev/null); do mkdir -p "/newroot$k"; mount --move "/kept$k" "/newroot$k"; done
mount -t tmpfs run /newroot/run
mount --bind /out /newroot/lane-out
# the scratch disk (lane.py exec --scratch): a file system on a disk, not in L1's memory
if [ -b /dev/vda ]; then
	mkdir -p /newroot/scratch
	chroot /newroot mkfs.ext4 -q -F /dev/vda >/dev/null && mount -t ext4 /dev/vda /newroot/scratch || fail "cannot make the scratch disk's file system"
fi
[ -e /dev/kvm ] || fail "no /dev/kvm: $(dmesg | grep -i -E 'kvm|svm|vmx' | tail -3)"
say "ready $(cut -d' ' -f1 /proc/uptime)s, $(uname -r), $(grep -o -m1 -E 'svm|vmx' /proc/cpuinfo) KVM, $(nproc) CPUs, $(awk '/LOC:/ {for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i} END {print n}' /proc/interrupts) timer interrupts"
hostname l1
ip link set lo up || fail "cannot bring up the loopback interface"
if [ -f /out/shell ]; then
	chroot /newroot /bin/sh -c 'cd "$(cat /lane-out/cwd)"; exec setsid -c /bin/sh -i' </dev/console >/dev/console 2>&1
	echo 0 > /out/rc
else
	chroot /newroot /bin/sh /lane-out/cmd.sh </dev/null
	echo $? > /out/rc
fi
sync
@DONE@
poweroff -f
'''

CMD = '''export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp LANG=C.UTF-8
cd %s || exit 1
exec %s
'''


def newc(entries):
    """A cpio 'newc' archive of (name, mode, data) entries."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries + [('TRAILER!!!', 0, b'')], 1):
        nm = name.encode() + b'\0'
        hdr = '070701' + ''.join('%08x' % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nm), 0))
        out += hdr.encode() + nm
        out += b'\0' * (-len(out) % 4) + data
        out += b'\0' * (-len(out) % 4)
    return bytes(out)


def kernel(lane, verbose=False):
    """(vmlinuz, the modules L1 loads for this lane, in load order)"""
    kdir = kernel_dir() or fetch_kernel(verbose)
    vmlinuz = sorted((kdir / 'boot').glob('vmlinuz-*'))[-1]
    moddir = next((kdir / 'lib' / 'modules').iterdir())
    return vmlinuz, modules_closure(moddir, machine(lane).MODULES + [LANES[lane]])


def base_entries(lane, mods):
    """busybox, init and modules: what every L1 initramfs starts with"""
    m = machine(lane)
    init = INIT.replace('@ROOT_SETUP@', m.ROOT_SETUP).replace('@DONE@', m.DONE)
    entries = [(d, stat.S_IFDIR | 0o755, b'') for d in
               ('bin', 'dev', 'proc', 'sys', 'tmp', 'lib', 'lib/modules')]
    entries += [('bin/busybox', stat.S_IFREG | 0o755, Path('/bin/busybox').read_bytes()),
                ('init', stat.S_IFREG | 0o755, init.encode()),
                ('modules.order', stat.S_IFREG | 0o644,
                 ''.join(k.name + '\n' for k in mods).encode())]
    entries += [('lib/modules/' + k.name, stat.S_IFREG | 0o644, k.read_bytes()) for k in mods]
    return entries


def command_script(argv, cwd):
    return CMD % (shlex.quote(cwd), ' '.join(map(shlex.quote, argv)))


def kept_dirs(cwd):
    """The host directories under /tmp that L1 must see through its own /tmp: those of
    the command's working directory and of this source tree (tests, tools)."""
    keep = set()
    for p in (Path(cwd).resolve(), Path(__file__).resolve().parents[2]):
        if len(p.parts) > 2 and p.parts[1] == 'tmp':
            keep.add('/tmp/' + p.parts[2])
    return sorted(keep)


def execute(lane, argv, cwd, out, timeout, console=None, quiet=False, stage=(), scratch=0):
    """Boot L1, run argv in cwd (the host's path), power off; out gets L1's /lane-out.
    stage: host paths the command needs, for machines without the host's root (vmx).
    scratch: MiB of an empty disk, a sparse file in the host's TMPDIR removed afterwards,
    that L1 formats (ext4) and mounts at /scratch (svm only)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'cmd.sh').write_text(command_script(argv, cwd))
    (out / 'keep').write_text(''.join(k + '\n' for k in kept_dirs(cwd)))
    rc_file = out / 'rc'
    if rc_file.exists():
        rc_file.unlink()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        with tempfile.TemporaryDirectory(prefix='ufvm-lane-disk-') as disk:
            img = None
            if scratch:
                img = os.path.join(disk, 'scratch.img')
                with open(img, 'wb') as f:
                    f.truncate(scratch << 20)
            info, error = machine(lane).boot(out, timeout + BOOT_TIMEOUT, console, quiet,
                                             list(stage), cwd, scratch=img)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        return Result(1, 'cannot start L1: %s' % e, '')
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    if error:
        return Result(1, error, info, cpu)
    if not rc_file.exists():
        return Result(1, 'L1 stopped without a result', info, cpu)
    try:
        return Result(int(rc_file.read_text().strip() or 1), '', info, cpu)
    except ValueError:
        return Result(1, 'L1 wrote a bad result', info, cpu)


class CpuMarks:
    """The emulator's CPU seconds when L1 reaches its init and as each lane test ends (the
    runner's `lane: NAME rc=` lines on the console): each test's cost on the host, which
    L1's own clock (emulated time) cannot tell. Written to OUT/emulator_cpu.json."""

    LINE = re.compile(r'^(?:L1: (ready)|lane: (\S+) rc=-?\d+)', re.M)

    def __init__(self, pid, out):
        self.pid, self.path, self.tail, self.marks = pid, Path(out) / 'emulator_cpu.json', '', []

    def cpu(self):
        try:
            f = Path('/proc/%d/stat' % self.pid).read_text().rsplit(')', 1)[1].split()
        except OSError:
            return None
        return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')  # utime + stime

    def feed(self, text):
        text = self.tail + text
        cut = text.rfind('\n') + 1
        self.tail = text[cut:]
        found = [m.group(1) or m.group(2) for m in self.LINE.finditer(text[:cut])]
        if not found:
            return
        c = self.cpu()
        if c is None:
            return
        self.marks += [(n, c) for n in found]
        prev, per = 0.0, {}
        for n, c in self.marks:
            per['boot' if n == 'ready' else n] = round(c - prev, 2)
            prev = c
        self.path.write_text(json.dumps(per))


class Watchdog:
    """Tells a wedged L1 from a slow one by the runner's heartbeat (runner.py rewrites
    OUT/beat every 5 s). Wedged, after STALL s without a beat, by what the emulator did in
    the last STALL s (a trailing window: what it did just after the last beat, before it
    stopped, must not hide that it stopped):
    - spinning: it burnt CPU_BURNT s of CPU (it runs, but L1 does not schedule a process
      that only sleeps and writes);
    - asleep: its threads ran or waited for a CPU less than ASLEEP of the window (nothing
      in it is runnable: L1 waits for an event that never comes). Starved at nice 19
      beside the host's tests, the vCPU thread waits on the run queue instead, and that
      counts (per-thread schedstat; CPU from /proc/PID/stat, which keeps what
      threads that ended used);
    or after QUIET s without a beat, whatever the emulator did.
    Silent until the first beat: a command that is not the runner (lane.py exec) has none.
    Before it answers, it writes what the emulator was doing (its threads, and L1's
    registers from the monitor, if given and it answers) to the console. OUT/watch.json
    keeps the longest gap between two beats it saw (a healthy L1's, for choosing STALL)."""

    STALL, CPU_BURNT, ASLEEP, QUIET = 60, 30, 0.2, 600

    def __init__(self, pid, out, monitor=None, console=None):
        self.pid, self.monitor, self.console = pid, monitor, console
        self.marks = CpuMarks(pid, out)
        self.beat = Path(out) / 'beat'
        self.watch = Path(out) / 'watch.json'
        self.last = None  # the beat file's mtime when it last changed, and when that was seen
        self.gap = 0.0  # the longest wait between two beats seen so far
        self.samples = collections.deque()  # (time, CPU, run-queue wait), one a second
        self.t0 = time.time()  # a beat older than this L1 is none of its own

    def tasks(self):
        try:
            return sorted(os.listdir('/proc/%d/task' % self.pid))
        except OSError:
            return []

    def waited(self):
        """Seconds the emulator's threads have waited on a run queue, summed."""
        ns = 0
        for t in self.tasks():
            try:
                ns += int(Path('/proc/%d/task/%s/schedstat' % (self.pid, t)).read_text().split()[1])
            except OSError:
                pass  # a thread that ended
        return ns / 1e9

    def __call__(self):
        """'' while L1 makes progress, else why it is deemed wedged."""
        now = time.time()
        if not self.samples or now - self.samples[-1][0] >= 1:
            self.samples.append((now, self.marks.cpu() or 0.0, self.waited()))
            while now - self.samples[0][0] > self.QUIET + 5:
                self.samples.popleft()
        try:
            mtime = self.beat.stat().st_mtime
        except OSError:
            return ''
        if mtime < self.t0 - 1:
            return ''
        if self.last is None or mtime != self.last[0]:
            if self.last is not None and now - self.last[1] > self.gap:
                self.gap = now - self.last[1]
                with contextlib.suppress(OSError):
                    self.watch.write_text(json.dumps({'longest_beat_gap': round(self.gap, 1)}))
            self.last = (mtime, now)
            return ''
        age = now - mtime
        if age <= self.STALL:
            return ''
        # the window: the last STALL s (all of them without a beat)
        then = next((s for s in reversed(self.samples) if s[0] <= now - self.STALL),
                    self.samples[0])
        span = now - then[0]
        burnt = (self.marks.cpu() or 0.0) - then[1]
        waited = self.waited() - then[2]
        if burnt > self.CPU_BURNT * span / self.STALL:
            how = 'spinning'
        elif burnt + waited < self.ASLEEP * span:
            how = 'asleep'
        elif age > self.QUIET:
            how = 'quiet'
        else:
            return ''
        why = ('L1 wedged (%s): no heartbeat from its test runner for %.0f s; in the last '
               '%.0f s the emulator used %.0f s of CPU and waited %.0f s for one' % (
                   how, age, span, burnt, waited))
        self.report(why)
        return why

    def report(self, why):
        if not self.console:
            return
        lines = ['', 'lane: %s; what the emulator was doing:' % why]
        for t in self.tasks():
            try:
                d = Path('/proc/%d/task/%s' % (self.pid, t))
                name = (d / 'comm').read_text().strip()
                state = (d / 'stat').read_text().rsplit(')', 1)[1].split()[0]
                wchan = (d / 'wchan').read_text().strip()
                lines.append('lane:   thread %s %-16s %s %s' % (t, name, state, wchan))
            except OSError:
                pass
        if self.monitor:
            for cmd in ('info registers', 'info lapic', 'info pic'):
                lines.append('lane: (qemu) %s' % cmd)
                lines += ['lane:   ' + x for x in monitor(self.monitor, cmd).splitlines()]
        with open(self.console, 'a') as f:
            f.write('\n'.join(lines) + '\n')


def monitor(path, cmd, timeout=5):
    """One command's answer from QEMU's human monitor on the Unix socket PATH, or why none
    came (a main loop that does not answer in time holds its lock: an emulator deadlock)."""
    out = b''

    def prompt(s):  # what comes up to the next prompt
        got = b''
        while not got.endswith(b'(qemu) '):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got

    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            out = prompt(s)  # the greeting
            s.sendall(cmd.encode() + b'\n')
            out = prompt(s)
    except OSError as e:
        return 'no answer from the monitor (%s); so far: %r' % (e, out[-200:])
    text = out.decode(errors='replace').replace('\r', '')
    return text.rsplit('(qemu) ', 1)[0].split('\n', 1)[-1]  # without the echo and prompt


def pump(p, deadline, console, quiet, done=None, marks=None, stalled=None):
    """Copy the emulator's console output until it exits (or done() says so); False if the
    deadline passed first, or stalled()'s reason if it gave one (the emulator is killed)."""
    con = open(console, 'a') if console else None
    os.set_blocking(p.stdout.fileno(), False)
    try:
        while True:
            chunk = p.stdout.read()
            if chunk:
                text = chunk.decode(errors='replace')
                if marks:
                    marks.feed(text)
                if con:
                    con.write(text)
                    con.flush()
                if not quiet:
                    sys.stdout.write(text)
                    sys.stdout.flush()
            if p.poll() is not None and not chunk:
                return True
            if done and done():
                p.kill()
                p.wait()
                return True
            if time.monotonic() > deadline:
                p.kill()
                p.wait()
                return False
            why = stalled() if stalled else ''
            if why:
                p.kill()
                p.wait()
                if con:
                    con.write('\nlane: %s; the emulator was killed\n' % why)
                return why
            time.sleep(0.05)
    finally:
        if con:
            con.close()


def shell(lane):
    d = Path(os.environ.get('TMPDIR', '/tmp')) / ('ufvm-lane-shell-%d' % os.getpid())
    d.mkdir(parents=True, exist_ok=True)
    try:
        (d / 'shell').write_text('')
        (d / 'cwd').write_text(os.getcwd())
        print('lane: L1 shell (exit, or Ctrl-A x for QEMU, to leave)', flush=True)
        return machine(lane).interactive(d, [], os.getcwd())
    finally:
        shutil.rmtree(d, ignore_errors=True)
