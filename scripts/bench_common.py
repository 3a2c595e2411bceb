#!/usr/bin/python3
"""What every bench script shares: the scratch models, mounts of stfs and
squashfuse_ll, caches dropped and warmed, timers, fio, and the table of
rows with their peers and targets (docs/PERFORMANCE.md)."""
import json
import os
import shutil
import statistics
import struct
import subprocess
import tempfile
import time

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


class BenchCore:
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
