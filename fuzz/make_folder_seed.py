#!/usr/bin/env python3
"""Writes a fuzz_folder seed (see fuzz_folder.cpp for the format) holding
every file of a folder, e.g. the corpus's sharded checkpoint; with --link,
the first .safetensors file also appears through a symlink.
Usage: make_folder_seed.py FOLDER OUT [--link]"""
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
    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
