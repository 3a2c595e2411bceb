#!/usr/bin/python3
"""The float32 view's first read: a 256 MiB BF16 tensor read as float32
(`-o f32`, `__f32__/w`, 512 MiB) after drop_caches with the source warm,
against the raw tensor through the same mount, and, with --compare OTHER,
against another stfs build, in alternating pairs. Prints medians.

    sudo python3 scripts/bench_views.py [--stfs build/stfs] [--compare OTHER]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

from bench import Bench, drop_caches, timed, warm
from bench_checkpoint import write_model

MiB = 1 << 20


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
    finally:
        b.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
