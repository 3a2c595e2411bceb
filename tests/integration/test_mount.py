"""Real mounts of single safetensors files: layout, bytes, attributes,
xattrs, read-only behaviour, truncation, failures and signals. Every byte is
checked against an independent reading of the source (stfs_testlib)."""
import errno
import json
import mmap
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import stfs_testlib as lib  # noqa: E402
from stfs_testlib import Mount  # noqa: E402


def check_mount_matches_source(tc, mnt, source):
    """Listing, sizes, bytes, xattrs and both JSON files of a mount."""
    header, meta, start = lib.read_header(source)
    root = os.fsencode(mnt.path)
    expected = {lib.map_name(n): n for n in header}
    tc.assertEqual(len(expected), len(header), "mapping collided")
    listing = set(os.listdir(root))
    tc.assertEqual(listing, set(expected) | {b"__header__.json", b"__metadata__.json"})
    for fname, name in expected.items():
        p = os.path.join(root, fname)
        entry = header[name]
        want = lib.tensor_bytes(source, entry, start)
        st = os.stat(p)
        tc.assertEqual(st.st_size, len(want), name)
        tc.assertTrue(stat.S_ISREG(st.st_mode))
        with open(p, "rb") as f:
            tc.assertEqual(f.read(), want, name)
        tc.assertEqual(os.getxattr(p, "user.stfs.name"), name.encode())
        tc.assertEqual(os.getxattr(p, "user.stfs.dtype").decode(), entry["dtype"])
        tc.assertEqual(json.loads(os.getxattr(p, "user.stfs.shape")), entry["shape"])
        tc.assertEqual(json.loads(os.getxattr(p, "user.stfs.data_offsets")),
                       entry["data_offsets"])
        tc.assertEqual(int(os.getxattr(p, "user.stfs.offset")),
                       start + entry["data_offsets"][0])
    with open(os.path.join(root, b"__header__.json"), "rb") as f:
        text = f.read()
    tc.assertTrue(text.endswith(b"\n"))
    got = json.loads(text)
    got_meta = got.pop("__metadata__", None)
    tc.assertEqual(got, header)
    tc.assertEqual(got_meta, meta)
    with open(os.path.join(root, b"__metadata__.json"), "rb") as f:
        tc.assertEqual(json.loads(f.read()), meta if meta is not None else {})


@lib.require_fuse
class CorpusMounts(unittest.TestCase):
    def test_every_corpus_file_and_the_sample(self):
        files = lib.corpus_files() + [lib.SAMPLE]
        for source in files:
            with self.subTest(source=os.path.basename(source)):
                with Mount(source) as mnt:
                    check_mount_matches_source(self, mnt, source)
                    self.assertEqual(mnt.log(), "")


@lib.require_fuse
class SampleMount(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="stfs-src-")
        os.chmod(cls.tmp, 0o755)  # others may search it: the modes below depend on that
        cls.source = os.path.join(cls.tmp, "model.safetensors")
        shutil.copy(lib.SAMPLE, cls.source)
        os.chmod(cls.source, 0o644)
        cls.header, cls.meta, cls.start = lib.read_header(cls.source)
        cls.mnt = Mount(cls.source)
        cls.mnt.start()

    @classmethod
    def tearDownClass(cls):
        status = cls.mnt.stop()
        shutil.rmtree(cls.tmp)
        cls.mnt.check_clean_exit(status)

    def path(self, name):
        return os.path.join(self.mnt.path, name)

    def bytes_of(self, name):
        return lib.tensor_bytes(self.source, self.header[name], self.start)

    def test_mount_table_shows_type_and_source(self):
        m = lib.find_mount(self.mnt.path)
        self.assertEqual(m["fstype"], "fuse.stfs")
        self.assertEqual(m["source"], self.source)
        opts = m["options"].split(",")
        for o in ("ro", "nodev", "nosuid"):
            self.assertIn(o, opts)
        out = subprocess.run(["mount"], capture_output=True, text=True).stdout
        self.assertIn("%s on %s type fuse.stfs (ro," % (self.source, self.mnt.path), out)

    def test_attributes(self):
        src = os.stat(self.source)
        st = os.stat(self.path("lm_head.weight"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o444)
        self.assertEqual((st.st_uid, st.st_gid), (src.st_uid, src.st_gid))
        self.assertEqual(st.st_mtime_ns, src.st_mtime_ns)
        self.assertEqual(st.st_nlink, 1)
        self.assertEqual(st.st_blksize, 1 << 20)
        self.assertEqual(st.st_blocks, (st.st_size + 511) // 512)
        d = os.stat(self.mnt.path)
        self.assertTrue(stat.S_ISDIR(d.st_mode))
        self.assertEqual(stat.S_IMODE(d.st_mode), 0o555)
        du = subprocess.run(["du", "-sb", self.mnt.path], capture_output=True, text=True)
        total = sum(os.stat(self.path(f)).st_size for f in os.listdir(self.mnt.path))
        self.assertEqual(int(du.stdout.split()[0]), total)

    def test_statfs(self):
        s = os.statvfs(self.mnt.path)
        self.assertEqual(s.f_namemax, 255)
        self.assertEqual(s.f_files, len(os.listdir(self.mnt.path)) + 1)
        total = sum(os.stat(self.path(f)).st_size for f in os.listdir(self.mnt.path))
        self.assertEqual(s.f_blocks * s.f_frsize, (total + 511) // 512 * 512)
        self.assertTrue(s.f_flag & os.ST_RDONLY)

    def test_readdir_sorted_with_dots_and_stable_inodes(self):
        out = subprocess.run(["ls", "-a", "-f", self.mnt.path], capture_output=True, text=True)
        names = out.stdout.split()
        self.assertEqual(names[:2], [".", ".."])
        self.assertEqual(names[2:], sorted(names[2:]))
        inos = {n: os.stat(self.path(n)).st_ino for n in names[2:]}
        self.assertEqual(len(set(inos.values())), len(inos))
        with Mount(self.source) as again:
            for n, ino in inos.items():
                self.assertEqual(os.stat(os.path.join(again.path, n)).st_ino, ino)

    def test_listxattr_lists_exactly_the_five(self):
        self.assertEqual(sorted(os.listxattr(self.path("lm_head.weight"))),
                         sorted(["user.stfs.name", "user.stfs.dtype", "user.stfs.shape",
                                 "user.stfs.data_offsets", "user.stfs.offset"]))
        with self.assertRaises(OSError) as cm:
            os.getxattr(self.path("lm_head.weight"), "user.other")
        self.assertEqual(cm.exception.errno, errno.ENODATA)
        self.assertEqual(os.listxattr(self.path("__header__.json")), [])
        out = subprocess.run(["getfattr", "-d", self.path("lm_head.weight")],
                             capture_output=True, text=True).stdout
        self.assertIn('user.stfs.dtype="BF16"', out)
        self.assertIn('user.stfs.shape="[256,64]"', out)

    def test_dd_odd_offsets_and_sizes(self):
        name = "model.layers.0.mlp.down_proj.weight"
        want = self.bytes_of(name)
        for bs, skip, count in [(1, 0, 1), (7, 3, 11), (333, 5, 9), (4096, 2, 3),
                                (1000, 21, 5), (1 << 20, 0, 1)]:
            r = subprocess.run(["dd", "if=" + self.path(name), "bs=%d" % bs, "skip=%d" % skip,
                                "count=%d" % count, "status=none"], capture_output=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, want[bs * skip:bs * (skip + count)], (bs, skip, count))

    def test_reads_across_end_of_file(self):
        name = "model.norm.weight"
        want = self.bytes_of(name)
        fd = os.open(self.path(name), os.O_RDONLY)
        try:
            self.assertEqual(os.pread(fd, 100, len(want) - 10), want[-10:])
            self.assertEqual(os.pread(fd, 100, len(want)), b"")
            self.assertEqual(os.pread(fd, 100, len(want) + 4096), b"")
            self.assertEqual(os.pread(fd, 1 << 20, 0), want)
        finally:
            os.close(fd)

    def test_client_mmap(self):
        name = "lm_head.weight"
        with open(self.path(name), "rb") as f:
            with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
                self.assertEqual(m[:], self.bytes_of(name))
                self.assertEqual(m[1000:1010], self.bytes_of(name)[1000:1010])

    def test_numpy_fromfile_and_memmap(self):
        try:
            import numpy as np
        except ImportError:
            self.skipTest("numpy missing")
        name = "model.layers.1.input_layernorm.weight"
        want = np.frombuffer(self.bytes_of(name), dtype="<f4")
        got = np.fromfile(self.path(name), dtype="<f4")
        self.assertTrue(np.array_equal(got, want))
        mm = np.memmap(self.path(name), dtype="<f4", mode="r")
        self.assertTrue(np.array_equal(mm, want))

    def test_cp_r_and_tar(self):
        with tempfile.TemporaryDirectory() as d:
            dst = os.path.join(d, "copy")
            subprocess.run(["cp", "-r", self.mnt.path, dst], check=True)
            for name in self.header:
                with open(os.path.join(dst, lib.map_name(name).decode()), "rb") as f:
                    self.assertEqual(f.read(), self.bytes_of(name))
            r = subprocess.run(["tar", "-cf", os.path.join(d, "t.tar"), "-C", self.mnt.path, "."],
                               capture_output=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = subprocess.run(["diff", "-r", self.mnt.path, dst], capture_output=True)
            self.assertEqual(r.returncode, 0, r.stdout)

    def test_find(self):
        out = subprocess.run(["find", self.mnt.path, "-type", "f"], capture_output=True,
                             text=True).stdout.split()
        self.assertEqual(len(out), len(self.header) + 2)

    def test_eight_threads_random_ranges(self):
        names = list(self.header)
        blobs = {n: self.bytes_of(n) for n in names}
        errors = []

        def worker(seed):
            rng = random.Random(seed)
            fds = {}
            try:
                for _ in range(400):
                    n = rng.choice(names)
                    size = len(blobs[n])
                    off = rng.randrange(0, size + 1)
                    length = rng.randrange(0, 70000)
                    fd = fds.get(n)
                    if fd is None:
                        fd = fds[n] = os.open(self.path(lib.map_name(n).decode()), os.O_RDONLY)
                    got = os.pread(fd, length, off)
                    if got != blobs[n][off:off + length]:
                        errors.append((n, off, length))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
            finally:
                for fd in fds.values():
                    os.close(fd)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertFalse(any(t.is_alive() for t in threads), "a reader hung")
        self.assertEqual(errors, [])

    def assertErrno(self, fn, *allowed):
        with self.assertRaises(OSError) as cm:
            fn()
        self.assertIn(cm.exception.errno, allowed, os.strerror(cm.exception.errno))

    def test_everything_is_read_only(self):
        f = self.path("lm_head.weight")
        EROFS, EACCES = errno.EROFS, errno.EACCES
        self.assertErrno(lambda: os.open(f, os.O_WRONLY), EROFS, EACCES)
        self.assertErrno(lambda: os.open(f, os.O_RDWR), EROFS, EACCES)
        self.assertErrno(lambda: os.open(f, os.O_RDONLY | os.O_TRUNC), EROFS, EACCES)
        self.assertErrno(lambda: os.open(self.path("new"), os.O_CREAT | os.O_WRONLY), EROFS,
                         EACCES)
        self.assertErrno(lambda: os.mkdir(self.path("d")), EROFS, EACCES)
        self.assertErrno(lambda: os.unlink(f), EROFS, EACCES)
        self.assertErrno(lambda: os.rename(f, self.path("x")), EROFS, EACCES)
        self.assertErrno(lambda: os.truncate(f, 0), EROFS, EACCES)
        self.assertErrno(lambda: os.chmod(f, 0o777), EROFS, EACCES)
        self.assertErrno(lambda: os.chown(f, 1, 1), EROFS, EACCES)
        self.assertErrno(lambda: os.utime(f, (1, 1)), EROFS, EACCES)
        self.assertErrno(lambda: os.setxattr(f, "user.stfs.name", b"x"), EROFS, EACCES)
        self.assertErrno(lambda: os.removexattr(f, "user.stfs.name"), EROFS, EACCES)
        self.assertErrno(lambda: os.symlink("x", self.path("l")), EROFS, EACCES)
        self.assertErrno(lambda: os.link(f, self.path("l")), EROFS, EACCES)
        self.assertErrno(lambda: os.rmdir(self.mnt.path), EROFS, EACCES, errno.EBUSY)
        # and the bytes are unchanged
        with open(f, "rb") as fh:
            self.assertEqual(fh.read(), self.bytes_of("lm_head.weight"))

    def test_missing_names(self):
        for _ in range(2):  # the second lookup is answered from the negative cache
            self.assertFalse(os.path.exists(self.path("no_such_tensor")))
        self.assertErrno(lambda: os.stat(self.path("lm_head.weight/x")), errno.ENOTDIR)
        self.assertErrno(lambda: os.open(self.path("x" * 300), os.O_RDONLY),
                         errno.ENAMETOOLONG)


@lib.require_fuse
class HostileNames(unittest.TestCase):
    NAMES = ["..", ".", "", "a/b", "a_b", "a%2Fb", "../../etc/passwd", "a\0b", "\x01\x1f\x7f",
             "__header__.json", "__metadata__.json", "x" * 4200, "-rf", "caf\u00e9",
             "y" * 300, "W", "w", "%"]

    def test_names_are_mapped_and_originals_kept(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "hostile.safetensors")
            tensors = [(n, "U8", [i + 1], lib.random_bytes(i + 1, i))
                       for i, n in enumerate(self.NAMES)]
            lib.write_safetensors(src, tensors, {"k": "v"})
            with Mount(src) as mnt:
                check_mount_matches_source(self, mnt, src)
                root = os.fsencode(mnt.path)
                for n, _, _, blob in tensors:
                    p = os.path.join(root, lib.map_name(n))
                    self.assertEqual(os.getxattr(p, "user.stfs.name"), n.encode())
                    with open(p, "rb") as f:
                        self.assertEqual(f.read(), blob)
                # Nothing escapes: every entry is a regular file inside the mount.
                for e in os.listdir(root):
                    self.assertNotIn(b"/", e)
                    st = os.lstat(os.path.join(root, e))
                    self.assertTrue(stat.S_ISREG(st.st_mode), e)
            self.assertEqual(sorted(os.listdir(d)), ["hostile.safetensors"])

    def test_long_names_with_equal_prefixes_stay_distinct(self):
        # Two names over 255 bytes with equal prefixes but different hashes
        # do not collide; the mount must serve both.
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "long.safetensors")
            a, b = "z" * 300 + "a", "z" * 300 + "b"
            lib.write_safetensors(src, [(a, "U8", [1], b"1"), (b, "U8", [1], b"2")])
            with Mount(src) as mnt:
                names = os.listdir(os.fsencode(mnt.path))
                self.assertIn(lib.map_name(a), names)
                self.assertIn(lib.map_name(b), names)
                self.assertNotEqual(lib.map_name(a), lib.map_name(b))


@lib.require_fuse
class Truncation(unittest.TestCase):
    def test_truncated_source_gives_eio_and_keeps_serving_the_rest(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "t.safetensors")
            tensors = [("t%02d" % i, "U8", [256 * 1024], lib.random_bytes(256 * 1024, i))
                       for i in range(8)]
            lib.write_safetensors(src, tensors)
            header, _, start = lib.read_header(src)
            with Mount(src) as mnt:
                os.truncate(src, start + 4 * 256 * 1024)  # t00-t03 intact
                lost = os.path.join(mnt.path, "t06")
                result = {}

                def read_lost():
                    try:
                        with open(lost, "rb") as f:
                            result["data"] = f.read()
                    except OSError as e:
                        result["errno"] = e.errno

                t = threading.Thread(target=read_lost)
                t.start()
                t.join(timeout=10)
                self.assertFalse(t.is_alive(), "a reader of a lost range hung")
                self.assertEqual(result.get("errno"), errno.EIO, result)
                # Again, now from the recorded size rather than a fault.
                with self.assertRaises(OSError) as cm:
                    with open(os.path.join(mnt.path, "t07"), "rb") as f:
                        f.read()
                self.assertEqual(cm.exception.errno, errno.EIO)
                for i in range(4):
                    with open(os.path.join(mnt.path, "t%02d" % i), "rb") as f:
                        self.assertEqual(f.read(), tensors[i][3])
                self.assertTrue(lib.find_mount(mnt.path))
                self.assertIsNone(mnt.proc.poll(), "the daemon died")
                self.assertIn("shrank", mnt.log())


@lib.require_fuse
class Failures(unittest.TestCase):
    def assertNothingLeft(self, mountpoint):
        self.assertIsNone(lib.find_mount(mountpoint))
        deadline = time.monotonic() + 5
        while lib.pids_serving(mountpoint) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(lib.pids_serving(mountpoint), [])

    def test_invalid_source_exits_2_naming_the_rule(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "bad.safetensors")
            with open(src, "wb") as f:
                body = b'{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}'
                f.write(len(body).to_bytes(8, "little") + body + b"abc")
            mp = os.path.join(d, "mnt")
            os.mkdir(mp)
            for extra in ([], ["-f"]):
                r = lib.run_stfs(*extra, src, mp)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(src, r.stderr)
                self.assertIn("incomplete metadata", r.stderr)
                self.assertIn("MetadataIncompleteBuffer", r.stderr)
                self.assertNothingLeft(mp)
            r = lib.run_stfs(os.path.join(d, "missing.safetensors"), mp)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("No such file", r.stderr)
            self.assertNothingLeft(mp)

    def test_missing_mountpoint_exits_3(self):
        with tempfile.TemporaryDirectory() as d:
            mp = os.path.join(d, "nope")
            r = lib.run_stfs(lib.SAMPLE, mp)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn(mp, r.stderr)
            self.assertIn("No such file or directory", r.stderr)
            self.assertNothingLeft(mp)
            f = os.path.join(d, "file")
            open(f, "w").close()
            r = lib.run_stfs(lib.SAMPLE, f)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("not a directory", r.stderr)

    def test_busy_mountpoint_exits_3(self):
        with Mount(lib.SAMPLE) as mnt:
            r = lib.run_stfs(lib.SAMPLE, mnt.path)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("busy", r.stderr)
            self.assertEqual(len(lib.pids_serving(mnt.path)), 1)
            self.assertTrue(os.path.exists(os.path.join(mnt.path, "lm_head.weight")))

    def test_usage_errors_exit_1(self):
        for args in (["only-one"], ["a", "b", "c"], ["-o", "bogus", lib.SAMPLE, "/tmp"],
                     ["-o", "threads=0", lib.SAMPLE, "/tmp"], ["-x"]):
            r = lib.run_stfs(*args)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            self.assertIn("Try 'stfs --help'", r.stderr)
        for value in ("busy_poll_us", "busy_poll_us=", "busy_poll_us=abc", "busy_poll_us=-1",
                      "busy_poll_us=1000001", "busy_poll_us=1e3"):
            r = lib.run_stfs("-o", value, lib.SAMPLE, "/tmp")
            self.assertEqual(r.returncode, 1, (value, r.stderr))
            self.assertIn("busy_poll_us", r.stderr)


@lib.require_fuse
class Lifecycle(unittest.TestCase):
    def test_daemon_mode_returns_once_the_mount_answers(self):
        mnt = Mount(lib.SAMPLE, foreground=False)
        try:
            r = lib.run_stfs(lib.SAMPLE, mnt.path)
            self.assertEqual(r.returncode, 0, r.stderr)
            # No wait: the mount must answer right away.
            self.assertIn(b"lm_head.weight", os.listdir(os.fsencode(mnt.path)))
            self.assertEqual(len(lib.pids_serving(mnt.path)), 1)
        finally:
            mnt.stop()
        self.assertIsNone(lib.find_mount(mnt.path))
        self.assertEqual(lib.pids_serving(mnt.path), [])

    def test_fuse_max_read_option_mounts_and_reads(self):
        # libfuse ends a session whose init() asks for another max_read
        # than -o max_read= gave: the daemon sets it again at INIT.
        header, _, start = lib.read_header(lib.SAMPLE)
        want = lib.tensor_bytes(lib.SAMPLE, header["lm_head.weight"], start)
        for foreground in (True, False):
            mnt = Mount(lib.SAMPLE, "-o", "max_read=8192", foreground=foreground)
            try:
                mnt.start()
                with open(os.path.join(mnt.path, "lm_head.weight"), "rb") as f:
                    self.assertEqual(f.read(), want)
            finally:
                status = mnt.stop()
            if foreground:
                mnt.check_clean_exit(status)

    def test_busy_polling_is_brief_and_an_idle_mount_costs_no_cpu(self):
        # After a request, one daemon thread polls the device for
        # busy_poll_us, then sleeps: a user sees no CPU spent by an idle
        # mount, and none spent polling after the window.
        if len(os.sched_getaffinity(0)) < 2:
            self.skipTest("polling is off with one CPU")

        def threads(pid):
            out = {}
            for tid in os.listdir("/proc/%d/task" % pid):
                try:
                    out[tid] = lib.stat_fields("/proc/%d/task/%s/stat" % (pid, tid))[0]
                except FileNotFoundError:
                    pass  # a thread that ended meanwhile
            return out

        def cpu_seconds(pid):
            fields = lib.stat_fields("/proc/%d/stat" % pid)
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        header, _, start = lib.read_header(lib.SAMPLE)
        name = sorted(k for k in header if k != "__metadata__")[0]
        want = lib.tensor_bytes(lib.SAMPLE, header[name], start)
        with Mount(lib.SAMPLE, "-o", "busy_poll_us=1000000") as mnt:
            pid = mnt.daemon_pid()
            time.sleep(1.2)
            self.assertNotIn("R", threads(pid).values(), "busy before any request")
            with open(os.path.join(mnt.path, name), "rb") as f:
                self.assertEqual(f.read(), want)
            # Inside the 1 s window, one thread polls: it is running in
            # most looks. Another thread seen running once or twice (one
            # finishing its reply, a sanitizer's own thread) is not polling.
            def pollers(looks=6):
                running = {}
                for _ in range(looks):
                    time.sleep(0.05)
                    for tid, state in threads(pid).items():
                        running[tid] = running.get(tid, 0) + (state == "R")
                return [tid for tid, n in running.items() if n > looks // 2], running
            found, running = pollers()
            self.assertEqual(len(found), 1, "threads running in each look: %s" % running)
            # After the window nobody polls: the same count of looks, since
            # one look may catch a sanitizer's own thread running.
            time.sleep(1.4)
            found, running = pollers()
            self.assertEqual(found, [], "still polling after the window: %s" % running)
            before = cpu_seconds(pid)
            time.sleep(1.0)
            self.assertLess(cpu_seconds(pid) - before, 0.05)
        # The default: after a whole read of every file, an idle second
        # costs nothing either.
        with Mount(lib.SAMPLE) as mnt:
            for n in os.listdir(mnt.path):
                p = os.path.join(mnt.path, n)
                if os.path.isfile(p):
                    with open(p, "rb") as f:
                        f.read()
            time.sleep(0.2)
            before = cpu_seconds(mnt.daemon_pid())
            time.sleep(1.0)
            self.assertLess(cpu_seconds(mnt.daemon_pid()) - before, 0.05)
        with Mount(lib.SAMPLE, "-o", "busy_poll_us=0") as mnt:
            with open(os.path.join(mnt.path, name), "rb") as f:
                self.assertEqual(f.read(), want)
            time.sleep(0.05)
            self.assertNotIn("R", threads(mnt.daemon_pid()).values())

    def test_opens_of_a_file_source_send_no_message(self):
        # A file source has one generation: the kernel is told (ENOSYS to
        # the first OPEN, and to the first FLUSH) that opens need no
        # message. With -o direct_io, and over a folder, every open still
        # reaches the daemon, which sets flags or keeps a generation per open.
        header, _, start = lib.read_header(lib.SAMPLE)
        names = sorted(k for k in header if k != "__metadata__")
        want = {n: lib.tensor_bytes(lib.SAMPLE, header[n], start) for n in names}

        def opens_and_reads(mnt, root):
            for _ in range(3):
                for n in names:
                    with open(os.path.join(root, n), "rb") as f:
                        self.assertEqual(f.read(), want[n], n)
            log = mnt.log()
            return (log.count("opcode: OPEN "), log.count("opcode: FLUSH "),
                    log.count("opcode: RELEASE "))

        with Mount(lib.SAMPLE, "-o", "debug") as mnt:
            opens, flushes, releases = opens_and_reads(mnt, mnt.path)
            self.assertLessEqual(opens, 1, mnt.log()[-4000:])
            self.assertLessEqual(flushes, 1)
            self.assertEqual(releases, 0)
            # Still read-only, and still EISDIR / ENOENT where they belong.
            f = os.path.join(mnt.path, names[0])
            for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
                with self.assertRaises(OSError) as e:
                    os.close(os.open(f, flags))
                self.assertIn(e.exception.errno, (errno.EROFS, errno.EACCES))
            with self.assertRaises(FileNotFoundError):
                open(os.path.join(mnt.path, "no-such-tensor"), "rb")
        with Mount(lib.SAMPLE, "-o", "debug,direct_io") as mnt:
            opens, _, _ = opens_and_reads(mnt, mnt.path)
            self.assertGreaterEqual(opens, 3 * len(names))
        with tempfile.TemporaryDirectory() as d:
            shutil.copy(lib.SAMPLE, os.path.join(d, "m.safetensors"))
            with Mount(d, "-o", "debug") as mnt:
                opens, _, _ = opens_and_reads(mnt, os.path.join(mnt.path, "m.safetensors.d"))
                self.assertGreaterEqual(opens, 3 * len(names))

    def test_signals_unmount_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with self.subTest(sig=sig.name):
                mnt = Mount(lib.SAMPLE, "-v")
                try:
                    mnt.start()
                    os.kill(mnt.proc.pid, sig)
                    self.assertEqual(mnt.proc.wait(timeout=10), 0, mnt.log())
                    self.assertIsNone(lib.find_mount(mnt.path))
                    self.assertIn("received %s, unmounting" % sig.name, mnt.log())
                finally:
                    status = mnt.stop()
                mnt.check_clean_exit(status)

    def test_a_signal_is_never_lost(self):
        # libfuse's handlers lost a signal that fell just before the loop's
        # wait (1 in ~20 under TSan and load); stop_signals.hpp.
        for i in range(25):
            sig = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)[i % 3]
            with self.subTest(round=i, sig=sig.name):
                mnt = Mount(lib.SAMPLE)
                try:
                    mnt.start()
                    os.kill(mnt.proc.pid, sig)
                    self.assertEqual(mnt.proc.wait(timeout=10), 0, mnt.log())
                finally:
                    status = mnt.stop()
                mnt.check_clean_exit(status)

    def test_readahead_raised_to_1mib(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        with Mount(lib.SAMPLE) as mnt:
            os.stat(mnt.path)
            dev = lib.find_mount(mnt.path)["device"]
            with open("/sys/class/bdi/%s/read_ahead_kb" % dev) as f:
                self.assertEqual(f.read().strip(), "1024")
        with Mount(lib.SAMPLE, "-o", "read_ahead_kb=off") as mnt:
            os.stat(mnt.path)
            dev = lib.find_mount(mnt.path)["device"]
            with open("/sys/class/bdi/%s/read_ahead_kb" % dev) as f:
                self.assertNotEqual(f.read().strip(), "1024")

    def test_modes_and_owners_follow_the_source(self):
        with tempfile.TemporaryDirectory() as d:
            os.chmod(d, 0o755)  # the folder may be searched by all
            src = os.path.join(d, "m.safetensors")
            shutil.copy(lib.SAMPLE, src)
            os.chmod(src, 0o640)
            os.chown(src, 65534, 65534) if os.geteuid() == 0 else None
            src_st = os.stat(src)
            with Mount(src) as mnt:
                st = os.stat(os.path.join(mnt.path, "lm_head.weight"))
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o440)
                self.assertEqual((st.st_uid, st.st_gid), (src_st.st_uid, src_st.st_gid))
                self.assertEqual(stat.S_IMODE(os.stat(mnt.path).st_mode), 0o550)
            with Mount(src, "-o", "uid=123,gid=456,umask=027") as mnt:
                st = os.stat(os.path.join(mnt.path, "lm_head.weight"))
                self.assertEqual((st.st_uid, st.st_gid), (123, 456))
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o440)
                self.assertEqual(stat.S_IMODE(os.stat(mnt.path).st_mode), 0o550)


if __name__ == "__main__":
    unittest.main()
