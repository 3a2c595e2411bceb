#!/usr/bin/python3
"""Rows of scripts/bench.py about whole models: the packed view read whole
and at scale, the daemon's memory after a model, and a 100,000-tensor
header (mount time, ls -l)."""
import json
import os
import shutil
import statistics
import struct
import subprocess
import tempfile
import time

from bench_common import (GiB, MiB, _cmdline, _zombie, dd, drop_caches, kib, proc_status, sh,
                          timed, unmount, warm)


class ModelRows:
    """Rows over a BenchCore (bench_common.py): its mounts, timers, table."""

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
