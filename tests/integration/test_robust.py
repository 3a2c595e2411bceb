"""Hostile and changing folders (issue 11): no hang, no entry that sinks the
folder, bounded work and memory, and never a wrong byte."""
import errno
import json
import os
import resource
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import stfs_testlib as lib
from stfs_testlib import Mount

# These tests read a folder's tensors at X.safetensors/ (stfs_testlib.py).
lib.FOLDER_DEFAULTS = ["-o", "model_dirs"]


def wait_for(predicate, seconds=10.0):
    return lib.wait_for(predicate, seconds)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def drop_cache(path):
    """Drops the mount's cached pages of `path`, so the next read asks the daemon."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_or_errno(path):
    try:
        return read(path)
    except OSError as e:
        return e.errno


def tiny_model(path, name="w", data=b"\1\2\3\4"):
    lib.write_safetensors(path, [(name, "U8", [len(data)], data)])


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@lib.require_fuse
class WrongBytes(unittest.TestCase):
    def check_mid_page_truncation(self, folder):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "m.safetensors")
            a = lib.random_bytes(1 << 20, 1)
            b = lib.random_bytes(64, 2)
            c = lib.random_bytes(64, 3)
            lib.write_safetensors(src, [("a", "U8", [len(a)], a), ("b", "U8", [64], b),
                                        ("c", "U8", [64], c)])
            _, _, start = lib.read_header(src)
            with Mount(d if folder else src) as mnt:
                base = os.path.join(mnt.path, "m.safetensors") if folder else mnt.path
                self.assertEqual(read(os.path.join(base, "b")), b)  # read once
                if folder:  # a folder mount would rebuild: keep the watcher out
                    pass
                os.truncate(src, start + len(a) + 10)
                for name, want in (("b", b), ("c", c)):
                    p = os.path.join(base, name)
                    drop_cache(p)
                    got = read_or_errno(p)
                    self.assertIn(got, (want, errno.EIO),
                                  "%s read back %r" % (name, got[:16] if isinstance(got, bytes)
                                                       else got))
                self.assertEqual(read(os.path.join(base, "a")), a)  # still intact

    def test_mid_page_truncation_file_source(self):
        self.check_mid_page_truncation(False)

    def test_mid_page_truncation_folder_source(self):
        self.check_mid_page_truncation(True)


@lib.require_fuse
class Hangs(unittest.TestCase):
    def test_fifos_never_block_the_mount(self):
        with tempfile.TemporaryDirectory() as d:
            os.mkfifo(os.path.join(d, "x.safetensors"))
            os.mkfifo(os.path.join(d, "fifo"))
            os.symlink("fifo", os.path.join(d, "y.safetensors"))
            os.symlink("fifo", os.path.join(d, "m.safetensors.index.json"))
            tiny_model(os.path.join(d, "ok.safetensors"))
            t = time.monotonic()
            with Mount(d) as mnt:
                self.assertLess(time.monotonic() - t, 20)
                names = os.listdir(mnt.path)
                self.assertIn("ok.safetensors", names)
                for n in ("x.safetensors", "y.safetensors", "m.safetensors.index.json"):
                    self.assertNotIn(n, names)
                # A FIFO dropped in while mounted never stops later changes.
                os.mkfifo(os.path.join(d, "z.safetensors"))
                os.symlink("fifo", os.path.join(d, "n.safetensors.index.json"))
                tiny_model(os.path.join(d, "later.safetensors"))
                self.assertTrue(wait_for(lambda: "later.safetensors" in os.listdir(mnt.path)))
            # (Mount's exit checks the daemon ended 0 after fusermount3 -u.)

    def test_check_of_a_fifo_returns(self):
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "p.safetensors")
            os.mkfifo(f)
            r = lib.run_stfs("--check", f, timeout=20)
            self.assertEqual(r.returncode, 2)
            self.assertIn("INVALID " + f, r.stdout)
            mp = os.path.join(d, "mnt")
            os.mkdir(mp)
            r = lib.run_stfs(f, mp, timeout=20)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(f, r.stderr)
            self.assertIsNone(lib.find_mount(mp))


@lib.require_fuse
class OneEntry(unittest.TestCase):
    def test_unmappable_link_is_left_out_with_its_name(self):
        target = "/sys/devices/system/cpu/online"
        if not os.path.exists(target):
            self.skipTest("no " + target)
        with tempfile.TemporaryDirectory() as d:
            os.symlink(target, os.path.join(d, "cpus.json"))
            tiny_model(os.path.join(d, "ok.safetensors"))
            with Mount(d) as mnt:
                self.assertEqual(read(os.path.join(mnt.path, "ok.safetensors", "w")), b"\1\2\3\4")
                self.assertNotIn("cpus.json", os.listdir(mnt.path))
                self.assertIn("cpus.json", mnt.log())

    def test_files_past_the_address_space_leave_out_only_themselves(self):
        with tempfile.TemporaryDirectory() as d:
            for i in range(9):
                with open(os.path.join(d, "huge%d.bin" % i), "wb") as f:
                    f.truncate(15 << 40)
            tiny_model(os.path.join(d, "ok.safetensors"))
            with Mount(d) as mnt:
                names = os.listdir(mnt.path)
                self.assertIn("ok.safetensors", names)
                self.assertLess(sum(n.startswith("huge") for n in names), 9)
                self.assertEqual(read(os.path.join(mnt.path, "ok.safetensors", "w")), b"\1\2\3\4")
                self.assertIn("left out", mnt.log())

    def test_merged_view_name_taken_twice(self):
        with tempfile.TemporaryDirectory() as d:
            tiny_model(os.path.join(d, "model.safetensors"))
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"weight_map": {"w": "model.safetensors"}}, f)
            with open(os.path.join(d, "model.safetensors.merged"), "w") as f:
                f.write("mine\n")
            with Mount(d) as mnt:
                self.assertEqual(read(os.path.join(mnt.path, "model.safetensors.merged")),
                                 b"mine\n")
                self.assertEqual(read(os.path.join(mnt.path, "model.safetensors", "w")),
                                 b"\1\2\3\4")
                self.assertIn("model.safetensors.merged", mnt.log())
                # A live rebuild meets the same clash and still moves on.
                tiny_model(os.path.join(d, "later.safetensors"))
                self.assertTrue(wait_for(lambda: "later.safetensors" in os.listdir(mnt.path)))


@lib.require_fuse
class Bounded(unittest.TestCase):
    def test_huge_sparse_index_is_refused_before_it_is_read(self):
        with tempfile.TemporaryDirectory() as d:
            tiny_model(os.path.join(d, "model-00001-of-00001.safetensors"))
            with open(os.path.join(d, "model.safetensors.index.json"), "wb") as f:
                f.truncate(2 << 30)
            t = time.monotonic()
            with Mount(d) as mnt:
                self.assertLess(time.monotonic() - t, 20)
                self.assertLess(vm_hwm_kib(mnt.daemon_pid()), 200 * 1024)
                self.assertIn("larger than 64 MiB", mnt.log())

    def test_duplicate_keys_cost_linear_time_and_few_log_lines(self):
        with tempfile.TemporaryDirectory() as d:
            tiny_model(os.path.join(d, "s1.safetensors"))
            tiny_model(os.path.join(d, "s2.safetensors"))
            # ~4 MB: 100k names, each listed twice with two shards.
            entries = []
            for i in range(100_000):
                entries.append('"t%d":"s1.safetensors"' % i)
                entries.append('"t%d":"s2.safetensors"' % i)
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                f.write('{"weight_map":{' + ",".join(entries) + "}}")
            t = time.monotonic()
            with Mount(d) as mnt:
                self.assertLess(time.monotonic() - t, 10)
                self.assertEqual(os.listdir(os.path.join(mnt.path, "model.safetensors")),
                                 ["__metadata__.json"])
                log = mnt.log()
            self.assertLess(log.count("left out"), 20, log[-2000:])
            self.assertIn("99995 more tensors left out", log)

    def test_missing_shards_are_summarised(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"weight_map": {"t%d" % i: "gone-%d.safetensors" % i
                                          for i in range(100_000)}}, f)
            with Mount(d) as mnt:
                self.assertTrue(os.path.isdir(os.path.join(mnt.path, "model.safetensors")))
                log = mnt.log()
            self.assertLess(log.count("\n"), 50, log[-2000:])
            self.assertIn("more tensors left out", log)


@lib.require_fuse
class LongReaders(unittest.TestCase):
    def test_reader_of_a_replaced_file_reads_to_eof(self):
        with tempfile.TemporaryDirectory() as d:
            old = lib.random_bytes(300_000, 7)
            src = os.path.join(d, "a.safetensors")
            lib.write_safetensors(src, [("x", "U8", [len(old)], old)])
            with Mount(d) as mnt:
                p = os.path.join(mnt.path, "a.safetensors", "x")
                f = open(p, "rb")
                try:
                    head = f.read(1000)
                    new = lib.random_bytes(200_000, 8)
                    tmp = os.path.join(d, ".a.tmp")
                    lib.write_safetensors(tmp, [("x", "U8", [len(new)], new), ("y", "U8", [1], b"\0")])
                    os.rename(tmp, src)
                    self.assertTrue(wait_for(lambda: "y" in os.listdir(
                        os.path.join(mnt.path, "a.safetensors"))))
                    time.sleep(1.2)  # past the attribute timeout
                    self.assertEqual(os.fstat(f.fileno()).st_size, len(old))
                    self.assertEqual(os.getxattr(f.fileno(), "user.stfs.shape"), b"[300000]")
                    self.assertIn("user.stfs.dtype", os.listxattr(f.fileno()))
                    self.assertEqual(head + f.read(), old)  # to EOF, as cat does
                finally:
                    f.close()
                self.assertEqual(read(p), new)
                # cat, cp and numpy.fromfile through the old handle's path style.
                r = subprocess.run(["cat", p], capture_output=True)
                self.assertEqual(r.returncode, 0, r.stderr)

    def test_descriptors_scale_with_files_not_generations(self):
        count = 2000
        with tempfile.TemporaryDirectory() as d:
            for i in range(count):
                tiny_model(os.path.join(d, "m%04d.safetensors" % i), data=struct.pack("<I", i))
            limit = count + 400  # two generations of 2,000 fds would not fit

            def lower():
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

            mnt = Mount(d)
            mnt.preexec = lower
            mnt.start()
            try:
                readers = [open(os.path.join(mnt.path, "m%04d.safetensors" % i, "w"), "rb")
                           for i in (0, 999, 1999)]
                timings = []
                for gen in range(10):
                    t = time.monotonic()
                    tiny_model(os.path.join(d, "new%02d.safetensors" % gen))
                    self.assertTrue(wait_for(lambda: "new%02d.safetensors" % gen
                                             in os.listdir(mnt.path), 30))
                    timings.append(time.monotonic() - t)
                names = os.listdir(mnt.path)
                self.assertEqual(len(names), count + 10)
                for i in range(0, count, 97):
                    self.assertEqual(read(os.path.join(mnt.path, "m%04d.safetensors" % i, "w")),
                                     struct.pack("<I", i))
                for r, i in zip(readers, (0, 999, 1999)):
                    self.assertEqual(r.read(), struct.pack("<I", i))
                    r.close()
                fds = len(os.listdir("/proc/%d/fd" % mnt.daemon_pid()))
                self.assertLess(fds, count + 100)
                print("\nrebuild of %d files, change to listing: median %.2f s" %
                      (count, sorted(timings)[len(timings) // 2]))
            finally:
                status = mnt.stop()
            mnt.check_clean_exit(status)


if __name__ == "__main__":
    unittest.main()
