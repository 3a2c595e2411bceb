#!/usr/bin/python3
"""The float32 view's first read: a 256 MiB BF16 tensor read as float32
(`-o f32`, `__f32__/w`, 512 MiB) after drop_caches with the source warm,
against the raw tensor through the same mount, and, with --compare OTHER,
against another stfs build, in alternating pairs. Then the GGUF row: a
Q4_K tensor's f32 view (256 MiB of float32 from 36 MiB of blocks) against
an F32 tensor of 256 MiB through stfs, first reads, source warm (target
>= 0.5x). Prints medians.

    sudo python3 scripts/bench_views.py [--stfs build/stfs] [--compare OTHER]
"""
import argparse
import os
import shutil
import statistics
import struct
import sys
import tempfile

from bench import Bench, drop_caches, timed, warm
from bench_checkpoint import write_model

MiB = 1 << 20


def write_gguf(path, name, type_id, shape, blob):
    """A GGUF v3 file of one tensor (no key/value pairs), data aligned to 32."""
    enc = name.encode()
    info = struct.pack("<Q", len(enc)) + enc + struct.pack("<I", len(shape))
    info += b"".join(struct.pack("<Q", d) for d in reversed(shape))
    info += struct.pack("<IQ", type_id, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + info
    head += b"\0" * (-len(head) % 32)
    with open(path, "wb") as f:
        f.write(head)
        f.write(blob)


def q4k_blocks(count):
    """Q4_K blocks of random quants with ordinary f16 scales (d, dmin)."""
    block = bytearray(os.urandom(144))
    out = bytearray()
    for i in range(count):
        block[0:4] = struct.pack("<ee", 0.01 + (i % 7) * 1e-3, 0.002)
        block[16:48] = os.urandom(32)
        out += block
    return bytes(out)


def gguf_row(b, work, pairs):
    n = 64 * MiB  # floats: 256 MiB of output either way
    q4k = os.path.join(work, "q4k.gguf")
    f32 = os.path.join(work, "f32.gguf")
    write_gguf(q4k, "w", 12, [n // 256, 256], q4k_blocks(n // 256))
    write_gguf(f32, "w", 0, [n // 256, 256], os.urandom(4 * n))
    mq = b.mount_stfs(q4k, "-o", "f32")[0]
    mf = b.mount_stfs(f32)[0]

    def first_read(source, path):
        drop_caches()
        warm(source)
        return 4 * n / 1e9 / timed(lambda: warm(path))

    view, plain = [], []
    for i in range(pairs):
        runs = [(view, q4k, os.path.join(mq, "__f32__", "w")), (plain, f32, os.path.join(mf, "w"))]
        for out, source, path in (runs if i % 2 == 0 else runs[::-1]):
            out.append(first_read(source, path))
    ratios = [a / p for a, p in zip(view, plain)]
    print("GGUF: Q4_K tensor as float32 (-o f32) against an F32 tensor, 256 MiB of float32 each, "
          "first read, source warm (medians of %d pairs)" % pairs)
    print("  Q4_K f32 view %6.2f GB/s, F32 %6.2f GB/s: %.2fx (target >= 0.5x)"
          % (statistics.median(view), statistics.median(plain), statistics.median(ratios)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stfs", default="build/stfs")
    ap.add_argument("--compare", default=None, help="another stfs binary, side by side")
    ap.add_argument("--pairs", type=int, default=11)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_views: needs root (drop_caches)")
    work = tempfile.mkdtemp(prefix="stfs-bench-views-", dir="/var/tmp")
    b = Bench(args.stfs, 1, work)
    try:
        n = 128 * MiB  # BF16 elements: 256 MiB of source
        model = os.path.join(work, "bf16.safetensors")
        write_model(model, [("w", 2 * n)], dtype="BF16", item=2)
        builds = {"this build": os.path.abspath(args.stfs)}
        if args.compare:
            builds["other build"] = os.path.abspath(args.compare)
        mps = {k: b.mount_stfs(model, "-o", "f32", binary=v)[0] for k, v in builds.items()}

        def read(path):
            def run():
                drop_caches()
                warm(model)
                return timed(lambda: warm(path))
            return run

        runs = {}
        for i in range(args.pairs):
            order = list(builds) if i % 2 == 0 else list(builds)[::-1]
            for k in order:
                runs.setdefault(k + ", f32 view", []).append(
                    4 * n / 1e9 / read(os.path.join(mps[k], "__f32__", "w"))())
            runs.setdefault("this build, raw BF16", []).append(
                2 * n / 1e9 / read(os.path.join(mps["this build"], "w"))())
        print("f32 view of a 256 MiB BF16 tensor, source warm, mount cache dropped "
              "(GB/s of output, medians of %d)" % args.pairs)
        for k, v in runs.items():
            print("  %-30s %6.2f GB/s" % (k, statistics.median(v)))
        if args.compare:
            ratios = [a / o for a, o in zip(runs["this build, f32 view"],
                                            runs["other build, f32 view"])]
            print("  this / other build, f32 view: %.2fx (median of the pairs' ratios)"
                  % statistics.median(ratios))
        gguf_row(b, work, args.pairs)
    finally:
        b.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
