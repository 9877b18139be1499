"""vmx.py: L1 under Bochs (`cpu: model=corei7_skylake_x`), which emulates Intel VMX with EPT.

Bochs has no 9p and cannot load a kernel. So: the kernel's uncompressed image (from the
vmlinuz's xz payload), an hvm_start_info, and an initramfs holding busybox, the modules, the
host's Python and every file the command needs (at the host's paths) go on a raw ATA disk;
an option ROM (bochs_rom.S) copies them to RAM during the BIOS's POST and enters the kernel's
PVH entry, with no boot loader and no decompression (~40 s saved under the emulator). /out
lives in L1's RAM; at the end L1 prints it, tarred and base64'd, on its serial console.
Bochs's display is `term`, so it runs under a pseudo-terminal nobody looks at.
"""
import base64
import io
import json
import lzma
import os
import pty
import re
import shutil
import stat
import struct
import subprocess
import tarfile
import time
from pathlib import Path

import l1

EMULATOR = 'bochs-bin'
PACKAGE = 'bochs'
NEEDS = (('as', 'binutils'), ('ld', 'binutils'), ('ldd', 'libc-bin'))
MODULES = ['loop', 'fuse']
SLOWDOWN = 20    # tests scale their waits by it (UFVM_TEST_SLOWDOWN)
# no fresh L1 for tests left after the lane has run this long (lane.py): it starts
# when the host's first pass ends, some 6 minutes into make test
REPLACE_UNTIL = 1000
MEM_MIB = 2048   # Bochs allocates it all; below 3 GiB, clear of the PCI hole
CPUS = int(os.environ.get('UFVM_LANE_CPUS', '2'))  # L1's CPUs (README: "One L1 CPU")
IPS = 200000000  # Bochs's virtual time: instructions per emulated second

ROOT_SETUP = r'''mount --bind / /newroot'''
# the serial line sends at its baud rate: wait until the last byte left before powering off
DONE = r'''(echo; echo @@lane-out-begin; tar -C /out -cf - . | gzip -1 | base64; echo @@lane-out-end) >/dev/console
/usr/bin/python3 -c 'import termios; termios.tcdrain(1)' >/dev/console 2>/dev/null || sleep 5'''

ROM_BASE = 0xd0000
LOAD_TABLE = 0x180
BOOT_INFO = 0x5000000   # hvm_start_info, modules, memory map, command line: one page
INITRD = 0x6000000
KERNEL_END_MAX = BOOT_INFO
HERE = Path(__file__).resolve().parent

# what of the host's Python L1 does not need
PY_SKIP = {'test', 'idlelib', 'tkinter', 'turtledemo', 'ensurepip', 'lib2to3', 'pydoc_data',
           'config-3.11-x86_64-linux-gnu', 'site-packages', 'dist-packages'}


# ---- the kernel, uncompressed ---------------------------------------------------------------

def vmlinux(vmlinuz):
    """(flat image, its load address, PVH entry): cached next to the kernel package."""
    cache = l1.cache_dir() / (vmlinuz.name + '.pvh')
    meta = cache.with_suffix('.json')
    if cache.exists() and meta.exists():
        m = json.loads(meta.read_text())
        return cache, m['base'], m['entry']
    b = vmlinuz.read_bytes()
    setup_sects = b[0x1f1] or 4
    off = (setup_sects + 1) * 512
    poff, plen = struct.unpack_from('<II', b, 0x248)
    payload = b[off + poff:off + poff + plen]
    if not payload.startswith(b'\xfd7zXZ'):
        raise RuntimeError('%s: payload is not xz (Debian kernels are)' % vmlinuz)
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    phoff, = struct.unpack_from('<Q', elf, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', elf, 0x36)
    loads, entry = [], None
    for i in range(phnum):
        typ, _, offset, _, paddr, filesz, memsz, _ = struct.unpack_from(
            '<IIQQQQQQ', elf, phoff + i * phentsize)
        if typ == 1:
            loads.append((paddr, offset, filesz, memsz))
        elif typ == 4:
            o = offset
            while o < offset + filesz:
                namesz, descsz, ntype = struct.unpack_from('<III', elf, o)
                desc = o + 12 + ((namesz + 3) & ~3)
                if elf[o + 12:o + 12 + namesz].rstrip(b'\0') == b'Xen' and ntype == 18:
                    entry, = struct.unpack_from('<I', elf, desc)  # XEN_ELFNOTE_PHYS32_ENTRY
                o = desc + ((descsz + 3) & ~3)
    if entry is None:
        raise RuntimeError('%s has no PVH entry (CONFIG_PVH)' % vmlinuz)
    base = min(p for p, _, _, _ in loads)
    end = max(p + m for p, _, _, m in loads)
    if end > KERNEL_END_MAX:
        raise RuntimeError('%s: the kernel ends at %#x, past %#x' % (vmlinuz, end, KERNEL_END_MAX))
    img = bytearray(end - base)
    for p, o, f, _ in loads:
        img[p - base:p - base + f] = elf[o:o + f]
    tmp = cache.with_suffix('.tmp')
    tmp.write_bytes(img)
    tmp.rename(cache)
    meta.write_text(json.dumps({'base': base, 'entry': entry}))
    return cache, base, entry


# ---- the files L1 needs ----------------------------------------------------------------------

class Stage:
    """An initramfs's entries, added by host path: each file at its own path."""

    def __init__(self):
        self.entries, self.seen = [], set()

    def dirs(self, path):
        parts = Path(path).parts[1:-1]
        for i in range(len(parts)):
            d = '/'.join(parts[:i + 1])
            if d not in self.seen:
                self.seen.add(d)
                self.entries.append((d, stat.S_IFDIR | 0o755, b''))

    def add(self, path, skip=()):
        p = Path(path)
        rel = str(p)[1:]
        if rel in self.seen or not os.path.lexists(p):
            return
        self.dirs(p)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            self.seen.add(rel)
            self.entries.append((rel, stat.S_IFLNK | 0o777, os.readlink(p).encode()))
            # the target as the link names it, not resolved: /lib64/../lib/x must exist as
            # such in L1, whose /lib is a directory, not the host's link to usr/lib
            self.add(os.path.normpath(p.parent / os.readlink(p)), skip)
        elif stat.S_ISDIR(st.st_mode):
            self.seen.add(rel)
            self.entries.append((rel, stat.S_IFDIR | (st.st_mode & 0o7777), b''))
            for c in sorted(os.listdir(p)):
                if c not in skip:
                    self.add(p / c, skip)
        elif stat.S_ISREG(st.st_mode):
            self.seen.add(rel)
            self.entries.append((rel, stat.S_IFREG | (st.st_mode & 0o7777), p.read_bytes()))
            if st.st_mode & 0o111 or p.suffix == '.so' or '.so.' in p.name:
                self.libs(p)

    def libs(self, p):
        """the shared libraries an ELF file needs"""
        with open(p, 'rb') as f:
            if f.read(4) != b'\x7fELF':
                return
        r = subprocess.run(['ldd', str(p)], capture_output=True, text=True)
        for m in re.finditer(r'(?:=> )?(/\S+) \(0x', r.stdout):
            self.add(m.group(1))

    def python(self):
        self.add('/usr/bin/python3')
        self.add('/usr/lib/python3.11', skip=PY_SKIP)


def initrd(stage_paths, cwd, out, verbose):
    vmlinuz, mods = l1.kernel('vmx', verbose)
    s = Stage()
    s.entries = l1.base_entries('vmx', mods)
    s.seen = {e[0] for e in s.entries}
    s.python()
    for p in stage_paths:
        s.add(Path(p).resolve() if not os.path.isabs(p) else p, skip={'.git', 'meson-private'})
    s.dirs(os.path.join(cwd, 'x'))  # the command's working directory, not its contents
    s.dirs('/out/x')
    for f in sorted(Path(out).iterdir()):  # cmd.sh, the plan: L1's /out at start
        if f.is_file():
            s.entries.append(('out/' + f.name, stat.S_IFREG | 0o644, f.read_bytes()))
    return vmlinuz, l1.newc(s.entries)


# ---- the disk, the ROM, Bochs ---------------------------------------------------------------

def boot_info(initrd_size, cmdline):
    mem = MEM_MIB << 20
    memmap = [(0, 0x9f000, 1), (0x9f000, 0x100000 - 0x9f000, 2),
              (0x100000, BOOT_INFO - 0x100000, 1), (BOOT_INFO, 0x1000, 2),
              (BOOT_INFO + 0x1000, mem - 0x100000 - (BOOT_INFO + 0x1000), 1),
              (mem - 0x100000, 0x100000, 2)]  # the BIOS's ACPI tables: the top of RAM
    blk = bytearray(4096)
    # struct hvm_start_info (version 1), one module (the initrd), the memory map, cmdline
    struct.pack_into('<IIIIQQQQII', blk, 0, 0x336ec578, 1, 0, 1, BOOT_INFO + 64,
                     BOOT_INFO + 1024, 0, BOOT_INFO + 128, len(memmap), 0)
    struct.pack_into('<QQQQ', blk, 64, INITRD, initrd_size, 0, 0)
    for i, (a, n, t) in enumerate(memmap):
        struct.pack_into('<QQII', blk, 128 + 24 * i, a, n, t, 0)
    c = cmdline.encode() + b'\0'
    blk[1024:1024 + len(c)] = c
    return bytes(blk)


def rom(table, entry, work):
    obj, binf = work / 'rom.o', work / 'rom.bin'
    subprocess.run(['as', '--32', str(HERE / 'bochs_rom.S'), '-o', str(obj)], check=True)
    subprocess.run(['ld', '-m', 'elf_i386', '-Ttext=0', '--oformat=binary', '-o', str(binf),
                    str(obj)], check=True)
    r = bytearray(binf.read_bytes())
    for i, (lba, n, dest) in enumerate(table):
        struct.pack_into('<III', r, LOAD_TABLE + 12 * i, lba, n, dest)
    struct.pack_into('<II', r, LOAD_TABLE + 96, BOOT_INFO, entry)
    r[-1] = 0
    r[-1] = -sum(r) & 0xff
    binf.write_bytes(r)
    return binf


def machine_files(work, stage, cwd, out, verbose, cmdline):
    vmlinuz, rd = initrd(stage, cwd, out, verbose)
    kimg, base, entry = vmlinux(vmlinuz)
    if INITRD + len(rd) > (MEM_MIB - 1) << 20:
        raise RuntimeError('the initramfs (%d MiB) does not fit in L1' % (len(rd) >> 20))
    unit = 16 * 63 * 512  # one cylinder of the disk's geometry
    disk = work / 'disk.img'
    table = []
    with open(disk, 'wb') as f:
        for data, dest in ((kimg.read_bytes(), base),
                           (boot_info(len(rd), cmdline), BOOT_INFO), (rd, INITRD)):
            table.append((f.tell() // 512, (len(data) + 511) // 512, dest))
            f.write(data + b'\0' * (-len(data) % 512))
        f.write(b'\0' * (-f.tell() % unit))
        cyls = f.tell() // unit
    romf = rom(table, entry, work)
    rc = work / 'bochsrc'
    rc.write_text('\n'.join([
        'memory: guest=%d, host=%d' % (MEM_MIB, MEM_MIB),
        'romimage: file=/usr/share/bochs/BIOS-bochs-latest',
        'vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest',
        'cpu: model=corei7_skylake_x, count=%d, ips=%d, reset_on_triple_fault=0' % (CPUS, IPS),
        'optromimage1: file=%s, address=%#x' % (romf, ROM_BASE),
        'ata0-master: type=disk, path=%s, mode=flat, cylinders=%d, heads=16, spt=63' % (disk, cyls),
        'boot: disk',
        'com1: enabled=1, mode=file, dev=%s' % (work / 'serial.txt'),
        'display_library: term',
        'log: %s' % (work / 'bochs.log'),
        'panic: action=fatal', 'error: action=ignore', 'info: action=ignore',
        'debug: action=ignore', 'clock: sync=none, time0=local',
        'pci: enabled=1, chipset=i440fx', 'port_e9_hack: enabled=1', '']))
    (work / 'continue').write_text('c\n')  # bochs-bin starts in its debugger
    return vmlinuz, rc


def info():
    return '%s under Bochs corei7_skylake_x x%d (Intel VMX, kvm-intel)' % (
        l1.kernel('vmx')[0].name, CPUS)


def run_bochs(work, rc, deadline, console, quiet, done):
    """bochs-bin on a pseudo-terminal (its `term` display); the serial file is the console."""
    master, slave = pty.openpty()
    p = subprocess.Popen(['bochs-bin', '-q', '-f', str(rc), '-rc', str(work / 'continue')],
                         stdin=slave, stdout=slave, stderr=slave, cwd=work,
                         start_new_session=True)
    os.close(slave)
    os.set_blocking(master, False)
    serial = work / 'serial.txt'
    shown = 0
    marks = l1.CpuMarks(p.pid, work.parent)
    # Bochs's stdout: what L1 writes to port 0xe9 (port_e9_hack), a console that needs no
    # interrupt, for when the serial line stalls
    stdout = open(work / 'e9.txt', 'wb', buffering=0)
    con = open(console, 'a') if console else None
    ok = True
    ttys = [master]
    try:
        while p.poll() is None:
            if len(ttys) == 1:
                ttys += own_ptys(p.pid)
            for fd in ttys:  # the display, and a pty of its own: drained, unread
                try:
                    while True:
                        b = os.read(fd, 65536)
                        if not b:
                            break
                        if fd == master:
                            stdout.write(b)
                except (BlockingIOError, OSError):
                    pass
            if serial.exists():
                with open(serial, 'rb') as f:
                    f.seek(shown)
                    chunk = f.read()
                shown += len(chunk)
                if chunk:
                    text = chunk.decode(errors='replace')
                    marks.feed(text)
                    if con:
                        con.write(text)
                        con.flush()
                    if not quiet:
                        os.write(1, chunk)
                    if done(serial):
                        break
            if time.monotonic() > deadline:
                ok = False
                break
            time.sleep(0.1)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        for fd in ttys:
            os.close(fd)
        stdout.close()
        if con:
            con.close()
    return ok


def own_ptys(pid):
    """The slave sides of the pseudo-terminals Bochs opened itself: its term display opens
    one and writes to it; unread, it fills and Bochs stops in write()."""
    fds = []
    try:
        for fd in os.listdir('/proc/%d/fd' % pid):
            if os.readlink('/proc/%d/fd/%s' % (pid, fd)) != '/dev/ptmx':
                continue
            info = Path('/proc/%d/fdinfo/%s' % (pid, fd)).read_text()
            m = re.search(r'tty-index:\s*(\d+)', info)
            if m:
                fds.append(os.open('/dev/pts/' + m.group(1),
                                   os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY))
    except OSError:
        pass
    return fds


def collect(serial, out):
    """L1's /out, from between the markers on its console; False if it is not whole."""
    text = serial.read_bytes().decode(errors='replace')
    m = re.search(r'@@lane-out-begin\r?\n(.*?)@@lane-out-end', text, re.S)
    if not m:
        return False
    try:
        data = base64.b64decode(''.join(m.group(1).split()))
        with tarfile.open(fileobj=io.BytesIO(data), mode='r:gz') as t:
            t.extractall(out)
    except (ValueError, tarfile.TarError, EOFError, OSError):
        return False
    return True


def boot(out, timeout, console, quiet, stage, cwd, scratch=None):
    if scratch:
        raise RuntimeError('a scratch disk (--scratch) is the svm lane\'s only')
    work = Path(out) / 'vmx'
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    deadline = time.monotonic() + timeout
    # tsc_early_khz: Bochs's TSC and local APIC timer both count one per emulated tick (IPS a
    # second), but its corei7_skylake_x CPUID leaves 0x15/0x16 say a 3.5 GHz TSC fed by a
    # 24 MHz crystal. Believed, L1's clock runs 17.5 times slower than emulated time and its
    # APIC timer fires ~146 times too early (about 15,000 timer interrupts a second, each
    # re-armed). Told the TSC's real rate, Linux calibrates the APIC timer itself.
    machine_files(work, stage, cwd, out, not quiet,
                  ' '.join(['console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off',
                            'tsc_early_khz=%d' % (IPS // 1000)] +
                           os.environ.get('UFVM_LANE_APPEND', '').split()))

    def done(serial):
        with open(serial, 'rb') as f:
            f.seek(max(0, serial.stat().st_size - 200))
            return b'@@lane-out-end' in f.read()
    ok = run_bochs(work, work / 'bochsrc', deadline, console, quiet, done)
    if not collect(work / 'serial.txt', out):
        err = 'L1 timed out after %d s' % timeout if not ok else \
            'L1 stopped without sending its results (see %s)' % (work / 'bochs.log')
        return info(), err
    shutil.rmtree(work, ignore_errors=True)  # a 100 MiB disk image
    return info(), ''


def interactive(d, stage, cwd):
    print('lane vmx: no interactive shell under Bochs (its display owns the terminal); '
          'give a command, or use the svm lane for a shell')
    return 2
