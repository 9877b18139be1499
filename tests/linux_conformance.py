#!/usr/bin/env python3
"""linux_conformance.py: the Linux boot path, proven with the conformance guest and bad kernels.

    linux_conformance.py --list                              names of all cases
    linux_conformance.py --ufvm UFVM --guests DIR [CASE...]  run them (all if none given)

DIR holds conformance.bzImage, conformance.elf and conformance-pvh.elf (guests/conformance/).
The guest enters like Linux, checks boot_params, e820, command line, initrd bytes, MP table,
ACPI tables, CPUID and irqchip, then drives every virtio-mmio device, malformed descriptors included, and
reports over the serial port; it ends through the i8042 reset line (status 0) when every
check passed, or through the ACPI sleep control or reset register (conf.exit=). Exit status: 0 passed, 1 failed, 77 skipped (no usable /dev/kvm).
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

TIMEOUT = 90 * float(os.environ.get('UFVM_TEST_SLOWDOWN', '1'))  # slower machines: more
SENTINEL = '0123456789abcdefghijklmnopqrstuvwxyz-_.:,/+'
INITRD_LEN = 20001
DISK_SECTORS = 64
DISK_TAIL = 100  # a partial sector after the capacity: no request may reach it
SERIAL_IN = 1000  # bytes piped into stdin, well over the UART's 256-byte receive FIFO
BROKEN = r'ufvm: %s: device broken: '


class Skip(Exception):
    """The case needs something this host lacks."""


def initrd_bytes(n):
    return bytes((i * 131 + (i >> 9) + 7) & 0xff for i in range(n))


def disk_bytes(sectors, tail=0):
    return bytes(((o >> 9) * 17 + o) & 0xff for o in range(sectors * 512 + tail))


def serial_bytes(n):
    """What guests/conformance/boot.c expects on the UART with conf.serial_in=n."""
    return bytes((i * 7 + (i >> 8) + 1) & 0xff for i in range(n))


def loop_disk(tmp):
    """A loop block device over a copy of the disk: its capacity comes from BLKGETSIZE64,
    its st_size is 0. ({'loop': device}, cleanup), or Skip."""
    if os.geteuid() != 0 or not shutil.which('losetup'):
        raise Skip('a loop device needs root and losetup')
    backing = os.path.join(tmp, 'disk-loop')
    shutil.copyfile(os.path.join(tmp, 'disk'), backing)
    p = subprocess.run(['losetup', '--find', '--show', backing], capture_output=True, text=True)
    if p.returncode != 0:
        raise Skip('losetup: ' + p.stderr.strip())
    dev = p.stdout.strip()
    return {'loop': dev}, lambda: subprocess.run(['losetup', '--detach', dev])


def symlink_loop(tmp):
    a, b = os.path.join(tmp, 'loop-a'), os.path.join(tmp, 'loop-b')
    for src, dst in ((b, a), (a, b)):
        if not os.path.lexists(dst):
            os.symlink(src, dst)
    return {}, None


def immutable_disk(tmp):
    """A file open(O_RDWR) refuses with EPERM even to root (chattr +i)."""
    path = os.path.join(tmp, 'disk-immutable')
    shutil.copyfile(os.path.join(tmp, 'disk'), path)
    if not shutil.which('chattr') or subprocess.run(['chattr', '+i', path],
                                                    capture_output=True).returncode:
        raise Skip('chattr +i is not possible here (needs root and a file system with it)')
    return {}, lambda: subprocess.run(['chattr', '-i', path])


def guest_run(kind, cpus=1, initrd=True, disk='rw', balloon=True, mem=64, serial_in=0,
              disk_path='{tmp}/disk', exit_how=None):
    """A conformance run: (ufvm arguments, expected serial output checks)."""
    kernel = {'bzimage': 'conformance.bzImage', 'vmlinux': 'conformance.elf',
              'pvh': 'conformance-pvh.elf'}[kind]
    vdevs = (disk is not None) + balloon
    append = ['conf.mem=%d' % mem, 'conf.cpus=%d' % cpus, 'conf.vdevs=%d' % vdevs,
              'conf.initrd=%d' % (INITRD_LEN if initrd else 0), 'conf.sentinel=' + SENTINEL]
    args = ['run', '--mem', '%dM' % mem, '--cpus', str(cpus), '--kernel', '{dir}/' + kernel]
    if kind == 'bzimage':
        append.append('conf.bzimage=1')
    if serial_in:
        append.append('conf.serial_in=%d' % serial_in)
    if exit_how:
        append.append('conf.exit=' + exit_how)
    if initrd:
        args += ['--initrd', '{tmp}/initrd']
    if disk:
        args += ['--disk', disk_path + (',ro' if disk == 'ro' else '')]
        append += ['conf.disk_sectors=%d' % DISK_SECTORS, 'conf.disk_ro=%d' % (disk == 'ro')]
    # the pager's books at exit: what the balloon gave away must be NEW there
    args.append('--stats=json' if balloon else '--no-balloon')
    return args + ['--append', ' '.join(append)]


# Pages the conformance guest gives away with the pager on: 4 inflated and 512 reported
# (both read back as zeros), then 4 inflated and 16 reported between live pages, never
# touched again (guests/conformance/virtio.c). All were written first, so all were
# resident: each one must have moved to NEW.
BALLOON_DISCARDED = 4 + 512 + 4 + 16


def pager_books_ok(err):
    """--stats=json at exit: the balloon's pages discarded, and the pager's resident count
    equal to what the memfd really holds (no page dropped behind its back)."""
    m = re.search(r'^\{"pager": .*\}$', err, re.M)
    if not m:
        return 'no --stats=json line on stderr'
    st = json.loads(m.group(0))['pager']
    if st['discarded_pages'] != BALLOON_DISCARDED:
        return 'pager: %d pages discarded, want %d' % (st['discarded_pages'], BALLOON_DISCARDED)
    if st['memfd_bytes'] != st['resident_pages'] * 4096:
        return 'pager: %d resident pages but the memfd holds %d bytes' % (
            st['resident_pages'], st['memfd_bytes'])
    return None


def conformance_ok(out, err, disk, balloon, pvh=False):
    """The guest's verdict, and each broken device reported exactly once."""
    m = re.search(r'conformance: (\d+) checks, (\d+) failed', out)
    if not m:
        return 'no conformance summary on the serial console'
    if m.group(2) != '0' or 'not ok' in out:
        return 'failed checks:\n' + '\n'.join(l for l in out.splitlines() if 'not ok' in l)
    entry = 'PVH 32-bit entry' if pvh else '64-bit boot protocol entry'
    if 'entered through the ' + entry not in out:
        return 'the guest did not enter through the ' + entry
    for dev, present in (('virtio-blk', disk), ('virtio-balloon', balloon)):
        n = len(re.findall(BROKEN % dev, err))
        if n != (1 if present else 0):
            return '%s: %d "device broken" reports on stderr, want %d' % (dev, n, present)
    if balloon:
        why = pager_books_ok(err)
        if why:
            return why
    if os.path.exists('/sys/module/kvm_pvm') and err.count('warning: this host\'s KVM is PVM') != 1:
        return 'no single PVM warning on a PVM host'
    return None


def bz_patch(offset, fmt, value):
    def make(data):
        d = bytearray(data)
        struct.pack_into(fmt, d, offset, value)
        return bytes(d)
    return make


# name: (args, expected status, regex on stderr or check function[, options]); options:
# 'stdin' (bytes piped into ufvm), 'prepare' (tmp -> ({placeholder: value}, cleanup), or Skip)
def cases():
    c = {}
    for kind, cpus, initrd, disk, balloon in (('bzimage', 2, True, 'rw', True),
                                              ('vmlinux', 1, False, 'ro', True),
                                              ('pvh', 1, True, 'rw', True),
                                              ('bzimage', 4, True, None, False)):
        name = 'boot_%s_%dcpu%s%s%s' % (kind, cpus, '' if initrd else '_noinitrd',
                                        '_' + disk if disk else '_nodisk',
                                        '' if balloon else '_noballoon')
        c[name] = (guest_run(kind, cpus, initrd, disk, balloon), 0,
                   (lambda d, b, p: lambda o, e: conformance_ok(o, e, d, b, p))(
                       disk is not None, balloon, kind == 'pvh'))
    c['boot_bzimage_1cpu_blockdev'] = (
        guest_run('bzimage', 1, False, 'rw', False, disk_path='{loop}'), 0,
        lambda o, e: conformance_ok(o, e, True, False), {'prepare': loop_disk})
    c['boot_bzimage_1cpu_serial_input'] = (
        guest_run('bzimage', 1, False, None, False, serial_in=SERIAL_IN), 0,
        lambda o, e: conformance_ok(o, e, False, False), {'stdin': serial_bytes(SERIAL_IN)})
    # the ACPI tables' registers end the VM with status 0: the sleep control register
    # (what `poweroff` writes) and the reset register (`reboot`)
    for kind, how in (('bzimage', 'poweroff'), ('pvh', 'poweroff'), ('vmlinux', 'acpi_reset')):
        c['boot_%s_2cpu_%s' % (kind, how)] = (
            guest_run(kind, 2, False, None, True, exit_how=how), 0,
            (lambda p: lambda o, e: conformance_ok(o, e, False, True, p))(kind == 'pvh'))
    bz = '{dir}/conformance.bzImage'
    bad = {
        'missing': ('{tmp}/nonexistent', r'kernel .*nonexistent: cannot open: No such file'),
        'empty': (lambda d: b'', r'not a Linux kernel'),
        'not_a_kernel': (lambda d: b'hello world\n' * 100, r'not a Linux kernel'),
        'truncated_header': (lambda d: d[:0x210], r'bzImage: truncated inside its setup header'),
        'truncated_payload': (lambda d: d[:len(d) // 2], r'bzImage: truncated: header says'),
        'bad_boot_flag': (bz_patch(0x1fe, '<H', 0x1234), r'boot flag is 0x1234'),
        'old_protocol': (bz_patch(0x206, '<H', 0x020a), r'boot protocol 2\.10 is older than 2\.12'),
        'no_64bit_entry': (bz_patch(0x236, '<H', 0), r'no 64-bit entry point'),
        'bad_alignment': (bz_patch(0x230, '<I', 0x3000), r'kernel_alignment 0x3000 is not a power of 2'),
        'too_big_for_mem': (bz_patch(0x260, '<I', 200 << 20), r'kernel needs RAM up to \d+ MiB.*try a larger --mem'),
        'elf_truncated': (lambda d: d[:100], r'vmlinux: program header table lies outside the file'),
    }
    for name, (src, want) in bad.items():
        c['bad_kernel_' + name] = (['run', '--kernel', src if isinstance(src, str) else src],
                                   2, want)
    c['bad_initrd_missing'] = (['run', '--kernel', bz, '--initrd', '{tmp}/nope'], 2,
                               r'initrd .*nope: cannot open')
    c['bad_initrd_empty'] = (['run', '--kernel', bz, '--initrd', '{tmp}/empty'], 2,
                             r'initrd .*empty: the file is empty')
    c['bad_initrd_too_big'] = (['run', '--mem', '32M', '--kernel', bz, '--initrd', '{tmp}/big'], 2,
                               r'initrd \(\d+ bytes\) does not fit.*try a larger --mem')
    c['bad_mem_too_large'] = (['run', '--mem', '4G', '--kernel', bz], 2, r'at most 3G')
    c['bad_cmdline_too_long'] = (['run', '--kernel', bz, '--append', 'x' * 3000], 2,
                                 r'--append: the command line .* at most 2047')
    # a kernel that takes any length (cmdline_size 0xffffffff) meets ufvm's own limit,
    # and the message gives the whole length, not where a buffer cut it
    c['bad_cmdline_too_long_for_ufvm'] = (
        ['run', '--kernel', bz_patch(0x238, '<I', 0xffffffff), '--append', 'x' * 5000], 2,
        r"--append: the command line with the devices' entries is 50\d\d bytes; "
        r'ufvm takes at most 4095')
    c['bad_disk_missing'] = (['run', '--kernel', bz, '--disk', '{tmp}/nodisk'], 2,
                             r'virtio-blk .*nodisk: cannot open the disk file')
    # a --disk that names no usable disk is bad input too, whatever the reason
    for name, path, why, prepare in (
            ('directory', '{tmp}', 'Is a directory', None),
            ('not_a_directory', '{tmp}/disk/x', 'Not a directory', None),
            ('symlink_loop', '{tmp}/loop-a', 'Too many levels of symbolic links', symlink_loop),
            ('immutable', '{tmp}/disk-immutable', 'Operation not permitted', immutable_disk),
            ('char_device', '/dev/null', 'the disk is not a regular file or block device',
             None)):
        c['bad_disk_' + name] = (['run', '--kernel', bz, '--disk', path], 2,
                                 r'virtio-blk .*: ' + why, {'prepare': prepare} if prepare else {})
    c['bad_disk_flag'] = (['run', '--kernel', bz, '--disk', '{tmp}/disk,rw'], 2,
                          r'--disk: invalid value')
    c['bad_kernel_and_elf'] = (['run', '--kernel', bz, '{dir}/conformance.elf'], 2,
                               r'mutually exclusive')
    c['bad_initrd_without_kernel'] = (['run', '--initrd', '{tmp}/initrd', '{dir}/conformance.elf'],
                                      2, r'need --kernel')
    return c


def run_case(ufvm, gdir, tmp, name, case):
    """'ok', 'fail' or 'skip'."""
    args, status, judge = case[:3]
    opts = case[3] if len(case) > 3 else {}
    subst, cleanup = {'dir': gdir, 'tmp': tmp}, None
    if opts.get('prepare'):
        try:
            more, cleanup = opts['prepare'](tmp)
        except Skip as e:
            print('skip %s: %s' % (name, e))
            return 'skip'
        subst.update(more)
    try:
        return run_prepared(ufvm, gdir, tmp, name, args, status, judge, subst,
                            opts.get('stdin'))
    finally:
        if cleanup:
            cleanup()


def run_prepared(ufvm, gdir, tmp, name, args, status, judge, subst, stdin):
    out_args = []
    for a in args:
        if callable(a):  # a malformed kernel made from the good bzImage (or ELF)
            src = os.path.join(gdir, 'conformance.elf' if 'elf' in name else 'conformance.bzImage')
            path = os.path.join(tmp, name + '.img')
            with open(src, 'rb') as f, open(path, 'wb') as g:
                g.write(a(f.read()))
            a = path
        for k, v in subst.items():
            a = a.replace('{%s}' % k, v)
        out_args.append(a)
    if stdin is None:
        p = subprocess.run([ufvm] + out_args, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=TIMEOUT)
    else:
        p = subprocess.run([ufvm] + out_args, input=stdin, capture_output=True,
                           timeout=TIMEOUT)
    out, err = p.stdout.decode(errors='replace'), p.stderr.decode(errors='replace')
    why = None
    if p.returncode != status:
        why = 'exit status %d, want %d' % (p.returncode, status)
    elif callable(judge):
        why = judge(out, err)
    elif not re.search(judge, err):
        why = 'stderr does not match %r' % judge
    if why:
        print('FAIL %s: %s\n--- command: %s\n--- stdout:\n%s--- stderr:\n%s' %
              (name, why, ' '.join(out_args), out[-6000:], err[-3000:]))
        return 'fail'
    print('ok %s' % name)
    return 'ok'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--ufvm')
    ap.add_argument('--guests')
    ap.add_argument('names', nargs='*')
    o = ap.parse_args()
    all_cases = cases()
    if o.list:
        print('\n'.join(all_cases))
        return 0
    try:
        os.close(os.open('/dev/kvm', os.O_RDWR))
    except OSError as e:
        print('skipped: /dev/kvm is not usable: %s' % e.strerror)
        return 77
    results = []
    with tempfile.TemporaryDirectory(prefix='ufvm-linux-') as tmp:
        with open(os.path.join(tmp, 'initrd'), 'wb') as f:
            f.write(initrd_bytes(INITRD_LEN))
        with open(os.path.join(tmp, 'disk'), 'wb') as f:
            f.write(disk_bytes(DISK_SECTORS, DISK_TAIL))
        open(os.path.join(tmp, 'empty'), 'wb').close()
        with open(os.path.join(tmp, 'big'), 'wb') as f:
            f.truncate(40 << 20)
        for name in o.names or all_cases:
            results.append(run_case(o.ufvm, os.path.abspath(o.guests), tmp, name,
                                    all_cases[name]))
    if 'fail' in results:
        return 1
    return 77 if results and all(r == 'skip' for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
