"""Sources on shared storage (issue 14), with FUSE filesystems standing in for
NFS and friends: bindfs (plain and direct_io) and squashfuse_ll. A change
made in bindfs's underlying folder is like one made by another NFS client:
inotify on the mount never sees it."""
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import stfs_testlib as lib
from stfs_testlib import Mount

# These tests read a folder's tensors at X.safetensors/ (stfs_testlib.py).
lib.FOLDER_DEFAULTS = ["-o", "model_dirs"]


def need(tool):
    if shutil.which(tool):
        return
    if os.environ.get("STFS_REQUIRE_FUSE") == "1":
        raise AssertionError("%s missing (scripts/setup.sh installs it)" % tool)
    raise unittest.SkipTest("%s missing" % tool)


class Lower:
    """A lower FUSE filesystem run in the foreground, so the test owns its
    PID (to stop, resume or kill it). Always unmounted."""

    def __init__(self, argv, mountpoint):
        self.mountpoint = mountpoint
        os.makedirs(mountpoint, exist_ok=True)
        self.proc = subprocess.Popen(argv + [mountpoint], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while lib.find_mount(mountpoint) is None:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited: %s" % (argv[0], self.proc.stderr.read()))
            if time.monotonic() > deadline:
                raise AssertionError("%s did not mount" % argv[0])
            time.sleep(0.02)

    def stop(self):
        try:
            os.kill(self.proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        if lib.find_mount(self.mountpoint) is not None:
            if subprocess.run(["fusermount3", "-u", self.mountpoint],
                              capture_output=True).returncode:
                subprocess.run(["fusermount3", "-uz", self.mountpoint], capture_output=True)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()

    def rchar(self):
        with open("/proc/%d/io" % self.proc.pid) as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
        return 0


def make_models(folder, count=3, size=1 << 20, seed=0):
    """count models m0..m{n-1}.safetensors of 4 tensors each; returns
    {(file, tensor): bytes}."""
    want = {}
    for i in range(count):
        tensors = [("t%d" % j, "U8", [size // 4], lib.random_bytes(size // 4, seed + 10 * i + j))
                   for j in range(4)]
        lib.write_safetensors(os.path.join(folder, "m%d.safetensors" % i), tensors)
        for name, _, _, blob in tensors:
            want[("m%d.safetensors" % i, name)] = blob
    return want


def read(path):
    with open(path, "rb") as f:
        return f.read()


# How long an answer from memory may take while the source is stopped. The
# stopped source holds a request that waits on it until SIGCONT, for the
# whole test: any bound tells the two apart, and this one leaves room for a
# sanitizer build under ctest -j2 (1 s failed there once).
ANSWER_LIMIT = 5.0


def timed(fn, limit):
    """Runs fn in a thread; (result, seconds) or raises if it takes over `limit`."""
    out = {}

    def run():
        try:
            out["v"] = fn()
        except OSError as e:
            out["e"] = e

    t = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    t.start()
    t.join(limit)
    if t.is_alive():
        raise AssertionError("took over %.1f s" % limit)
    if "e" in out:
        raise out["e"]
    return out.get("v"), time.monotonic() - start


@lib.require_fuse
class SharedStorage(unittest.TestCase):
    def setUp(self):
        need("bindfs")
        self.tmp = tempfile.mkdtemp(prefix="stfs-shared-")
        self.src = os.path.join(self.tmp, "src")
        os.mkdir(self.src)
        self.lowers = []

    def tearDown(self):
        for lower in reversed(self.lowers):
            lower.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def bindfs(self, *opts):
        lower = Lower(["bindfs", "-f", *opts, self.src],
                      os.path.join(self.tmp, "lower%d" % len(self.lowers)))
        self.lowers.append(lower)
        return lower

    def squashfuse(self):
        need("squashfuse_ll")
        need("mksquashfs")
        img = os.path.join(self.tmp, "img.squashfs")
        subprocess.run(["mksquashfs", self.src, img, "-quiet", "-noappend"], check=True,
                       capture_output=True)
        lower = Lower(["squashfuse_ll", "-f", img], os.path.join(self.tmp, "sq"))
        self.lowers.append(lower)
        return lower

    def check_bytes(self, lower, want):
        with Mount(lower.mountpoint, "-v") as mnt:  # folder mode
            for (f, t), blob in want.items():
                self.assertEqual(read(os.path.join(mnt.path, f, t)), blob, (f, t))
            folder_log = mnt.log()
        for f in {f for f, _ in want}:
            self.assertIn("%s: served with pread (O_DIRECT)" % f, folder_log)
        one = os.path.join(lower.mountpoint, "m1.safetensors")
        with Mount(one, "-v") as mnt:  # file mode
            for (f, t), blob in want.items():
                if f == "m1.safetensors":
                    fd = os.open(os.path.join(mnt.path, t), os.O_RDONLY)
                    try:
                        self.assertEqual(os.pread(fd, 1000, 12345), blob[12345:13345])
                    finally:
                        os.close(fd)
                    self.assertEqual(read(os.path.join(mnt.path, t)), blob)
            log = mnt.log()
        # Every lower here is FUSE: read with O_DIRECT, one large request
        # each, nothing cached twice below.
        self.assertIn("served with pread (O_DIRECT)", log)

    def test_exact_bytes_over_bindfs(self):
        want = make_models(self.src)
        self.check_bytes(self.bindfs(), want)

    def test_exact_bytes_over_bindfs_direct_io(self):
        want = make_models(self.src)
        lower = self.bindfs("-o", "direct_io")
        # The kernel refuses a shared mapping here; stfs must not need one.
        self.check_bytes(lower, want)
        r = lib.run_stfs("-o", "read_path=mmap", os.path.join(lower.mountpoint, "m0.safetensors"),
                         os.path.join(self.tmp, "x"))
        self.assertNotEqual(r.returncode, 0)

    def test_exact_bytes_over_squashfuse(self):
        want = make_models(self.src)
        self.check_bytes(self.squashfuse(), want)

    def test_o_direct_refused_below_falls_back_to_buffered_reads(self):
        # alignfs hands O_DIRECT on as a passthrough over ext4 or XFS would:
        # unaligned direct reads fail with EINVAL there.
        alignfs = os.environ.get("STFS_ALIGNFS", "")
        if not os.access(alignfs, os.X_OK):
            if os.environ.get("STFS_REQUIRE_FUSE") == "1":
                raise AssertionError("STFS_ALIGNFS not built (ctest sets it)")
            raise unittest.SkipTest("STFS_ALIGNFS not set")
        want = make_models(self.src, count=2, size=1 << 20)
        lower = Lower([alignfs, self.src, "-f"], os.path.join(self.tmp, "align"))
        self.lowers.append(lower)
        one = os.path.join(lower.mountpoint, "m1.safetensors")
        fd = os.open(one, os.O_RDONLY | os.O_DIRECT)
        try:  # the helper does refuse it
            with self.assertRaises(OSError) as cm:
                os.pread(fd, 100, 8)
            self.assertEqual(cm.exception.errno, errno.EINVAL)
        finally:
            os.close(fd)
        for source in (lower.mountpoint, one):
            with Mount(source, "-v") as mnt:
                for (f, t), blob in want.items():
                    if source == one and f != "m1.safetensors":
                        continue
                    path = os.path.join(mnt.path, t) if source == one else os.path.join(mnt.path, f, t)
                    self.assertEqual(read(path), blob, (source, f, t))
                log = mnt.log()
            self.assertIn("O_DIRECT reads refused below", log)

    def test_forced_read_paths_give_the_same_bytes(self):
        want = make_models(self.src, count=1)
        lower = self.bindfs()
        for how in ("mmap", "pread"):
            with Mount(lower.mountpoint, "-o", "read_path=" + how) as mnt:
                for (f, t), blob in want.items():
                    self.assertEqual(read(os.path.join(mnt.path, f, t)), blob)

    def test_truncation_below_gives_eio_never_zeros(self):
        want = make_models(self.src, count=1)
        lower = self.bindfs("-o", "direct_io")
        with Mount(lower.mountpoint, "-o", "poll=0") as mnt:
            _, _, start = lib.read_header(os.path.join(self.src, "m0.safetensors"))
            quarter = (1 << 20) // 4
            os.truncate(os.path.join(self.src, "m0.safetensors"), start + quarter + 10)
            for t in ("t1", "t2", "t3"):
                got = None
                try:
                    got, _ = timed(lambda: read(os.path.join(mnt.path, "m0.safetensors", t)), 10)
                except OSError as e:
                    self.assertEqual(e.errno, errno.EIO)
                self.assertIn(got, (None, want[("m0.safetensors", t)]))
            self.assertEqual(read(os.path.join(mnt.path, "m0.safetensors", "t0")),
                             want[("m0.safetensors", "t0")])

    def test_lower_daemon_death_gives_errors_not_hangs(self):
        make_models(self.src, count=2)
        lower = self.bindfs()
        with Mount(lower.mountpoint, "-o", "poll=0", "-v") as mnt:
            # Once the watcher runs: a lower that dies while the mount comes
            # up is a change of the source (libfuse 3.17's bindfs is then
            # unmounted and empty), not what this test is about.
            os.listdir(mnt.path)
            self.assertTrue(lib.wait_for(lambda: "watching for changes" in mnt.log(), 10))
            os.kill(lower.proc.pid, signal.SIGKILL)
            lower.proc.wait()
            with self.assertRaises(OSError):
                timed(lambda: read(os.path.join(mnt.path, "m0.safetensors", "t2")), 10)
            names, took = timed(lambda: os.listdir(mnt.path), 5)
            self.assertIn("m1.safetensors", names)
            header, _ = timed(lambda: read(os.path.join(mnt.path, "m1.safetensors",
                                                        "__header__.json")), 5)
            self.assertIn(b"t3", header)
        # A source that exists but cannot be read is an I/O failure: exit 3.
        mp = os.path.join(self.tmp, "mp")
        os.mkdir(mp)
        r = lib.run_stfs(os.path.join(lower.mountpoint, "m0.safetensors"), mp)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("m0.safetensors", r.stderr)
        self.assertIn("not connected", r.stderr)

    def test_stalled_source_never_blocks_memory_answers(self):
        want = make_models(self.src, count=17, size=1 << 18)
        lower = self.bindfs()
        with Mount(lower.mountpoint, "-o", "poll=0") as mnt:
            cached = os.path.join(mnt.path, "m16.safetensors", "t0")
            self.assertEqual(read(cached), want[("m16.safetensors", "t0")])
            os.kill(lower.proc.pid, signal.SIGSTOP)
            results, threads = {}, []
            try:
                for i in range(16):  # twice the default threads=8
                    p = os.path.join(mnt.path, "m%d.safetensors" % i, "t1")

                    def reader(p=p, i=i):
                        try:
                            results[i] = read(p)
                        except OSError as e:
                            results[i] = e

                    t = threading.Thread(target=reader, daemon=True)
                    t.start()
                    threads.append(t)
                time.sleep(1.0)
                self.assertTrue(all(t.is_alive() for t in threads), "readers did not block")
                names, took = timed(lambda: os.listdir(mnt.path), ANSWER_LIMIT)
                self.assertEqual(len(names), 17)
                timed(lambda: os.stat(os.path.join(mnt.path, "m5.safetensors", "t3")),
                      ANSWER_LIMIT)
                data, _ = timed(lambda: read(cached), ANSWER_LIMIT)
                self.assertEqual(data, want[("m16.safetensors", "t0")])
                timed(lambda: read(os.path.join(mnt.path, "m3.safetensors",
                                                "__metadata__.json")), ANSWER_LIMIT)
                timed(lambda: os.listxattr(os.path.join(mnt.path, "m7.safetensors", "t2")),
                      ANSWER_LIMIT)
            finally:
                os.kill(lower.proc.pid, signal.SIGCONT)
                for t in threads:
                    t.join(30)
            for i in range(16):
                self.assertEqual(results[i], want[("m%d.safetensors" % i, "t1")], i)

    def test_changes_below_are_seen_within_poll_plus_two_seconds(self):
        make_models(self.src, count=1)
        lower = self.bindfs()
        with Mount(lower.mountpoint) as mnt:  # poll defaults to 5 s on FUSE
            old = read(os.path.join(mnt.path, "m0.safetensors", "t0"))
            t0 = time.monotonic()
            lib.write_safetensors(os.path.join(self.src, "added.safetensors"),
                                  [("a", "U8", [3], b"new")])
            tmp = os.path.join(self.src, ".m0.tmp")
            lib.write_safetensors(tmp, [("t0", "U8", [4], b"repl")])
            os.rename(tmp, os.path.join(self.src, "m0.safetensors"))
            deadline = t0 + 5 + 2
            while time.monotonic() < deadline:
                names = os.listdir(mnt.path)
                if "added.safetensors" in names:
                    try:
                        if read(os.path.join(mnt.path, "m0.safetensors", "t0")) == b"repl":
                            break
                    except OSError:
                        pass
                time.sleep(0.1)
            self.assertIn("added.safetensors", os.listdir(mnt.path))
            self.assertEqual(read(os.path.join(mnt.path, "added.safetensors", "a")), b"new")
            self.assertEqual(read(os.path.join(mnt.path, "m0.safetensors", "t0")), b"repl")
            self.assertNotEqual(old, b"repl")

    def drop_pages_and_stat_below(self, fd, below):
        """Drops the mount's cached pages of `fd`, then stats `below` (on
        bindfs) past bindfs's 1 s attribute cache time, so that the stat
        asks bindfs: its one inode for the path, which the old file open
        below us shares, takes the new file's size. Returns that size."""
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        time.sleep(1.2)
        return os.stat(below).st_size

    def wait_for(self, path, want, deadline):
        """Reads `path` until it gives `want` or the deadline passes."""
        while time.monotonic() < deadline:
            try:
                if read(path) == want:
                    return
            except OSError:
                pass
            time.sleep(0.1)

    def test_single_file_replaced_below_switches_between_reads_not_during(self):
        want = make_models(self.src, count=1)
        lower = self.bindfs()
        src = os.path.join(lower.mountpoint, "m0.safetensors")
        with Mount(src, "-v") as mnt:  # poll defaults to 5 s on FUSE
            t0 = os.path.join(mnt.path, "t0")
            old = want[("m0.safetensors", "t0")]
            fd = os.open(t0, os.O_RDONLY)
            try:
                self.assertEqual(os.pread(fd, 4096, 0), old[:4096])
                start = time.monotonic()
                tmp = os.path.join(self.src, ".m0.tmp")
                lib.write_safetensors(tmp, [("t0", "U8", [4], b"repl"), ("t9", "U8", [2], b"hi")])
                os.rename(tmp, os.path.join(self.src, "m0.safetensors"))
                self.wait_for(t0, b"repl", start + 5 + 2)
                self.assertEqual(read(t0), b"repl")
                self.assertEqual(sorted(os.listdir(mnt.path)),
                                 ["__header__.json", "__metadata__.json", "t0", "t9"])
                self.assertEqual(read(os.path.join(mnt.path, "t9")), b"hi")
                # The reader that opened the old file goes on reading it, whole,
                # from the daemon rather than from the pages the kernel kept.
                self.assertEqual(self.drop_pages_and_stat_below(fd, src),
                                 os.path.getsize(os.path.join(self.src, "m0.safetensors")))
                self.assertEqual(os.pread(fd, len(old), 0), old)
                self.assertEqual(os.fstat(fd).st_size, len(old))
            finally:
                os.close(fd)
            self.assertIn("compared for changes every 5 s", mnt.log())

    def test_folder_file_replaced_below_keeps_its_old_readers(self):
        want = make_models(self.src, count=2)
        lower = self.bindfs()
        with Mount(lower.mountpoint) as mnt:  # poll defaults to 5 s on FUSE
            path = os.path.join(mnt.path, "m1.safetensors", "t2")
            old = want[("m1.safetensors", "t2")]
            fd = os.open(path, os.O_RDONLY)
            try:
                self.assertEqual(os.pread(fd, 4096, 0), old[:4096])
                tmp = os.path.join(self.src, ".m1.tmp")
                lib.write_safetensors(tmp, [("t2", "U8", [3], b"new")])
                os.rename(tmp, os.path.join(self.src, "m1.safetensors"))
                self.wait_for(path, b"new", time.monotonic() + 5 + 2)
                self.assertEqual(read(path), b"new")
                # The old reader still reads it all, from the daemon.
                below = os.path.join(lower.mountpoint, "m1.safetensors")
                self.assertEqual(self.drop_pages_and_stat_below(fd, below),
                                 os.path.getsize(os.path.join(self.src, "m1.safetensors")))
                self.assertEqual(os.pread(fd, len(old), 0), old)
                self.assertEqual(read(os.path.join(mnt.path, "m0.safetensors", "t2")),
                                 want[("m0.safetensors", "t2")])
            finally:
                os.close(fd)

    def test_single_file_that_vanishes_below_comes_back(self):
        make_models(self.src, count=1)
        lower = self.bindfs()
        path = os.path.join(self.src, "m0.safetensors")
        with Mount(os.path.join(lower.mountpoint, "m0.safetensors"), "-o", "poll=1") as mnt:
            t0 = os.path.join(mnt.path, "t0")
            os.unlink(path)
            time.sleep(2.5)  # a poll or two with nothing there: the old tree stays
            self.assertIn("t0", os.listdir(mnt.path))
            start = time.monotonic()
            lib.write_safetensors(path, [("t0", "U8", [5], b"again")])
            self.wait_for(t0, b"again", start + 1 + 2)
            self.assertEqual(read(t0), b"again")
            log = mnt.log()
        self.assertIn("cannot be read again", log)

    def test_local_single_file_is_not_polled(self):
        want = make_models(self.src, count=1)
        path = os.path.join(self.src, "m0.safetensors")
        with Mount(path, "-v") as mnt:
            tmp = os.path.join(self.src, ".m0.tmp")
            lib.write_safetensors(tmp, [("t0", "U8", [4], b"repl")])
            os.rename(tmp, path)
            time.sleep(1)
            self.assertEqual(read(os.path.join(mnt.path, "t0")), want[("m0.safetensors", "t0")])
            self.assertNotIn("compared for changes", mnt.log())

    def test_mounting_reads_headers_not_tensors(self):
        make_models(self.src, count=3, size=16 << 20)
        lower = self.bindfs("-o", "direct_io")  # no readahead below: counts are exact
        before = lower.rchar()
        with Mount(lower.mountpoint, "-o", "poll=0") as mnt:
            subprocess.run(["ls", "-lR", mnt.path], check=True, capture_output=True)
            served = lower.rchar() - before
        headers = sum(lib.read_header(os.path.join(self.src, "m%d.safetensors" % i))[2]
                      for i in range(3))
        # Headers plus FUSE request traffic; the tensors are 48 MiB.
        self.assertLess(served, headers + (256 << 10), served)


if __name__ == "__main__":
    unittest.main()
