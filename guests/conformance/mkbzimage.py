#!/usr/bin/env python3
"""mkbzimage.py: wrap a flat 64-bit kernel image in a bzImage setup header (boot protocol 2.15).

usage: mkbzimage.py FLAT.bin LINKED.elf OUT.bzImage
The ELF gives init_size (the memory the image needs, bss included). The result is a
relocatable bzImage with XLF_KERNEL_64: its 64-bit entry is at offset 0x200 of the
protected-mode part, which a loader places at pref_address (0x1000000).
"""
import struct
import sys

SETUP_SECTS = 1


def init_size(elf):
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    end = 0
    for i in range(phnum):
        p_type, _, _, _, paddr, _, memsz = struct.unpack_from("<IIQQQQQ", elf, phoff + i * phentsize)
        if p_type == 1:
            end = max(end, paddr + memsz)
    return end - 0x1000000


def main():
    flat = open(sys.argv[1], "rb").read()
    elf = open(sys.argv[2], "rb").read()
    s = bytearray(512 * (SETUP_SECTS + 1))
    struct.pack_into("<B", s, 0x1f1, SETUP_SECTS)
    struct.pack_into("<I", s, 0x1f4, (len(flat) + 15) // 16)  # syssize
    struct.pack_into("<H", s, 0x1fa, 0xffff)  # vid_mode
    struct.pack_into("<H", s, 0x1fe, 0xaa55)  # boot_flag
    s[0x200:0x202] = b"\xeb\x6a"  # jump over the header: it ends at 0x26c
    s[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", s, 0x206, 0x020f)  # version 2.15
    struct.pack_into("<B", s, 0x211, 0x01)  # loadflags: LOADED_HIGH
    struct.pack_into("<I", s, 0x214, 0x100000)  # code32_start
    struct.pack_into("<I", s, 0x22c, 0x7fffffff)  # initrd_addr_max
    struct.pack_into("<I", s, 0x230, 0x200000)  # kernel_alignment
    struct.pack_into("<BBH", s, 0x234, 1, 21, 0x3)  # relocatable, min_alignment, xloadflags
    struct.pack_into("<I", s, 0x238, 2047)  # cmdline_size
    struct.pack_into("<Q", s, 0x258, 0x1000000)  # pref_address
    struct.pack_into("<I", s, 0x260, (init_size(elf) + 4095) & ~4095)
    pad = b"\0" * (-len(flat) % 16)
    open(sys.argv[3], "wb").write(bytes(s) + flat + pad)


if __name__ == "__main__":
    main()
