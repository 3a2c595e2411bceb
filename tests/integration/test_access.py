"""The access rule through real root mounts with allow_other: a reader
running as uid 65534 (setpriv) must never read through the mount what it
cannot read natively. Each case checks the native answer first, so the test
states the ground truth it compares against."""
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

import stfs_testlib as lib
from stfs_testlib import Mount

# These tests read a folder's tensors at X.safetensors/ (stfs_testlib.py).
lib.FOLDER_DEFAULTS = ["-o", "model_dirs"]

NOBODY = 65534
OTHER_USER = 1234  # owns the "private" folders; never the reader


def as_nobody(*argv):
    return subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                           "--clear-groups", *argv], capture_output=True, timeout=30)


def can_read(path):
    r = as_nobody("cat", path)
    return r.returncode == 0, r


def write(path, data=b"secret\n", mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


@lib.require_fuse
class Access(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount for others and switch users")
        for tool in ("setpriv", "setfacl"):
            if not shutil.which(tool):
                if os.environ.get("STFS_REQUIRE_FUSE") == "1":
                    self.fail("%s missing (scripts/setup.sh installs it)" % tool)
                self.skipTest("%s missing" % tool)
        self.tmp = tempfile.mkdtemp(prefix="stfs-acc-")
        os.chmod(self.tmp, 0o755)
        self.src = os.path.join(self.tmp, "src")
        os.mkdir(self.src)
        os.chmod(self.src, 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def private_dir(self, name="priv", mode=0o700):
        p = os.path.join(self.tmp, name)
        os.mkdir(p)
        os.chown(p, OTHER_USER, OTHER_USER)
        os.chmod(p, mode)
        return p

    def mount(self, source=None, *opts):
        m = Mount(source or self.src, *opts)
        m.start()
        self.addCleanup(self._stop, m)
        os.chmod(m.dir, 0o755)
        return m

    def _stop(self, m):
        status = m.stop()
        m.check_clean_exit(status)

    def assert_denied(self, native, mounted):
        ok, _ = can_read(native)
        self.assertFalse(ok, "natively readable, the case is wrong: " + native)
        ok, r = can_read(mounted)
        self.assertFalse(ok, "read through the mount: %s" % mounted)
        self.assertEqual(r.stdout, b"")

    def assert_allowed(self, native, mounted):
        ok, r = can_read(native)
        self.assertTrue(ok, r.stderr)
        ok, r2 = can_read(mounted)
        self.assertTrue(ok, r2.stderr)
        self.assertEqual(r2.stdout, r.stdout)

    # 1. A link reaching behind a directory the reader cannot enter.
    def test_link_behind_a_0700_directory_is_closed(self):
        priv = self.private_dir()
        write(os.path.join(priv, "n.txt"))
        shutil.copy(lib.SAMPLE, os.path.join(priv, "m.bin"))
        os.chmod(os.path.join(priv, "m.bin"), 0o644)
        os.symlink("../priv/n.txt", os.path.join(self.src, "notes.json"))
        os.symlink("../priv/m.bin", os.path.join(self.src, "X.safetensors"))
        mnt = self.mount()
        self.assert_denied(os.path.join(self.src, "notes.json"),
                           os.path.join(mnt.path, "notes.json"))
        self.assert_denied(os.path.join(self.src, "X.safetensors"),
                           os.path.join(mnt.path, "X.safetensors", "lm_head.weight"))
        self.assert_denied(os.path.join(self.src, "X.safetensors"),
                           os.path.join(mnt.path, "X.safetensors", "__header__.json"))
        # Root still reads them: the entries are served, only closed.
        with open(os.path.join(mnt.path, "notes.json"), "rb") as f:
            self.assertEqual(f.read(), b"secret\n")

    def test_merged_view_through_a_linked_shard_is_closed(self):
        priv = self.private_dir()
        lib.write_safetensors(os.path.join(priv, "s1"), [("a", "F32", [2], b"\1" * 8)])
        lib.write_safetensors(os.path.join(self.src, "model-00002-of-00002.safetensors"),
                              [("b", "F32", [2], b"\2" * 8)])
        os.chmod(os.path.join(priv, "s1"), 0o644)
        os.chmod(os.path.join(self.src, "model-00002-of-00002.safetensors"), 0o644)
        os.symlink("../priv/s1", os.path.join(self.src, "model-00001-of-00002.safetensors"))
        with open(os.path.join(self.src, "model.safetensors.index.json"), "w") as f:
            f.write('{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors",'
                    '"b":"model-00002-of-00002.safetensors"}}')
        os.chmod(os.path.join(self.src, "model.safetensors.index.json"), 0o644)
        mnt = self.mount()
        merged = os.path.join(mnt.path, "model.safetensors")
        self.assert_denied(os.path.join(self.src, "model-00001-of-00002.safetensors"),
                           os.path.join(merged, "a"))
        ok, r = can_read(os.path.join(merged, "b"))  # the readable shard stays readable
        self.assertTrue(ok, r.stderr)
        self.assertEqual(r.stdout, b"\2" * 8)

    def test_symlink_to_another_users_0600_file_is_closed(self):
        target = os.path.join(self.tmp, "theirs.txt")
        write(target, mode=0o600)
        os.chown(target, OTHER_USER, OTHER_USER)
        os.symlink(target, os.path.join(self.src, "theirs.json"))
        mnt = self.mount()
        self.assert_denied(target, os.path.join(mnt.path, "theirs.json"))

    def test_link_into_a_world_readable_folder_stays_readable(self):
        pub = self.private_dir("pub", 0o755)
        write(os.path.join(pub, "n.txt"), b"public\n")
        os.symlink(os.path.join(pub, "n.txt"), os.path.join(self.src, "notes.json"))
        mnt = self.mount()
        self.assert_allowed(os.path.join(self.src, "notes.json"),
                            os.path.join(mnt.path, "notes.json"))

    def test_link_chain_through_a_closed_folder_is_closed(self):
        # notes.json -> ../hop/l, where hop/ (0700) holds a link to a
        # public file: resolution searched hop/, which nobody may.
        pub = self.private_dir("pub", 0o755)
        write(os.path.join(pub, "n.txt"), b"public\n")
        hop = self.private_dir("hop", 0o700)
        os.symlink("../pub/n.txt", os.path.join(hop, "l"))
        os.symlink("../hop/l", os.path.join(self.src, "notes.json"))
        mnt = self.mount()
        self.assert_denied(os.path.join(self.src, "notes.json"),
                           os.path.join(mnt.path, "notes.json"))

    # 2. Directory bits are kept, not widened.
    def test_0744_subfolder_can_be_listed_but_not_entered(self):
        sub = os.path.join(self.src, "sub")
        os.mkdir(sub)
        write(os.path.join(sub, "f.json"))
        os.chmod(sub, 0o744)
        mnt = self.mount()
        msub = os.path.join(mnt.path, "sub")
        self.assertEqual(stat.S_IMODE(os.stat(msub).st_mode), 0o544)
        self.assert_denied(os.path.join(sub, "f.json"), os.path.join(msub, "f.json"))
        self.assertEqual(as_nobody("ls", sub).returncode, 0)
        r = as_nobody("ls", msub)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"f.json", r.stdout)

    def test_0711_subfolder_opens_known_names_but_does_not_list(self):
        sub = os.path.join(self.src, "sub")
        os.mkdir(sub)
        write(os.path.join(sub, "f.json"), b"known\n")
        os.chmod(sub, 0o711)
        mnt = self.mount()
        msub = os.path.join(mnt.path, "sub")
        self.assertEqual(stat.S_IMODE(os.stat(msub).st_mode), 0o511)
        self.assert_allowed(os.path.join(sub, "f.json"), os.path.join(msub, "f.json"))
        self.assertNotEqual(as_nobody("ls", sub).returncode, 0)
        r = as_nobody("ls", msub)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"Permission denied", r.stderr)

    def test_source_folder_whose_parent_is_0700(self):
        outer = self.private_dir("outer", 0o700)
        os.chown(outer, 0, 0)
        src = os.path.join(outer, "models")
        os.mkdir(src)
        os.chmod(src, 0o755)
        shutil.copy(lib.SAMPLE, os.path.join(src, "m.safetensors"))
        os.chmod(os.path.join(src, "m.safetensors"), 0o644)
        write(os.path.join(src, "config.json"))
        mnt = self.mount(src)
        self.assert_denied(os.path.join(src, "config.json"),
                           os.path.join(mnt.path, "config.json"))
        self.assert_denied(os.path.join(src, "m.safetensors"),
                           os.path.join(mnt.path, "m.safetensors", "lm_head.weight"))
        # The file source behind the same parent.
        mnt2 = self.mount(os.path.join(src, "m.safetensors"))
        self.assert_denied(os.path.join(src, "m.safetensors"),
                           os.path.join(mnt2.path, "lm_head.weight"))

    # 3. ACLs.
    def test_acl_deny_entry_folder_and_file_source(self):
        f = os.path.join(self.src, "c.json")
        write(f)
        m = os.path.join(self.src, "m.safetensors")
        shutil.copy(lib.SAMPLE, m)
        os.chmod(m, 0o644)
        for p in (f, m):
            subprocess.run(["setfacl", "-m", "u:%d:---" % NOBODY, p], check=True)
        mnt = self.mount()
        self.assert_denied(f, os.path.join(mnt.path, "c.json"))
        self.assert_denied(m, os.path.join(mnt.path, "m.safetensors", "lm_head.weight"))
        mnt2 = self.mount(m)
        self.assert_denied(m, os.path.join(mnt2.path, "lm_head.weight"))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(mnt2.path, "lm_head.weight")).st_mode),
                         0o400)

    def test_acl_deny_on_a_parent_directory(self):
        sub = os.path.join(self.src, "sub")
        os.mkdir(sub)
        os.chmod(sub, 0o755)
        write(os.path.join(sub, "f.json"))
        subprocess.run(["setfacl", "-m", "u:%d:---" % NOBODY, sub], check=True)
        mnt = self.mount()
        self.assert_denied(os.path.join(sub, "f.json"), os.path.join(mnt.path, "sub", "f.json"))

    def test_acl_grant_entry_does_not_widen_others(self):
        f = os.path.join(self.src, "g.json")
        write(f, mode=0o600)
        subprocess.run(["setfacl", "-m", "u:%d:r--" % NOBODY, f], check=True)
        self.assertTrue(can_read(f)[0])  # natively 65534 may read
        mnt = self.mount()
        mf = os.path.join(mnt.path, "g.json")
        # Only 65534 was granted: the mount cannot say "only 65534", so it
        # shows the mode's 0400 and denies the rest (documented: denies a
        # little more, never grants more).
        self.assertEqual(stat.S_IMODE(os.stat(mf).st_mode), 0o400)
        r = subprocess.run(["setpriv", "--reuid=4321", "--regid=4321", "--clear-groups",
                            "cat", mf], capture_output=True)
        self.assertNotEqual(r.returncode, 0)

    # 4. Links into the mount itself.
    def test_link_into_the_mountpoint_is_never_followed(self):
        write(os.path.join(self.src, "config.json"), b"{}\n")
        mnt = Mount(self.src, "-s")
        os.symlink(os.path.join(mnt.path, "config.json"), os.path.join(self.src, "loop.json"))
        mnt.start()
        try:
            os.chmod(mnt.dir, 0o755)
            names = os.listdir(mnt.path)
            self.assertIn("config.json", names)
            self.assertNotIn("loop.json", names)
            self.assertIn("loop.json", mnt.log())
            # A link added while mounted is left out by the rebuild too, and
            # the mount still answers (no deadlock with -s).
            os.symlink(os.path.join(mnt.path, "config.json"),
                       os.path.join(self.src, "loop2.json"))
            write(os.path.join(self.src, "new.json"), b"{}\n")
            import time
            deadline = time.monotonic() + 10
            while "new.json" not in os.listdir(mnt.path) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertIn("new.json", os.listdir(mnt.path))
            self.assertNotIn("loop2.json", os.listdir(mnt.path))
            with open(os.path.join(mnt.path, "config.json"), "rb") as f:
                self.assertEqual(f.read(), b"{}\n")
            # The daemon holds nothing inside its own mount: -u succeeds.
            r = subprocess.run(["fusermount3", "-u", mnt.path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)

    # Hugging Face caches keep working.
    def test_hugging_face_cache_stays_readable(self):
        repo = os.path.join(self.src, "models--org--tiny")
        blobs = os.path.join(repo, "blobs")
        snap = os.path.join(repo, "snapshots", "0123abcd")
        os.makedirs(blobs)
        os.makedirs(snap)
        for d in (repo, blobs, os.path.dirname(snap), snap):
            os.chmod(d, 0o755)
        shutil.copy(lib.SAMPLE, os.path.join(blobs, "f00dfeed"))
        os.chmod(os.path.join(blobs, "f00dfeed"), 0o644)
        os.symlink("../../blobs/f00dfeed", os.path.join(snap, "model.safetensors"))
        header, _, start = lib.read_header(lib.SAMPLE)
        for source, rel in ((self.src, "models--org--tiny/snapshots/0123abcd"), (snap, "")):
            mnt = self.mount(source)
            model = os.path.join(mnt.path, rel, "model.safetensors")
            ok, r = can_read(os.path.join(model, "lm_head.weight"))
            self.assertTrue(ok, r.stderr)
            self.assertEqual(r.stdout,
                             lib.tensor_bytes(lib.SAMPLE, header["lm_head.weight"], start))


if __name__ == "__main__":
    unittest.main()
