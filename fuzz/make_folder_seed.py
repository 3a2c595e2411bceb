#!/usr/bin/env python3
"""Writes a fuzz_folder seed (see fuzz_folder.cpp for the format) holding
every file of a folder, e.g. the corpus's sharded checkpoint; with --link,
the first .safetensors file also appears through a symlink; with --tree,
the input asks for the tree view. Every seed asks for the rebuild check.
Usage: make_folder_seed.py FOLDER OUT [--link] [--tree]"""
import os
import struct
import sys


def record(kind, name, body):
    name = name.encode()
    return bytes([kind, len(name)]) + name + struct.pack("<H", len(body)) + body


def main():
    folder, out = sys.argv[1], sys.argv[2]
    data = b""
    names = sorted(os.listdir(folder))
    for n in names:
        with open(os.path.join(folder, n), "rb") as f:
            body = f.read()[:65535]
        data += record(0, n, body)
    if "--link" in sys.argv:
        first = next(n for n in names if n.endswith(".safetensors"))
        data += record(2, "snap", b"") + record(1, "snap/linked.safetensors", b"../" + first.encode())
    # The first byte's high bits pick the layout (0x80: the tree view) and
    # the rebuild check (0x40, always set here); adding multiples of 3
    # keeps the record's kind (byte % 3).
    first = data[0] + 66  # 0x42: bit 6 set
    if "--tree" in sys.argv:
        first += 129       # 0xc3: bit 7 too
    data = bytes([first]) + data[1:]
    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
