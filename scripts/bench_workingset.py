#!/usr/bin/python3
"""Working-set demonstration for issue 16 (not a test): the stfs daemon and a
reader share one memory cgroup whose limit lies between 1x and 2x a tensor
file's size. The reader reads the tensor file again and again. With the
source's own cached copy kept (source_cache=keep) both copies are charged to
the group and do not fit; with it dropped (the default) one copy does.
Prints throughput of the re-reads and the group's page-cache evictions.
Needs root; cgroup v2 (memory.max) or v1 (memory.limit_in_bytes).
Usage: scripts/bench_workingset.py [--stfs build/stfs] [--mib 512] [--reads 5]"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20


def cgroup(name, limit):
    v2 = "/sys/fs/cgroup/cgroup.controllers"
    if os.path.exists(v2) and "memory" in open(v2).read():
        path = os.path.join("/sys/fs/cgroup", name)
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, "memory.max"), "w").write(str(limit))
        return path, "cgroup.procs", "memory.stat"
    path = os.path.join("/sys/fs/cgroup/memory", name)
    os.makedirs(path, exist_ok=True)
    open(os.path.join(path, "memory.limit_in_bytes"), "w").write(str(limit))
    return path, "cgroup.procs", "memory.stat"


def stat(path, name):
    for line in open(os.path.join(path, "memory.stat")):
        k, v = line.split()
        if k in name:
            return int(v)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stfs", default="build/stfs")
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--reads", type=int, default=5)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    work = tempfile.mkdtemp(prefix="stfs-ws-", dir="/var/tmp")
    try:
        src = os.path.join(work, "m.safetensors")
        size = a.mib * MiB
        hdr = b'{"w":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (size, size)
        hdr += b" " * (-len(hdr) % 8)
        with open(src, "wb") as f:
            f.write(struct.pack("<Q", len(hdr)) + hdr)
            for _ in range(a.mib):
                f.write(os.urandom(MiB))
        limit = int(size * 1.5)
        print("workingset: tensor %d MiB, group limit %d MiB (1.5x), %d re-reads, %s"
              % (a.mib, limit // MiB, a.reads, time.strftime("%Y-%m-%d")))
        for mode in ("keep", "drop"):
            mp = os.path.join(work, "mnt-" + mode)
            os.mkdir(mp)
            path, procs, _ = cgroup("stfs-ws-" + mode, limit)
            os.sync()
            open("/proc/sys/vm/drop_caches", "w").write("1\n")

            def enter():
                open(os.path.join(path, procs), "w").write(str(os.getpid()))

            d = subprocess.Popen([os.path.abspath(a.stfs), "-f", "-o", "source_cache=" + mode,
                                  src, mp], preexec_fn=enter, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            while not os.path.ismount(mp):
                time.sleep(0.02)
            rates = []
            for _ in range(a.reads + 1):
                t = time.perf_counter()
                subprocess.run(["dd", "if=" + os.path.join(mp, "w"), "of=/dev/null", "bs=1M",
                                "status=none"], preexec_fn=enter, check=True)
                rates.append(size / MiB / (time.perf_counter() - t))
            evicted = stat(path, ("workingset_refault", "total_workingset_refault",
                                  "workingset_refault_file"))
            subprocess.run(["fusermount3", "-u", mp])
            d.wait()
            rest = sorted(rates[1:])
            print("  source_cache=%s: first read %.0f MiB/s, re-reads median %.0f MiB/s"
                  " (min %.0f), refaults %d" % (mode, rates[0], rest[len(rest) // 2], rest[0],
                                                evicted))
            os.rmdir(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
