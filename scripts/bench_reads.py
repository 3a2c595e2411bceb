#!/usr/bin/python3
"""The main rows of scripts/bench.py: sequential first reads and re-reads,
random 4 KiB reads with fio, parallel readers, the page-cache footprint,
alternating first-read pairs, cold sources, and stfs over squashfuse_ll."""
import os
import shutil
import statistics
import subprocess
import time

from bench_common import GiB, dd, drop_caches, drop_file, sh, timed, warm


class ReadRows:
    """Rows over a BenchCore (bench_common.py): its mounts, timers, table."""

    def sequential(self):
        total = sum(s for _, _, s in self.tensors) / GiB
        stfs_mp, _ = self.mount_stfs(self.model)
        sq_mp, _ = self.mount_squash()
        first = {"native": [], "stfs": [], "squashfuse_ll": []}
        warm_ = {"native": [], "stfs": [], "squashfuse_ll": []}
        cold_source = []
        # Re-reads as pairs: the ratio of each run, stfs and squashfuse_ll
        # in alternating order (a fixed order favoured whichever went last).
        warm_ratio, cold_ratio = [], []
        for i in range(self.runs):
            # First read: sources in the page cache, the FUSE caches empty.
            drop_caches()
            warm(self.model)
            warm(self.image)
            first["native"].append(total / timed(self.read_all_native))
            first["stfs"].append(total / timed(lambda: self.read_all_files(stfs_mp)))
            first["squashfuse_ll"].append(total / timed(lambda: self.read_all_files(sq_mp)))
            # Re-read: everything warm. (The source first: stfs's first read
            # dropped the source's own copy, source_cache=drop.)
            warm(self.model)
            warm_["native"].append(total / timed(self.read_all_native))
            for name in (("stfs", "squashfuse_ll") if i % 2 == 0 else ("squashfuse_ll", "stfs")):
                mp = stfs_mp if name == "stfs" else sq_mp
                warm_[name].append(total / timed(lambda: self.read_all_files(mp)))
            warm_ratio.append(warm_["stfs"][-1] / warm_["squashfuse_ll"][-1])
            # Re-read with the source's own pages gone (the mount's stay):
            # served from the mount's cache, never from the source again.
            drop_file(self.model)
            cold_source.append(total / timed(lambda: self.read_all_files(stfs_mp)))
            cold_ratio.append(cold_source[-1] / warm_["squashfuse_ll"][-1])
        med = {k: statistics.median(v) for k, v in first.items()}
        wmed = {k: statistics.median(v) for k, v in warm_.items()}
        print("1. sequential read of 16 x 64 MiB, dd bs=1M (GiB/s)")
        self.row("native, source in page cache", med["native"], "GiB/s")
        self.row("stfs, first read (through the daemon)", med["stfs"], "GiB/s",
                 med["squashfuse_ll"], "squashfuse_ll", ">=1.5x sq",
                 med["stfs"] >= 1.5 * med["squashfuse_ll"])
        self.row("squashfuse_ll, first read", med["squashfuse_ll"], "GiB/s", med["native"],
                 "native")
        self.row("stfs, first read vs native", med["stfs"], "GiB/s", med["native"], "native")
        self.row("native, re-read", wmed["native"], "GiB/s")
        # Re-reads protect the mount's own cache: the kernel answers them
        # from it, the daemon never sees them, whatever the source's cache
        # holds; so they cost what another FUSE filesystem's re-reads cost.
        wr, cr = statistics.median(warm_ratio), statistics.median(cold_ratio)
        self.row("stfs, re-read, source warm", wmed["stfs"], "GiB/s")
        self.row("  / squashfuse_ll, median of the runs' ratios", wr, "x", target=">=0.9x sq",
                 ok=wr >= 0.9)
        self.row("stfs, re-read, source cold", statistics.median(cold_source), "GiB/s")
        self.row("  / squashfuse_ll, median of the runs' ratios", cr, "x", target=">=0.9x sq",
                 ok=cr >= 0.9)
        self.row("squashfuse_ll, re-read", wmed["squashfuse_ll"], "GiB/s", wmed["native"],
                 "native")
        self.stfs_mp, self.sq_mp = stfs_mp, sq_mp

    def random_4k(self):
        name, off, size = self.tensors[3]
        print("2. random 4 KiB reads, fio psync on one 64 MiB tensor (kIOPS)")
        for jobs in (1, 2):
            res = {"native": [], "stfs": [], "squashfuse_ll": []}
            wres = {"stfs": [], "squashfuse_ll": []}
            cres = {"stfs": [], "squashfuse_ll": []}
            # Each run's ratios, stfs and squashfuse_ll in alternating order.
            uratio, cratio = [], []
            for i in range(self.runs):
                pair = (("stfs", self.stfs_mp), ("squashfuse_ll", self.sq_mp))
                if i % 2:
                    pair = pair[::-1]
                warm(self.model)
                warm(self.image)
                # Uncached: fio invalidates the file's own page cache first,
                # so every 4 KiB read goes through the daemon.
                res["native"].append(self.fio(self.model, jobs, offset=off, size=size) / 1e3)
                for label, mp in pair:
                    res[label].append(self.fio(os.path.join(mp, name), jobs) / 1e3)
                uratio.append(res["stfs"][-1] / res["squashfuse_ll"][-1])
                for label, mp in pair:
                    warm(os.path.join(mp, name))
                    wres[label].append(self.fio(os.path.join(mp, name), jobs,
                                                invalidate=False) / 1e3)
                # Source cold: each read the daemon serves goes to the disk.
                for label, mp in pair:
                    drop_caches()
                    cres[label].append(self.fio(os.path.join(mp, name), jobs) / 1e3)
                cratio.append(cres["stfs"][-1] / cres["squashfuse_ll"][-1])
            ur, cr = statistics.median(uratio), statistics.median(cratio)
            m = {k: statistics.median(v) for k, v in res.items()}
            w = {k: statistics.median(v) for k, v in wres.items()}
            c = {k: statistics.median(v) for k, v in cres.items()}
            self.row("native, %d job(s) (source warm)" % jobs, m["native"], "kIOPS")
            # Uncached, source warm: what one small read through the daemon
            # costs (the request, not the disk).
            self.row("stfs, %d job(s), uncached, source warm" % jobs, m["stfs"], "kIOPS")
            self.row("  / squashfuse_ll, median of the runs' ratios", ur, "x", target=">=1.5x sq",
                     ok=ur >= 1.5)
            self.row("squashfuse_ll, %d job(s), uncached, source warm" % jobs, m["squashfuse_ll"],
                     "kIOPS")
            # Source cold: a small read reads what is asked, no readahead
            # around it (drop mode's small-read descriptor).
            self.row("stfs, %d job(s), uncached, source cold" % jobs, c["stfs"], "kIOPS")
            self.row("  / squashfuse_ll, median of the runs' ratios", cr, "x", target=">=1.0x sq",
                     ok=cr >= 1.0)
            self.row("squashfuse_ll, %d job(s), uncached, source cold" % jobs,
                     c["squashfuse_ll"], "kIOPS")
            self.row("stfs, %d job(s), warm" % jobs, w["stfs"], "kIOPS", w["squashfuse_ll"],
                     "squashfuse_ll")
            self.row("squashfuse_ll, %d job(s), warm" % jobs, w["squashfuse_ll"], "kIOPS")

    def parallel(self):
        print("3. eight parallel readers of different tensors, first read (GiB/s aggregate)")
        total = sum(s for _, _, s in self.tensors[:8]) / GiB
        res = {"native": [], "stfs": [], "squashfuse_ll": []}

        def run(cmds):
            t = time.perf_counter()
            ps = [subprocess.Popen(c) for c in cmds]
            for p in ps:
                p.wait()
            return time.perf_counter() - t

        for _ in range(self.runs):
            drop_caches()
            warm(self.model)
            warm(self.image)
            res["native"].append(total / run([
                ["dd", "if=" + self.model, "of=/dev/null", "bs=1M", "status=none",
                 "skip=%d" % off, "count=%d" % size, "iflag=skip_bytes,count_bytes"]
                for _, off, size in self.tensors[:8]]))
            for label, mp in (("stfs", self.stfs_mp), ("squashfuse_ll", self.sq_mp)):
                res[label].append(total / run([
                    ["dd", "if=" + os.path.join(mp, name), "of=/dev/null", "bs=1M", "status=none"]
                    for name, _, _ in self.tensors[:8]]))
        m = {k: statistics.median(v) for k, v in res.items()}
        self.row("native", m["native"], "GiB/s")
        self.row("stfs", m["stfs"], "GiB/s", m["squashfuse_ll"], "squashfuse_ll")
        self.row("squashfuse_ll", m["squashfuse_ll"], "GiB/s", m["native"], "native")

    # ---- round 2 rows (issues 11, 14, 16) ----
    def footprint(self):
        """Growth of Cached: per byte read once, from cold caches."""
        total = sum(s for _, _, s in self.tensors)

        def cached():
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("Cached:"):
                        return int(line.split()[1]) * 1024
            return 0

        res = {"native": [], "drop": [], "keep": []}
        for _ in range(self.runs):
            for kind in ("native", "drop", "keep"):
                # One mount at a time: a daemon's mapping keeps the pages it
                # maps from drop_caches, which would hide them from the count.
                mount = None if kind == "native" else self.mount_stfs(
                    self.model, "-o", "source_cache=" + kind)
                drop_caches()
                before = cached()
                if kind == "native":
                    self.read_all_native()
                else:
                    self.read_all_files(mount[0])
                res[kind].append((cached() - before) / total)
                if mount:
                    self.umount(*mount)
        m = {k: statistics.median(v) for k, v in res.items()}
        print("6. page-cache footprint: growth of Cached per byte read once (x)")
        self.row("native", m["native"], "x")
        self.row("stfs, source_cache=drop (default)", m["drop"], "x", m["native"], "native",
                 "<=1.15x", m["drop"] <= 1.15)
        self.row("stfs, source_cache=keep", m["keep"], "x", m["native"], "native")

    def first_read_pairs(self, pairs=15):
        """First read, this build against squashfuse_ll and a baseline build,
        alternating."""
        total = sum(s for _, _, s in self.tensors) / GiB
        sq, _ = self.mount_squash()
        ratios_sq, ratios_base, mine_bw = [], [], []

        def stfs_read(binary):
            return self.first_read(binary, warm_paths=(self.model, self.image))

        def sq_read():
            drop_caches()
            warm(self.model)
            warm(self.image)
            return total / timed(lambda: self.read_all_files(sq))

        for i in range(pairs):
            order = ["mine", "sq"] + (["base"] if self.baseline else [])
            if i % 2:
                order.reverse()
            got = {}
            for name in order:
                got[name] = (sq_read() if name == "sq" else
                             stfs_read(self.stfs if name == "mine" else self.baseline))
            mine_bw.append(got["mine"])
            ratios_sq.append(got["mine"] / got["sq"])
            if self.baseline:
                ratios_base.append(got["mine"] / got["base"])
        print("7. first read, %d alternating pairs (median)" % pairs)
        self.row("stfs first read / squashfuse_ll", statistics.median(ratios_sq), "x",
                 target=">=1.5x", ok=statistics.median(ratios_sq) >= 1.5)
        self.row("stfs first read", statistics.median(mine_bw), "GiB/s")
        if self.baseline:
            self.row("this build / baseline build", statistics.median(ratios_base), "x")

    def cold_pairs(self, pairs=8):
        """First read with the source on disk (not in the page cache): this
        build against a baseline build (or against source_cache=keep without
        one), alternating. The disk's own speed varies run to run here."""
        other = (self.baseline, ()) if self.baseline else (self.stfs, ("-o", "source_cache=keep"))

        mine, theirs, ratios = [], [], []
        for i in range(pairs):
            got = {}
            for name in (("mine", "other") if i % 2 == 0 else ("other", "mine")):
                got[name] = (self.first_read(self.stfs) if name == "mine"
                             else self.first_read(*other))
            mine.append(got["mine"])
            theirs.append(got["other"])
            ratios.append(got["mine"] / got["other"])
        label = "baseline build" if self.baseline else "source_cache=keep"
        print("11. first read, source on disk, %d alternating pairs (median)" % pairs)
        self.row("stfs", statistics.median(mine), "GiB/s")
        self.row(label, statistics.median(theirs), "GiB/s")
        self.row("stfs / " + label, statistics.median(ratios), "x")

    def over_squashfuse(self, pairs=5):
        """stfs stacked on squashfuse_ll against reading the squashfuse file directly."""
        tree = os.path.join(self.work, "sqmodel")
        os.mkdir(tree)
        os.link(self.model, os.path.join(tree, "model.safetensors"))
        image = os.path.join(self.work, "model-file.squashfs")
        sh("mksquashfs", tree, image, "-noI", "-noD", "-noF", "-noX", "-no-progress", "-quiet")
        shutil.rmtree(tree)
        lower, lp = self.mount_squash(image)
        src = os.path.join(lower, "model.safetensors")
        mp, p = self.mount_stfs(src)
        total = sum(s for _, _, s in self.tensors) / GiB
        direct, stacked, ratios = [], [], []

        def read_direct():
            for _, off, size in self.tensors:
                dd(src, skip=off, count=size)

        for i in range(pairs):
            got = {}
            for name in (("direct", "stfs") if i % 2 == 0 else ("stfs", "direct")):
                drop_caches()
                warm(image)
                got[name] = total / timed(read_direct if name == "direct"
                                          else (lambda: self.read_all_files(mp)))
            direct.append(got["direct"])
            stacked.append(got["stfs"])
            ratios.append(got["stfs"] / got["direct"])
        self.umount(mp, p)
        self.umount(lower, lp)
        os.unlink(image)
        print("8. over squashfuse_ll: first read, %d interleaved pairs (GiB/s)" % pairs)
        self.row("squashfuse file read directly", statistics.median(direct), "GiB/s")
        self.row("stfs on the squashfuse file", statistics.median(stacked), "GiB/s")
        self.row("stfs / direct", statistics.median(ratios), "x", target=">=0.8x",
                 ok=statistics.median(ratios) >= 0.8)
