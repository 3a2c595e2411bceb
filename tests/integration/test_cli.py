"""The command line as FUSE users type it (issue 12): options before,
between and after the positionals, -o repeated with later values winning,
"--" before a path that starts with "-", and the same for mount.stfs."""
import os
import shutil
import struct
import subprocess
import tempfile
import time
import unittest

import stfs_testlib as lib


def unmount(mp):
    pids = lib.pids_serving(mp)
    if lib.find_mount(mp) is not None:
        if subprocess.run(["fusermount3", "-u", mp], capture_output=True).returncode:
            subprocess.run(["fusermount3", "-uz", mp], capture_output=True)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists("/proc/%d" % p) and not lib.is_zombie(p)]
        time.sleep(0.05)
    for p in pids:
        try:
            os.kill(p, 9)
        except ProcessLookupError:
            pass


@lib.require_fuse
class OptionOrder(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stfs-cli-")
        self.src = os.path.join(self.tmp, "m.safetensors")
        shutil.copy(lib.SAMPLE, self.src)
        self.mp = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mp)

    def tearDown(self):
        unmount(self.mp)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def mount(self, argv, binary=None):
        r = subprocess.run([binary or lib.STFS, *argv], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL, cwd=self.tmp)
        self.addCleanup(unmount, self.mp)
        return r

    def assert_npy_mount(self, argv, binary=None):
        r = self.mount(argv, binary)
        self.assertEqual(r.returncode, 0, "%s: %s" % (argv, r.stderr))
        self.assertIn("__npy__", os.listdir(self.mp), argv)
        unmount(self.mp)
        self.assertIsNone(lib.find_mount(self.mp))

    def test_options_before_between_and_after(self):
        for argv in (["-o", "npy", self.src, self.mp],
                     [self.src, self.mp, "-o", "npy"],
                     [self.src, "-o", "npy", self.mp],
                     [self.src, self.mp, "-onpy"],
                     [self.src, "-v", self.mp, "-o", "ro", "-o", "npy"]):
            self.assert_npy_mount(argv)

    def test_repeated_o_later_values_win(self):
        r = self.mount(["-o", "uid=123,gid=45", self.src, self.mp, "-o", "uid=321", "-o", "npy"])
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.stat(os.path.join(self.mp, "lm_head.weight"))
        self.assertEqual((st.st_uid, st.st_gid), (321, 45))
        self.assertIn("__npy__", os.listdir(self.mp))

    def test_double_dash_before_a_dash_path(self):
        dash = os.path.join(self.tmp, "-m.safetensors")
        os.rename(self.src, dash)
        r = self.mount(["-o", "npy", "--", "-m.safetensors", "mnt"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("lm_head.weight", os.listdir(self.mp))
        unmount(self.mp)
        # Without "--" the dash path is an unknown option: a usage error.
        r = self.mount(["-m.safetensors", "mnt"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown option", r.stderr)
        self.assertIsNone(lib.find_mount(self.mp))

    def test_usage_errors_still_say_what_is_wrong(self):
        r = self.mount([self.src, self.mp, "extra"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("too many arguments", r.stderr)
        r = self.mount([self.src, self.mp, "-o"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("-o", r.stderr)
        r = self.mount([self.src, self.mp, "-o", "bogus"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("bogus", r.stderr)
        self.assertIsNone(lib.find_mount(self.mp))

    def test_mount_helper_takes_options_first_or_last(self):
        helper = os.path.join(self.tmp, "mount.stfs")
        os.symlink(lib.STFS, helper)
        for argv in ([self.src, self.mp, "-o", "npy"],
                     ["-o", "npy", self.src, self.mp],
                     [self.src, "-o", "rw,npy", self.mp, "-n"]):
            self.assert_npy_mount(argv, binary=helper)

    def test_help_documents_the_forms(self):
        r = lib.run_stfs("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("SOURCE MOUNTPOINT [options]", r.stdout)
        self.assertIn("later values win", r.stdout)
        self.assertIn("--", r.stdout)

    def test_help_gives_every_mount_option_a_line_of_its_own(self):
        r = lib.run_stfs("--help")
        starts = [line[2:].split(" ")[0] for line in r.stdout.splitlines()
                  if line.startswith("  ") and not line.startswith("   ")]
        for opt in ("allow_other", "allow_root", "auto_unmount", "uid=N,", "umask=OOO",
                    "fsname=NAME", "npy", "tree", "packed", "f32", "model_dirs", "threads=N",
                    "read_path=auto|mmap|pread", "source_cache=drop|keep", "poll=SECONDS",
                    "read_ahead_kb=N|off", "busy_poll_us=N", "max_header=N"):
            self.assertIn(opt, starts, "--help has no line for " + opt)


FOREIGN = [
    # (file name, first bytes, words the message must hold)
    ("pytorch_model.bin", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"archive/data.pkl",
     ["PyTorch zip checkpoint", "never loads pickles"]),
    ("model.pt", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.", ["pickle", "never loads pickles"]),
    ("model.pkl", b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.", ["pickle"]),
    ("w.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False}", ["NumPy"]),
    ("model.h5", b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00\x00\x08\x08\x00", ["HDF5"]),
]


class ForeignFormats(unittest.TestCase):
    """Other formats get a message that says what they look like; exit 2 and
    the rule name stay, and --check and a mount say the same."""

    def test_each_format_is_named(self):
        with tempfile.TemporaryDirectory() as d:
            mp = os.path.join(d, "mnt")
            os.mkdir(mp)
            for name, head, words in FOREIGN:
                path = os.path.join(d, name)
                with open(path, "wb") as f:
                    f.write(head + b"\x00" * 4096)
                r = lib.run_stfs("--check", path)
                self.assertEqual(r.returncode, 2, r.stdout)
                line = r.stdout.strip()
                self.assertTrue(line.startswith("INVALID " + path + ": looks like"), line)
                self.assertIn("stfs reads safetensors and GGUF only", line)
                self.assertRegex(line, r"\[[A-Za-z]+\]$")  # the rule name stays
                for w in words:
                    self.assertIn(w, line)
                reason = line.split(": ", 1)[1]
                if lib.fuse_usable():
                    m = lib.run_stfs(path, mp)
                    self.assertEqual(m.returncode, 2, m.stderr)
                    self.assertIn(reason, m.stderr)
                    self.assertIsNone(lib.find_mount(mp))

    def test_a_real_safetensors_file_is_not_misnamed(self):
        r = lib.run_stfs("--check", lib.SAMPLE)
        self.assertEqual(r.returncode, 0)
        self.assertNotIn("looks like", r.stdout)


class CheckMany(unittest.TestCase):
    """One --check of many files (one parser for all) says, line for line,
    what a --check of each file alone says, whatever failed before."""

    def test_one_call_says_what_a_call_per_file_says(self):
        def raw(header):
            return struct.pack("<Q", len(header)) + header
        with tempfile.TemporaryDirectory() as d:
            files = []

            def put(name, data):
                files.append(os.path.join(d, name))
                with open(files[-1], "wb") as f:
                    f.write(data)
            put("bad-json.safetensors", raw(b'{"a":{"dtype":"U8","shape":[1],') + b"x" * 8)
            put("big.safetensors", b"")
            lib.write_safetensors(files[-1], [("t%d" % i, "U8", [2], b"ab") for i in range(3000)],
                                  metadata={"k": "v"})
            put("dup.safetensors", raw(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                       b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}')
                + b"z")
            put("small.safetensors", b"")
            lib.write_safetensors(files[-1], [("w", "F32", [2], b"\0" * 8)])
            put("dtype.safetensors", raw(b'{"a":{"dtype":"U9","shape":[1],"data_offsets":[0,1]}}')
                + b"z")
            files.append(lib.SAMPLE)
            together = lib.run_stfs("--check", *files)
            alone = [lib.run_stfs("--check", f) for f in files]
            self.assertEqual(together.stdout, "".join(r.stdout for r in alone))
            self.assertEqual([r.returncode for r in alone], [2, 0, 2, 0, 2, 0])
            self.assertEqual(together.returncode, 2)


if __name__ == "__main__":
    unittest.main()
