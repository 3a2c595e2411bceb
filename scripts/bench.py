#!/usr/bin/python3
"""stfs against a native read of the same bytes and against squashfuse_ll
serving the same tensors from an uncompressed squashfs image. Every row is
measured side by side in one run; the table holds medians of RUNS runs.
The rows live by workload: bench_reads.py (reads), bench_packed.py (whole
models), bench_checkpoint.py (checkpoint-shaped reads); bench_common.py
holds what they share. See docs/PERFORMANCE.md for what each row means and
the recorded results."""
import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time

from bench_checkpoint import CheckpointRows
from bench_common import GiB, BenchCore, drop_caches, sh, timed, warm  # noqa: F401 (bench_views)
from bench_packed import ModelRows
from bench_reads import ReadRows


class Bench(ReadRows, ModelRows, BenchCore):
    """Every row of the bench over one scratch folder."""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stfs", default="build/stfs")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default=None, help="scratch directory (default: /var/tmp)")
    ap.add_argument("--baseline", default=None,
                    help="another stfs binary to compare first reads with, side by side")
    ap.add_argument("--compare", default=None,
                    help="another stfs binary: every row is run with both, side by side (the "
                         "order alternating per group), and each row's ratio printed")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of --compare")
    ap.add_argument("--only", default=None,
                    help="comma-separated rows to run: sequential,random,parallel,memory,"
                         "header,footprint,pairs,cold,squashfuse,packed,packedscale,"
                         "checkpoint,directio,squashfuse_dio")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (drop_caches, readahead)")
    # The measuring sticks (scripts/bench.sh installs them): say so before
    # a row fails halfway with a traceback.
    missing = [t for t in ("squashfuse_ll", "mksquashfs", "fio", "dd") if not shutil.which(t)]
    if missing:
        sys.exit("bench: %s missing: run scripts/bench.sh, or apt-get install squashfuse "
                 "squashfs-tools fio" % ", ".join(missing))
    # A SIGTERM (a CI timeout, kill) unwinds like ^C: the finally below
    # unmounts what the bench mounted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="stfs-bench-", dir=args.work or "/var/tmp")
    b = Bench(args.stfs, args.runs, work)
    b.baseline = os.path.abspath(args.baseline) if args.baseline else None
    only = set(args.only.split(",")) if args.only else None

    def want(row):
        return only is None or row in only
    try:
        print("bench: %s, %d cores, %.0f GiB RAM, kernel %s, %s; medians of %d runs"
              % (platform.node(), os.cpu_count(),
                 os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB,
                 platform.release(), time.strftime("%Y-%m-%d"), args.runs), flush=True)
        b.make_model()
        if want("header"):
            b.make_big_header()
        # Rows in groups: the first group's rows share the mounts that
        # sequential() makes.
        groups = []
        if want("sequential") or want("memory") or want("random") or want("parallel"):
            groups.append(lambda: (b.sequential(),
                                   want("random") and b.random_4k(),
                                   want("parallel") and b.parallel(),
                                   want("memory") and b.memory_after_model()))
        for row, fn in (("header", b.big_header), ("footprint", b.footprint),
                        ("pairs", b.first_read_pairs), ("cold", b.cold_pairs),
                        ("squashfuse", b.over_squashfuse), ("packed", b.packed_read),
                        ("packedscale", b.packed_scale),
                        ("checkpoint",
                         lambda: CheckpointRows(b, timed, drop_caches, warm, sh).run()),
                        ("directio",
                         lambda: CheckpointRows(b, timed, drop_caches, warm, sh).direct_io()),
                        ("squashfuse_dio",
                         lambda: CheckpointRows(b, timed, drop_caches, warm, sh).over_squashfuse(
                             ("-o", "direct_io")))):
            # The checkpoint rows include the direct_io ones.
            if want(row) and not (row in ("directio", "squashfuse_dio") and want("checkpoint")):
                groups.append(fn)
        if args.compare:
            b.compare(groups, os.path.abspath(args.compare), args.rounds)
        else:
            for fn in groups:
                fn()
        missed = [r for r in b.rows if r[5] is not None and not r[6]]
        print("targets: %d met, %d missed" % (sum(1 for r in b.rows if r[5] is not None and r[6]),
                                              len(missed)))
    finally:
        b.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
