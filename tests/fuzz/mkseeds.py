#!/usr/bin/env python3
"""mkseeds.py: write the fuzz harnesses' seed corpora (tests/fuzz/<harness>/seeds/).

usage: mkseeds.py [--build DIR]
Small, valid-shaped inputs for each harness, in the step encodings their fuzz_*.c
describe. With --build, real images from a build dir are added too (stripped guests,
the conformance kernels). Seeds are checked in: run this only to change them.
"""
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(harness, name, data):
    d = os.path.join(HERE, harness, "seeds")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- ELF images ------------------------------------------------------------------
def elf(segments, entry, phoff=64, extra_phdrs=()):
    """segments: (type, flags, offset, paddr, data, memsz); data lands at offset."""
    phdrs = list(segments) + list(extra_phdrs)
    eh = bytearray(64)
    eh[0:4] = b"\x7fELF"
    eh[4], eh[5], eh[6] = 2, 1, 1  # ELFCLASS64, little-endian, EV_CURRENT
    struct.pack_into("<HHIQQQIHHHHHH", eh, 16, 2, 62, 1, entry, phoff, 0, 0, 64, 56,
                     len(phdrs), 0, 0, 0)
    size = max([phoff + 56 * len(phdrs)] + [s[2] + len(s[4]) for s in phdrs])
    img = bytearray(size)
    img[0:64] = eh
    for i, (ptype, flags, off, paddr, data, memsz) in enumerate(phdrs):
        struct.pack_into("<IIQQQQQQ", img, phoff + 56 * i, ptype, flags, off, paddr, paddr,
                         len(data), memsz, 0x1000)
        img[off:off + len(data)] = data
    return bytes(img)


PT_LOAD, PT_NOTE = 1, 4
RX, RW = 5, 6


def xen_note(entry, descsz=4):
    desc = struct.pack("<I" if descsz == 4 else "<Q", entry)
    return struct.pack("<III", 4, descsz, 18) + b"Xen\0" + desc


def elf_seeds():
    text = b"\x90" * 48
    write("elf", "two-segments", elf([(PT_LOAD, RX, 0x100, 0x800000, text, 0x40),
                                      (PT_LOAD, RW, 0x140, 0x900000, b"\xab" * 16, 0x2000)],
                                     0x800010))
    write("elf", "one-segment", elf([(PT_LOAD, RX, 0x80, 0x800000, text, 0x30)], 0x800000))
    write("elf", "note-and-load", elf([(PT_NOTE, 4, 0xc0, 0, b"\0" * 16, 16),
                                       (PT_LOAD, RX, 0x100, 0xa00000, text, 0x1000)],
                                      0xa00004))
    write("elf", "bss-only", elf([(PT_LOAD, RX, 0x100, 0x800000, text, 0x40),
                                  (PT_LOAD, RW, 0x140, 0xc00000, b"", 0x100000)], 0x800000))


# ---- kernels ---------------------------------------------------------------------
def bzimage(payload_len=0x400, version=0x020f, relocatable=1, pref=0x1000000,
            init_size=0x100000, setup_sects=1, align=0x200000, cmdline_size=2047):
    s = bytearray(512 * ((setup_sects or 4) + 1))  # 0 means 4
    struct.pack_into("<B", s, 0x1f1, setup_sects)
    struct.pack_into("<I", s, 0x1f4, (payload_len + 15) // 16)
    struct.pack_into("<H", s, 0x1fa, 0xffff)
    struct.pack_into("<H", s, 0x1fe, 0xaa55)
    s[0x200:0x202] = b"\xeb\x6a"
    s[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", s, 0x206, version)
    struct.pack_into("<B", s, 0x211, 0x01)
    struct.pack_into("<I", s, 0x214, 0x100000)
    struct.pack_into("<I", s, 0x22c, 0x7fffffff)
    struct.pack_into("<I", s, 0x230, align)
    struct.pack_into("<BBH", s, 0x234, relocatable, 21, 0x3)
    struct.pack_into("<I", s, 0x238, cmdline_size)
    struct.pack_into("<Q", s, 0x258, pref)
    struct.pack_into("<I", s, 0x260, init_size)
    return bytes(s) + bytes([0xcc]) * payload_len


def kernel_seeds():
    write("kernel", "bzimage", bzimage())
    write("kernel", "bzimage-fixed", bzimage(relocatable=0, pref=0x200000, init_size=0x800))
    write("kernel", "bzimage-short-cmdline", bzimage(cmdline_size=8, setup_sects=0,
                                                     payload_len=0x300))
    text = b"\x90" * 32
    write("kernel", "vmlinux", elf([(PT_LOAD, RX, 0x100, 0x100000, text, 0x2000)], 0x100000))
    write("kernel", "pvh", elf([(PT_LOAD, RX, 0x100, 0x100000, text, 0x2000),
                                (PT_NOTE, 4, 0x140, 0, xen_note(0x100010), 20)], 0x100000))
    write("kernel", "pvh-note64", elf([(PT_NOTE, 4, 0x100, 0, xen_note(0x200000, 8), 24),
                                       (PT_LOAD, RX, 0x140, 0x200000, text, 0x1000)],
                                      0x200000))


# ---- hypercalls: steps of fuzz_hypercall.c ---------------------------------------
def mem(gpa, data):
    assert 1 <= len(data) <= 256
    return bytes([0]) + struct.pack("<IB", gpa, len(data) - 1) + data


def io(port, out=1, size=4, count=1, arg=0):
    return bytes([1]) + struct.pack("<HBBBI", port, out, size, count, arg)


def call(nr, gpa):
    return bytes([2]) + struct.pack("<BI", nr, gpa)


def vcpu(i):
    return bytes([3, i])


def hypercall_seeds():
    write("hypercall", "write", mem(0x1000, struct.pack("<QQq", 0x2000, 5, 0)) +
          mem(0x2000, b"hello") + io(0x501, arg=0x1000))
    write("hypercall", "write-bad", mem(0x1000, struct.pack("<QQq", 0x1ffffe, 5, 0)) +
          call(1, 0x1000) + mem(0x1100, struct.pack("<QQq", 0, (1 << 20) + 1, 0)) +
          call(1, 0x1100) + call(1, 0x1ffff0))
    write("hypercall", "mark", mem(0x1000, struct.pack("<QQq", 0x2000, 4, 0)) +
          mem(0x2000, b"boot") + call(4, 0x1000) +
          mem(0x1100, struct.pack("<QQq", 0x2000, 65, 0)) + call(4, 0x1100) +
          mem(0x2000, b"\x01\xffab") + call(4, 0x1000))
    write("hypercall", "clock", call(3, 0x3000) + io(0x503, arg=0x1ffff8))
    write("hypercall", "exit", mem(0x1000, struct.pack("<Q", 300)) + io(0x502, arg=0x1000))
    write("hypercall", "halt", call(5, 0) + vcpu(1) + call(5, 0))
    write("hypercall", "not-hypercalls", io(0x5ff) + io(0x500) + io(0x501, out=0) +
          io(0x501, size=2) + io(0x501, count=2) + io(0x506) + call(0, 0) + call(7, 0))


# ---- control requests --------------------------------------------------------------
def control_seeds():
    reqs = {
        "stats": '{"cmd":"stats","id":1}',
        "limit": '{"cmd":"limit","bytes":"64M"}\n{"cmd":"limit","bytes":0}',
        "reclaim": '{"cmd":"reclaim","pages":1000}',
        "pause": '{"cmd":"pause"}\n{"cmd":"pause","id":"x"}\n{"cmd":"resume"}',
        "swap": '{"cmd":"swapout","prefetch":true}\n{"cmd":"swapin"}',
        "wss": '{"cmd":"wss"}',
        "pagemap": '{"cmd":"pagemap","first":0,"count":8}\n{"cmd":"pagemap"}',
        "dirty": '{"cmd":"dirty","id":[1,{"a":null}]}',
        "balloon": '{"cmd":"balloon","pages":16384}\n{"cmd":"balloon"}\n'
                   '{"cmd":"balloon","pages":-1}',
        "stop": '{"cmd":"stop","status":0}\n{"cmd":"pause"}',
        "malformed": '[1,2]\n{"cmd":7}\n{"cmd":"stats","x":1}\n{"cmd":"stats","cmd":"x"}\n'
                     '{"cmd":"nope\\u00e9"}\n{"cmd":"limit","bytes":"12Q"}\n{"cmd"',
    }
    for name, text in reqs.items():
        write("control", name, text.encode())
    write("control", "bad-utf8", b'{"cmd":"\xc3\x28"}\n{"cmd":"stats","\xff":1}\n')


# ---- virtqueues: steps of fuzz_virtq.c ----------------------------------------------
BARE, BLK, BALLOON = 0, 1, 2
F_VERSION_1 = 1 << 32
NEXT, WRITE, INDIRECT = 1, 2, 4


def reg(off, val):
    return bytes([0]) + struct.pack("<BI", off // 4, val)


def access(off, size, write_, val=0):
    how = {1: 0, 2: 1, 4: 2, 8: 3}[size] | (4 if write_ else 0)
    return bytes([1]) + struct.pack("<HBQ", off, how, val)


def gmem(gpa, data):
    out = b""
    for i in range(0, len(data), 256):
        chunk = data[i:i + 256]
        out += bytes([2]) + struct.pack("<IB", gpa + i, len(chunk) - 1) + chunk
    return out


def desc(q, idx, addr, length, flags=0, nxt=0):
    return bytes([3]) + struct.pack("<BHQIHH", q, idx, addr, length, flags, nxt)


def avail(q, head):
    return bytes([4]) + struct.pack("<BH", q, head)


def notify(q):
    return bytes([5, q])


def queue(q, num=8, base=0x1000):
    return bytes([6]) + struct.pack("<BHIII", q, num, base, base + 0x800, base + 0xc00)


def init(features):
    return bytes([7]) + struct.pack("<Q", features)


def virtq_seeds():
    reads = b"".join(access(off, 4, False) for off in range(0, 0x100, 4))
    write("virtq", "bare-registers", bytes([BARE]) + reads + access(0x100, 8, False) +
          access(0x10b, 1, False) + access(0x70, 2, True, 0xffff))
    write("virtq", "bare-chain", bytes([BARE]) + init(F_VERSION_1) + queue(0) +
          desc(0, 0, 0x10000, 16, NEXT, 1) + desc(0, 1, 0x10100, 32, WRITE) + avail(0, 0) +
          notify(0))
    write("virtq", "bare-loop", bytes([BARE]) + init(F_VERSION_1) + queue(1, 4, 0x4000) +
          desc(1, 0, 0x10000, 16, NEXT, 1) + desc(1, 1, 0x10000, 16, NEXT, 0) + avail(1, 0) +
          notify(1) + reg(0x70, 0) + init(F_VERSION_1) + queue(1, 4, 0x4000) + avail(1, 0) +
          notify(1))

    blk_feat = F_VERSION_1 | (1 << 2) | (1 << 9) | (1 << 13) | (1 << 14)
    for name, typ, data_flags in (("blk-read", 0, WRITE), ("blk-write", 1, 0),
                                  ("blk-flush", 4, None), ("blk-getid", 8, WRITE),
                                  ("blk-discard", 11, "seg"), ("blk-write-zeroes", 13, "seg")):
        s = bytes([BLK]) + init(blk_feat) + queue(0, 16)
        s += gmem(0x10000, struct.pack("<IIQ", typ, 0, 3))
        if data_flags == "seg":  # one segment: sector, count, flags (unmap for zeroes)
            s += gmem(0x11000, struct.pack("<QII", 8, 16, 1 if typ == 13 else 0))
            s += (desc(0, 0, 0x10000, 16, NEXT, 1) + desc(0, 1, 0x11000, 16, NEXT, 2) +
                  desc(0, 2, 0x12000, 1, WRITE))
        elif data_flags is None:
            s += desc(0, 0, 0x10000, 16, NEXT, 1) + desc(0, 1, 0x12000, 1, WRITE)
        else:
            s += (desc(0, 0, 0x10000, 16, NEXT, 1) +
                  desc(0, 1, 0x11000, 512 if typ != 8 else 20, data_flags | NEXT, 2) +
                  desc(0, 2, 0x12000, 1, WRITE))
        s += avail(0, 0) + notify(0) + access(0x100, 8, False)
        write("virtq", name, s)

    bal_feat = F_VERSION_1 | (1 << 1) | (1 << 5)
    s = bytes([BALLOON]) + init(bal_feat)
    for q in range(4):
        s += queue(q, 8, 0x1000 + q * 0x1000)
    s += gmem(0x10000, struct.pack("<III", 0x100, 0x101, 0x1ff))
    s += desc(0, 0, 0x10000, 12) + avail(0, 0) + notify(0)
    s += desc(1, 0, 0x10000, 8) + avail(1, 0) + notify(1)
    s += gmem(0x11000, struct.pack("<HQHQ", 0, 5, 4, 1 << 20))
    s += desc(2, 0, 0x11000, 20) + avail(2, 0) + notify(2)
    s += desc(3, 0, 0x100000, 0x2000, WRITE) + avail(3, 0) + notify(3)
    s += access(0x104, 4, True, 3) + access(0x100, 8, False)
    write("virtq", "balloon", s)


def from_build(build):
    """Real images: guests (stripped of their debug info) and the conformance kernels."""
    def strip(src, dst_harness, name):
        out = os.path.join(HERE, dst_harness, "seeds", name)
        subprocess.run(["strip", "--strip-all", "-o", out, src], check=True)

    strip(os.path.join(build, "guests", "hello.elf"), "elf", "hello.elf")
    conf = os.path.join(build, "guests", "conformance")
    shutil.copy(os.path.join(conf, "conformance.bzImage"),
                os.path.join(HERE, "kernel", "seeds", "conformance.bzImage"))
    strip(os.path.join(conf, "conformance-pvh.elf"), "kernel", "conformance-pvh.elf")


def main():
    elf_seeds()
    kernel_seeds()
    hypercall_seeds()
    control_seeds()
    virtq_seeds()
    if len(sys.argv) == 3 and sys.argv[1] == "--build":
        from_build(sys.argv[2])


if __name__ == "__main__":
    main()
