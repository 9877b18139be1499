#!/usr/bin/env python3
"""badelf.py: builds minimal guest ELF images, one good and many malformed ones.

Imported by e2e.py; run alone it writes every image into a directory:
    badelf.py OUTDIR
Each malformed image breaks exactly one rule of docs/ABI.md ("The image"), so
the loader's message for it can be checked.
"""
import struct
import sys
from pathlib import Path

IMAGE_BASE = 0x800000
HC_PORT_BASE = 0x500
HC_WRITE, HC_EXIT = 1, 2
MEM = 64 << 20  # the e2e tests run bad images with --mem 64M

EHDR = struct.Struct('<16sHHIQQQIHHHHHH')  # Elf64_Ehdr, 64 bytes
PHDR = struct.Struct('<IIQQQQQQ')  # Elf64_Phdr, 56 bytes
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
ET_EXEC, ET_DYN = 2, 3
EM_X86_64, EM_AARCH64 = 62, 183
CODE_OFF = 0x1000  # file offset of the single segment's contents
GOOD_STATUS = 7  # the good image exits with this, so a test sees it really ran
GOOD_TEXT = b'badelf: minimal image ok\n'


def ident(cls=2, data=1, magic=b'\x7fELF'):
    return magic + bytes([cls, data, 1, 0]) + bytes(8)


def program(base):
    """Code and data of the good image: write GOOD_TEXT, then exit(GOOD_STATUS)."""
    data_off = 0x40
    text_off = data_off + 0x40
    wr = base + data_off
    ex = base + data_off + 24

    def hypercall(nr, arg):
        # mov eax, imm32; mov dx, imm16; out dx, eax
        return b'\xb8' + struct.pack('<I', arg) + b'\x66\xba' + struct.pack('<H', HC_PORT_BASE + nr) + b'\xef'

    code = hypercall(HC_WRITE, wr) + hypercall(HC_EXIT, ex) + b'\x0f\x0b'  # ud2
    body = bytearray(text_off + len(GOOD_TEXT))
    body[0:len(code)] = code
    body[data_off:data_off + 24] = struct.pack('<QQq', base + text_off, len(GOOD_TEXT), 0)
    body[data_off + 24:data_off + 32] = struct.pack('<Q', GOOD_STATUS)
    body[text_off:] = GOOD_TEXT
    return bytes(body)


def image(e_ident=None, e_type=ET_EXEC, e_machine=EM_X86_64, entry=IMAGE_BASE, phoff=64,
          phentsize=PHDR.size, phnum=None, phdrs=None, body=None, truncate=None):
    """An ELF64 image; phdrs is a list of dicts overriding the good PT_LOAD's fields."""
    body = program(IMAGE_BASE) if body is None else body
    good = dict(type=PT_LOAD, flags=PF_R | PF_W | PF_X, offset=CODE_OFF, vaddr=IMAGE_BASE,
                paddr=IMAGE_BASE, filesz=len(body), memsz=0x2000, align=0x1000)
    phdrs = [{}] if phdrs is None else phdrs
    table = b''.join(PHDR.pack(*(dict(good, **p)[k] for k in
                                 ('type', 'flags', 'offset', 'vaddr', 'paddr', 'filesz',
                                  'memsz', 'align')))
                     for p in phdrs)
    ehdr = EHDR.pack(e_ident or ident(), e_type, e_machine, 1, entry, phoff, 0, 0, EHDR.size,
                     phentsize, len(phdrs) if phnum is None else phnum, 64, 0, 0)
    out = bytearray(ehdr + table)
    out += bytes(CODE_OFF - len(out)) + body
    return bytes(out if truncate is None else out[:truncate])


GOOD = image()
SIZE = len(GOOD)

# name: (image bytes, regex the loader's message must match, what is wrong)
BAD = {
    'empty': (b'', r'short|empty|truncat', 'empty file'),
    'truncated-header': (GOOD[:20], r'short|truncat', 'file ends inside the ELF header'),
    'bad-magic': (image(e_ident=ident(magic=b'\x7fELG')), r'magic|not an ELF', 'wrong magic'),
    'class32': (image(e_ident=ident(cls=1)), r'class|64-bit', 'ELFCLASS32'),
    'big-endian': (image(e_ident=ident(data=2)), r'endian|byte order', 'ELFDATA2MSB'),
    'wrong-machine': (image(e_machine=EM_AARCH64), r'machine|x86', 'EM_AARCH64'),
    'wrong-type': (image(e_type=ET_DYN), r'type|ET_EXEC', 'ET_DYN (PIE)'),
    'bad-phentsize': (image(phentsize=32), r'program header', 'e_phentsize 32'),
    'no-phdrs': (image(phnum=0), r'program header|loadable', 'e_phnum 0'),
    'too-many-phdrs': (image(phnum=65535), r'program header', 'e_phnum 65535'),
    'phoff-beyond-file': (image(phoff=SIZE + 64), r'program header', 'e_phoff past the end'),
    'phoff-overflow': (image(phoff=(1 << 64) - 56), r'program header|overflow',
                       'e_phoff + table size wraps'),
    'truncated-segment': (GOOD[:CODE_OFF + 16], r'outside the file|truncat',
                          'file ends inside the segment data'),
    'no-load-segment': (image(phdrs=[dict(type=PT_NOTE)]), r'loadable|segment',
                        'only a PT_NOTE'),
    'filesz-gt-memsz': (image(phdrs=[dict(memsz=0x10)]), r'file size|filesz|memory size',
                        'p_filesz > p_memsz'),
    'offset-beyond-file': (image(phdrs=[dict(offset=SIZE + 0x1000)]),
                           r'outside the file|truncat|offset', 'p_offset past the end'),
    'offset-overflow': (image(phdrs=[dict(offset=(1 << 64) - 16)]),
                        r'outside the file|overflow|offset', 'p_offset + p_filesz wraps'),
    'segment-outside-ram': (image(entry=1 << 30, phdrs=[dict(vaddr=1 << 30, paddr=1 << 30)]),
                            r'outside guest RAM|RAM', 'segment at 1 GiB, RAM is 64 MiB'),
    'segment-past-ram-end': (image(entry=MEM - 0x1000,
                                   phdrs=[dict(vaddr=MEM - 0x1000, paddr=MEM - 0x1000)]),
                             r'outside guest RAM|RAM', 'segment straddles the end of RAM'),
    'segment-below-base': (image(entry=0x400000, phdrs=[dict(vaddr=0x400000, paddr=0x400000)]),
                           r'below|0x800000|VMM', 'segment at 0x400000'),
    'segment-straddles-base': (image(entry=0x7ff000,
                                     phdrs=[dict(vaddr=0x7ff000, paddr=0x7ff000)]),
                               r'below|0x800000|VMM', 'segment from 0x7ff000 to 0x801000'),
    'segments-overlap': (image(phdrs=[{}, dict(flags=PF_R, vaddr=IMAGE_BASE + 0x1000,
                                               paddr=IMAGE_BASE + 0x1000, filesz=0)]),
                         r'overlap', 'second PT_LOAD starts inside the first'),
    'memsz-overflow': (image(phdrs=[dict(memsz=(1 << 64) - 0x1000)]),
                       r'overflow|outside guest RAM', 'p_paddr + p_memsz wraps'),
    'huge-memsz': (image(phdrs=[dict(memsz=1 << 40)]), r'outside guest RAM|RAM',
                   '1 TiB segment'),
    'entry-outside': (image(entry=0x10000000), r'entry', 'entry point in no segment'),
    'entry-not-exec': (image(phdrs=[dict(flags=PF_R | PF_W)]), r'entry',
                       'entry point in a non-executable segment'),
}


# well-formed images beside the good one: name -> bytes
OTHER_GOOD = {
    'huge-bss': image(phdrs=[dict(memsz=1 << 30)]),  # 1 GiB of bss after 4 KiB of code
}


def write_all(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / 'good.elf').write_bytes(GOOD)
    for name, data in OTHER_GOOD.items():
        (outdir / (name + '.elf')).write_bytes(data)
    for name, (data, _, _) in BAD.items():
        (outdir / (name + '.elf')).write_bytes(data)


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: badelf.py OUTDIR')
    write_all(sys.argv[1])
