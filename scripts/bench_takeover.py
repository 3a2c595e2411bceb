#!/usr/bin/env python3
"""The pause a takeover costs readers (supervisor.hpp): not a test.

Four reader threads read a mount without pause (each pread drops the file's
cached pages first, so it reaches the daemon). The daemon is then SIGKILLed
KILLS times, and replaced with `stfs --restart` RESTARTS times, a second
apart. A pause is the longest time without a completed read around the kill
(or the restart): the stall that readers see. Reads complete every few
hundred microseconds between events. Prints p50, p99
and max per source:
  - a file source (one 64 MiB model of 8 tensors);
  - a folder of 1,000 models (one tensor each).
Targets (issue 33): p99 <= 100 ms for the file, <= 300 ms for the folder.

Usage: scripts/bench_takeover.py [--stfs build/stfs] [--kills 30] [--restarts 10]
"""
import argparse
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time


def write_model(path, tensors):
    header = {}
    off = 0
    for name, data in tensors:
        header[name] = {"dtype": "U8", "shape": [len(data)], "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, data in tensors:
            f.write(data)


def tensor_dir(mnt, model):
    """X.safetensors.d/ in the loader layout, X.safetensors/ in the other."""
    d = os.path.join(mnt, model + ".d")
    return d if os.path.isdir(d) else os.path.join(mnt, model)


def find_mount(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def children(pid):
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(p))
    return out


class Readers:
    def __init__(self, files):
        self.files = files
        self.done = []  # completion times of good reads
        self.errors = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(4)]

    def loop(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            path = rng.choice(self.files)
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    os.pread(fd, 65536, 0)
                finally:
                    os.close(fd)
            except OSError:
                with self.lock:
                    self.errors += 1
                continue
            with self.lock:
                self.done.append(time.monotonic())

    def pause_after(self, t, window=0.8):
        """The longest time without a completed read, from the last read
        before `t` over `window` seconds after it: the stall readers saw."""
        time.sleep(max(0.0, t + window - time.monotonic()))
        with self.lock:
            before = [d for d in self.done if d <= t]
            around = ([before[-1]] if before else [t]) + [d for d in self.done if t < d <= t + window]
        if len(around) < 2:
            return float("inf")
        return max(b - a for a, b in zip(around, around[1:]))


def quantiles(xs):
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))] * 1000
    return "p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms  (n=%d)" % (q(0.5), q(0.99), xs[-1] * 1000, len(xs))


def measure(stfs, source, files_of, kills, restarts):
    mnt = tempfile.mkdtemp(prefix="stfs-bench-mnt-")
    sup = subprocess.Popen([stfs, "-f", source, mnt], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        while not find_mount(mnt):
            time.sleep(0.01)
        readers = Readers(files_of(mnt))
        for t in readers.threads:
            t.start()
        time.sleep(0.5)
        kill_pauses, restart_pauses = [], []
        for _ in range(kills):
            daemon = [p for p in children(sup.pid)]
            t = time.monotonic()
            os.kill(daemon[0], signal.SIGKILL)
            kill_pauses.append(readers.pause_after(t))
            time.sleep(0.2)
        for _ in range(restarts):
            t = time.monotonic()
            subprocess.run([stfs, "--restart", mnt], check=True, capture_output=True)
            restart_pauses.append(readers.pause_after(t, 0.8 + 0.5))
            time.sleep(0.2)
        readers.stop.set()
        for t in readers.threads:
            t.join()
        return kill_pauses, restart_pauses, readers.errors
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        try:
            sup.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sup.kill()
        os.rmdir(mnt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stfs", default="build/stfs")
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--restarts", type=int, default=10)
    a = ap.parse_args()
    stfs = os.path.abspath(a.stfs)
    print("machine: %s, %d CPUs, kernel %s; %s" % (os.uname().nodename, os.cpu_count(),
                                                   os.uname().release, time.strftime("%Y-%m-%d")))
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "m.safetensors")
        write_model(src, [("t%d" % i, os.urandom(8 << 20)) for i in range(8)])
        folder = os.path.join(d, "models")
        os.mkdir(folder)
        for i in range(1000):
            write_model(os.path.join(folder, "m%04d.safetensors" % i), [("w", os.urandom(65536))])
        for label, source, files_of, target in (
                ("file source", src, lambda m: [os.path.join(m, "t%d" % i) for i in range(8)], 100),
                ("folder of 1,000 models", folder,
                 lambda m: [tensor_dir(m, "m%04d.safetensors" % i) + "/w" for i in range(0, 1000, 37)],
                 300)):
            kills, restarts, errors = measure(stfs, source, files_of, a.kills, a.restarts)
            print("%-24s SIGKILL  %s  target p99 <= %d ms" % (label, quantiles(kills), target))
            print("%-24s restart  %s" % ("", quantiles(restarts)))
            print("%-24s reader errors: %d" % ("", errors))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
