#!/usr/bin/python3
"""stfs against a native read of the same bytes and against squashfuse_ll
serving the same tensors from an uncompressed squashfs image. Every row is
measured side by side in one run; the table holds medians of RUNS runs.
See docs/PERFORMANCE.md for what each row means and the recorded results."""
import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from bench_checkpoint import CheckpointRows

MiB = 1 << 20
GiB = 1 << 30


def sh(*args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")


def warm(path):
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 * MiB)
        while f.readinto(buf):
            pass


def dd(path, skip=0, count=None, bs=MiB):
    """Reads with dd; returns bytes read (dd's own count)."""
    args = ["dd", "if=" + path, "of=/dev/null", "bs=%d" % bs, "status=none"]
    flags = []
    if skip:
        args.append("skip=%d" % skip)
        flags.append("skip_bytes")
    if count is not None:
        args.append("count=%d" % count)
        flags.append("count_bytes")
    if flags:
        args.append("iflag=" + ",".join(flags))
    subprocess.run(args, check=True)


def drop_file(path):
    """Drops one file's pages from the page cache (unmapped ones)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def wait_mount(path, proc=None, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        with open("/proc/self/mountinfo") as f:
            if any(line.split()[4] == path for line in f):
                return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("daemon exited early")
        if time.monotonic() > deadline:
            raise RuntimeError("mount did not appear: " + path)
        time.sleep(0.01)


def unmount(path):
    if subprocess.run(["fusermount3", "-u", path], capture_output=True).returncode:
        subprocess.run(["fusermount3", "-uz", path], capture_output=True)


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return {l.split(":")[0]: l.split(":", 1)[1].strip() for l in f}


def kib(v):
    return int(v.split()[0])


class Bench:
    def __init__(self, stfs, runs, work):
        self.stfs = os.path.abspath(stfs)
        self.runs = runs
        self.work = work
        self.rows = []
        self.mounts = []
        self.procs = []

    # ---- fixtures ----
    def make_model(self):
        self.model = os.path.join(self.work, "model.safetensors")
        self.tensors = []  # (name, absolute offset, size)
        n, size = 16, 64 * MiB
        header, off = {}, 0
        for i in range(n):
            name = "model.layers.%d.mlp.down_proj.weight" % i
            header[name] = {"dtype": "BF16", "shape": [4096, 8192], "data_offsets": [off, off + size]}
            off += size
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        start = 8 + len(text)
        with open(self.model, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for i, name in enumerate(header):
                f.write(os.urandom(size))
                self.tensors.append((name, start + i * size, size))
        # The same tensors as plain files in an uncompressed squashfs image.
        tree = os.path.join(self.work, "sqtree")
        os.mkdir(tree)
        with open(self.model, "rb") as src:
            for name, off, size in self.tensors:
                src.seek(off)
                with open(os.path.join(tree, name), "wb") as out:
                    out.write(src.read(size))
        self.image = os.path.join(self.work, "model.squashfs")
        sh("mksquashfs", tree, self.image, "-noI", "-noD", "-noF", "-noX", "-no-progress",
           "-quiet")
        shutil.rmtree(tree)

    def make_big_header(self, count=100_000):
        self.big = os.path.join(self.work, "many.safetensors")
        header, off = {}, 0
        for i in range(count):
            header["model.layers.%d.experts.%d.w%d.weight" % (i // 1000, (i // 10) % 100, i % 10)] = {
                "dtype": "F16", "shape": [4], "data_offsets": [off, off + 8]}
            off += 8
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(self.big, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + bytes(off))
        self.big_header_size = len(text)

    # ---- mounts ----
    def mount(self, argv, prefix):
        """The one way the bench mounts: a FUSE daemon in the foreground
        (`argv` plus a fresh mountpoint), waited for until it answers, and
        recorded so umount() or cleanup() takes it down. Returns (mp, proc)."""
        mp = tempfile.mkdtemp(prefix=prefix, dir=self.work)
        p = subprocess.Popen(argv + [mp], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.mounts.append(mp)
        self.procs.append(p)
        wait_mount(mp, p)
        return mp, p

    def mount_stfs(self, source, *opts, binary=None):
        mp, p = self.mount([binary or self.stfs, "-f", *opts, source], "stfs-bench-")
        os.stat(mp)  # first request after INIT (readahead is raised then)
        return mp, p

    def first_read(self, binary, opts=(), warm_paths=()):
        """GiB/s of one read of every tensor file through a fresh mount by
        `binary`: page cache dropped, then `warm_paths` read natively. One
        stfs mounted at a time: a daemon's mapping would keep the source's
        pages from being dropped by another."""
        total = sum(s for _, _, s in self.tensors) / GiB
        mp, p = self.mount_stfs(self.model, *opts, binary=binary)
        drop_caches()
        for path in warm_paths:
            warm(path)
        bw = total / timed(lambda: self.read_all_files(mp))
        self.umount(mp, p)
        return bw

    def mount_squash(self, image=None):
        return self.mount(["squashfuse_ll", "-f", image or self.image], "sq-bench-")

    def umount(self, mp, p):
        unmount(mp)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.mounts.remove(mp)
        self.procs.remove(p)
        try:
            os.rmdir(mp)
        except OSError:
            pass

    def unmount_all(self):
        for mp, p in list(zip(self.mounts, self.procs)):
            self.umount(mp, p)

    def compare(self, groups, other, rounds=2):
        """Each group of rows with this build and with `other`, one after the
        other, `rounds` times; which goes first alternates from group to
        group and from round to round, against drift. Then every row's
        medians for both and the median of its per-round ratios."""
        mine = self.stfs
        values = {}  # row index within the run -> (name, unit, [mine], [other], [ratio])
        for r in range(rounds):
            order = 0
            for gi, fn in enumerate(groups):
                got = {}
                first_mine = (gi + r) % 2 == 0
                for who in ((mine, other) if first_mine else (other, mine)):
                    self.stfs = who
                    print("-- round %d, with %s" % (r + 1, who), flush=True)
                    start = len(self.rows)
                    fn()
                    self.unmount_all()
                    got[who] = self.rows[start:]
                self.stfs = mine
                for a, o in zip(got[mine], got[other]):
                    v = values.setdefault(order, (a[0], a[2], [], [], []))
                    v[2].append(a[1])
                    v[3].append(o[1])
                    if o[1]:
                        v[4].append(a[1] / o[1])
                    order += 1
        print("compare: this build (%s) / %s, row by row, medians of %d rounds"
              % (mine, other, rounds))
        for name, unit, a, o, ratios in values.values():
            print("  %-52s %10.2f %10.2f %-5s %6.2fx" % (
                name, statistics.median(a), statistics.median(o), unit,
                statistics.median(ratios) if ratios else float("nan")))

    def cleanup(self):
        for mp in list(self.mounts):
            unmount(mp)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    # ---- reporting ----
    def row(self, name, value, unit, ref=None, ref_name="", target=None, ok=None):
        ratio = value / ref if ref else None
        self.rows.append((name, value, unit, ratio, ref_name, target, ok))
        r = "" if ratio is None else "%.2fx %s" % (ratio, ref_name)
        print("  %-52s %10.2f %-5s %-22s %s" % (name, value, unit, r,
                                              "" if target is None else
                                              "%s %s" % (target, "MET" if ok else "MISSED")),
              flush=True)

    # ---- rows ----
    def read_all_native(self):
        for _, off, size in self.tensors:
            dd(self.model, skip=off, count=size)

    def read_all_files(self, root):
        for name, _, _ in self.tensors:
            dd(os.path.join(root, name))

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

    def fio(self, path, jobs, seconds=3, invalidate=True, offset=0, size=None):
        args = ["fio", "--name=r", "--filename=" + path, "--rw=randread", "--bs=4k",
                "--ioengine=psync", "--numjobs=%d" % jobs, "--group_reporting",
                "--time_based", "--runtime=%d" % seconds, "--output-format=json",
                "--invalidate=%d" % (1 if invalidate else 0), "--fadvise_hint=1"]
        if offset:
            args.append("--offset=%d" % offset)
        if size:
            args.append("--size=%d" % size)
        out = sh(*args).stdout
        return json.loads(out[out.index("{"):])["jobs"][0]["read"]["iops"]

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

    def packed_read(self, pairs=5):
        """The 1 GiB model as 4 shards: the packed file read whole against
        the same tensors' files in the merged directory, alternating."""
        folder = os.path.join(self.work, "sharded")
        os.mkdir(folder)
        per = len(self.tensors) // 4
        index = {"metadata": {"total_size": sum(x[2] for x in self.tensors)}, "weight_map": {}}
        with open(self.model, "rb") as src:
            for k in range(4):
                part = self.tensors[k * per:(k + 1) * per]
                shard = "model-%05d-of-00004.safetensors" % (k + 1)
                header, off = {}, 0
                for name, _, size in part:
                    header[name] = {"dtype": "BF16", "shape": [size // 2],
                                    "data_offsets": [off, off + size]}
                    off += size
                    index["weight_map"][name] = shard
                text = json.dumps(header).encode()
                text += b" " * (-len(text) % 8)
                with open(os.path.join(folder, shard), "wb") as out:
                    out.write(struct.pack("<Q", len(text)) + text)
                    for _, aoff, size in part:
                        src.seek(aoff)
                        out.write(src.read(size))
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f)
        mp, p = self.mount_stfs(folder, "-o", "packed")
        packed = os.path.join(mp, "__packed__", "model.safetensors")
        merged = os.path.join(mp, "model.safetensors")
        total = os.path.getsize(packed) / GiB

        def warm_shards():
            for f in os.listdir(folder):
                warm(os.path.join(folder, f))

        a, b, ratios = [], [], []
        for i in range(pairs):
            got = {}
            for name in (("packed", "merged") if i % 2 == 0 else ("merged", "packed")):
                drop_caches()
                warm_shards()
                if name == "packed":
                    got[name] = total / timed(lambda: dd(packed))
                else:
                    got[name] = total / timed(lambda: self.read_all_files(merged))
            a.append(got["packed"])
            b.append(got["merged"])
            ratios.append(got["packed"] / got["merged"])
        rss = kib(proc_status(p.pid)["RssAnon"]) / 1024
        self.umount(mp, p)
        shutil.rmtree(folder)
        print("9. -o packed: the 1 GiB model as 4 shards, %d alternating pairs (GiB/s)" % pairs)
        self.row("packed file, read whole", statistics.median(a), "GiB/s")
        self.row("merged directory, every tensor file", statistics.median(b), "GiB/s")
        self.row("packed / merged", statistics.median(ratios), "x", target=">=0.9x",
                 ok=statistics.median(ratios) >= 0.9)
        self.row("daemon RssAnon after", rss, "MiB")

    def packed_scale(self, shards=100, per=1000):
        """A 100-shard, 100,000-tensor checkpoint: mount time and daemon
        memory with and without -o packed, and --check of the packed file."""
        folder = os.path.join(self.work, "many-shards")
        os.mkdir(folder)
        wm = {}
        for k in range(shards):
            shard = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
            header = {}
            for j in range(per):
                name = "model.layers.%d.experts.%d.w%d.weight" % (k, j // 10, j % 10)
                header[name] = {"dtype": "F16", "shape": [4], "data_offsets": [8 * j, 8 * j + 8]}
                wm[name] = shard
            text = json.dumps(header).encode()
            text += b" " * (-len(text) % 8)
            with open(os.path.join(folder, shard), "wb") as f:
                f.write(struct.pack("<Q", len(text)) + text + bytes(8 * per))
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 8 * per * shards}, "weight_map": wm}, f)
        res = {}
        for label, opts in (("plain", ()), ("packed", ("-o", "packed"))):
            times, rss = [], []
            for _ in range(self.runs):
                t = time.perf_counter()
                mp, p = self.mount_stfs(folder, *opts)
                times.append(time.perf_counter() - t)
                rss.append(kib(proc_status(p.pid)["RssAnon"]) / 1024)
                if label == "packed":
                    packed = os.path.join(mp, "__packed__", "model.safetensors")
                    r = subprocess.run([self.stfs, "--check", packed], capture_output=True,
                                       text=True)
                    if r.returncode != 0 or "100000 tensors" not in r.stdout:
                        raise RuntimeError("packed file does not check: " + r.stdout)
                self.umount(mp, p)
            res[label] = (statistics.median(times), statistics.median(rss))
        shutil.rmtree(folder)
        print("10. -o packed at scale: %d shards, %d tensors" % (shards, shards * per))
        self.row("mount, merged view only", res["plain"][0] * 1000, "ms")
        self.row("mount, with -o packed", res["packed"][0] * 1000, "ms", res["plain"][0] * 1000,
                 "no packed")
        self.row("daemon RssAnon, merged view only", res["plain"][1], "MiB")
        self.row("daemon RssAnon, with -o packed", res["packed"][1], "MiB")

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

    def memory_after_model(self):
        # Read everything once more through the daemon (cache dropped), then
        # look at the daemon's anonymous memory and page tables.
        pid = self.procs[self.mounts.index(self.stfs_mp)].pid
        drop_caches()
        self.read_all_files(self.stfs_mp)
        st = proc_status(pid)
        print("5. daemon memory")
        limit = 32 * 1024 + 4 * os.path.getsize(self.model) // 1024 // 1024  # header is tiny
        header_kib = 4 * (struct.unpack("<Q", open(self.model, "rb").read(8))[0]) / 1024
        self.row("RssAnon after reading the 1 GiB model", kib(st["RssAnon"]) / 1024, "MiB",
                 target="<=32MiB+4xhdr",
                 ok=kib(st["RssAnon"]) <= 32 * 1024 + header_kib)
        self.row("VmPTE after reading the 1 GiB model", kib(st["VmPTE"]), "KiB")
        del limit

    def big_header(self):
        print("4. 100,000-tensor header (%.1f MB)" % (self.big_header_size / 1e6))
        mount_t, check_t, ls_cold, ls_warm, find_t, rss, pte = [], [], [], [], [], [], []
        for _ in range(self.runs):
            check_t.append(timed(lambda: sh(self.stfs, "--check", self.big)))
            mp = tempfile.mkdtemp(prefix="stfs-big-", dir=self.work)
            t = time.perf_counter()
            sh(self.stfs, self.big, mp)  # returns once the mount answers
            mount_t.append(time.perf_counter() - t)
            ls_cold.append(timed(lambda: subprocess.run(["ls", "-l", mp], stdout=subprocess.DEVNULL,
                                                        check=True)))
            ls_warm.append(timed(lambda: subprocess.run(["ls", "-l", mp], stdout=subprocess.DEVNULL,
                                                        check=True)))
            find_t.append(timed(lambda: subprocess.run("find %s -type f | wc -l" % mp, shell=True,
                                                       stdout=subprocess.DEVNULL, check=True)))
            pid = next(int(p) for p in os.listdir("/proc") if p.isdigit() and
                       _cmdline(int(p)).endswith(mp))
            st = proc_status(pid)
            rss.append(kib(st["RssAnon"]) / 1024)
            pte.append(kib(st["VmPTE"]))
            unmount(mp)
            deadline = time.monotonic() + 20
            while os.path.exists("/proc/%d" % pid) and not _zombie(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.rmdir(mp)
        # The same 100,000 names as empty files on tmpfs: what `ls -l` costs
        # without FUSE on this machine.
        shm = tempfile.mkdtemp(prefix="stfs-ls-", dir="/dev/shm")
        try:
            with open(self.big, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                names = list(json.loads(f.read(n)))
            for name in names:
                open(os.path.join(shm, name), "wb").close()
            tmpfs_ls = []
            for _ in range(self.runs):
                tmpfs_ls.append(timed(lambda: subprocess.run(["ls", "-l", shm],
                                                             stdout=subprocess.DEVNULL,
                                                             check=True)))
        finally:
            shutil.rmtree(shm, ignore_errors=True)
        m, c = statistics.median(mount_t) * 1e3, statistics.median(check_t) * 1e3
        self.row("stfs --check", c, "ms")
        self.row("mount (start to answering)", m, "ms", c, "--check", "<=300ms,<=2x check",
                 m <= 300 and m <= 2 * c)
        lc, lw = statistics.median(ls_cold), statistics.median(ls_warm)
        self.row("ls -l, first", lc, "s", target="<=1s", ok=lc <= 1)
        self.row("ls -l, second", lw, "s", target="<=0.2s", ok=lw <= 0.2)
        t = statistics.median(tmpfs_ls)
        self.row("ls -l of the same names on tmpfs (no FUSE)", t, "s")
        self.row("find -type f | wc -l", statistics.median(find_t), "s")
        limit = 32 + 4 * self.big_header_size / MiB
        r = statistics.median(rss)
        self.row("daemon RssAnon after mount + ls -l", r, "MiB", target="<=%.0fMiB" % limit,
                 ok=r <= limit)
        self.row("daemon VmPTE after mount + ls -l", statistics.median(pte), "KiB")


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().rstrip(b"\0").decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


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
