#!/usr/bin/env python3
"""Extracts the ELF vmlinux from a compressed kernel image (bzImage / vmlinuz), or,
with --btf, the kernel's raw BTF blob from an image that holds no ELF (arm64's Image).

The same idea as the kernel's scripts/extract-vmlinux (which needs a kernel source
tree): find each compressor's magic in the image, decompress from there, keep the first
result that is an ELF file. Written in Python (lzma, gzip, bz2 in the standard library;
zstd through the zstd CLI) because no Debian package ships the kernel's script outside a
source tree. The ELF carries the .BTF section that `bpftool btf dump file` reads.

Debian's arm64 vmlinuz is an uncompressed EFI/Image binary (not ELF) and its System.map
is a placeholder, so the BTF section's bounds are unknown: --btf finds the BTF header
(magic 0xeB9F, version 1) and takes the blob it describes. bpftool reads raw BTF too.

usage: extract_vmlinux.py [--btf] <vmlinuz> <out>
"""
import struct
import bz2
import gzip
import lzma
import subprocess
import sys
import zlib


def _xz(data):
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)


def _lzma(data):
    return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)


def _gzip(data):
    # A raw deflate stream after the gzip header; stop at the stream's end (the image
    # carries trailing bytes that gzip.decompress would reject).
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return d.decompress(data)


def _bzip2(data):
    return bz2.BZ2Decompressor().decompress(data)


def _zstd(data):
    r = subprocess.run(["zstd", "-dc"], input=data, capture_output=True)
    return r.stdout  # trailing garbage makes zstd exit non-zero after writing the frame


MAGICS = [
    (b"\xfd7zXZ\x00", _xz),
    (b"\x1f\x8b\x08", _gzip),
    (b"\x28\xb5\x2f\xfd", _zstd),
    (b"BZh", _bzip2),
    (b"\x5d\x00\x00\x00", _lzma),
]


def extract(image):
    if image[:4] == b"\x7fELF":
        return image
    for magic, fn in MAGICS:
        pos = image.find(magic)
        while pos >= 0:
            try:
                out = fn(image[pos:])
            except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError):
                out = b""
            if out[:4] == b"\x7fELF":
                return out
            pos = image.find(magic, pos + 1)
    return None


BTF_MAGIC = b"\x9f\xeb\x01"  # 0xeB9F little-endian, then version 1


def extract_btf(image):
    """The largest well-formed BTF blob in `image` (the kernel's; modules have none)."""
    best = None
    pos = image.find(BTF_MAGIC)
    while pos >= 0:
        if pos + 24 <= len(image):
            hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", image, pos + 4)
            end = pos + hdr_len + str_off + str_len
            if (hdr_len == 24 and type_off == 0 and str_off == type_len and str_len > 0
                    and end <= len(image) and (best is None or end - pos > len(best))):
                best = image[pos:end]
        pos = image.find(BTF_MAGIC, pos + 1)
    return best


def main():
    args = sys.argv[1:]
    want_btf = bool(args) and args[0] == "--btf"
    if want_btf:
        args = args[1:]
    if len(args) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    with open(args[0], "rb") as f:
        image = f.read()
    out = extract(image)
    if want_btf:
        out = extract_btf(out if out is not None else image)
    if out is None:
        sys.exit(f"extract_vmlinux: no {'BTF' if want_btf else 'compressed ELF kernel'} found in {args[0]}")
    with open(args[1], "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
