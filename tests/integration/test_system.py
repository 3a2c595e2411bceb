"""stfs as a citizen of the system (issue 7): the mount(8) helper, fstab
lines through `mount -T`, sd_notify readiness, root's allow_other."""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import stfs_testlib as lib  # noqa: E402
from stfs_testlib import Mount  # noqa: E402

SBIN = "/usr/sbin"


class HelperLinks:
    """Makes /usr/sbin/mount.stfs and mount.fuse.stfs point at the binary
    under test unless an installed stfs is there already; removes only
    what it made."""

    def __enter__(self):
        self.made = []
        for name in ("mount.stfs", "mount.fuse.stfs"):
            path = os.path.join(SBIN, name)
            if os.path.lexists(path):
                target = os.path.realpath(path)
                if os.path.basename(target) != "stfs":
                    raise AssertionError("%s is not an stfs helper: %s" % (path, target))
                continue
            os.symlink(os.path.abspath(lib.STFS), path)
            self.made.append(path)
        return self

    def __exit__(self, *exc):
        for path in self.made:
            os.unlink(path)


def mounted(path):
    return lib.find_mount(path)


def umount(path):
    subprocess.run(["umount", path], capture_output=True)
    if mounted(path):
        subprocess.run(["fusermount3", "-uz", path], capture_output=True)


@lib.require_fuse
class MountHelper(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("mount(8) with a helper in /usr/sbin needs root")
        self.links = HelperLinks().__enter__()
        self.tmp = tempfile.mkdtemp(prefix="stfs-sys-")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        self.addCleanup(self.cleanup)

    def cleanup(self):
        umount(self.mnt)
        self.links.__exit__(None, None, None)
        subprocess.run(["rm", "-rf", self.tmp])

    def test_mount_t_stfs_and_fuse_stfs(self):
        for fstype in ("stfs", "fuse.stfs"):
            with self.subTest(fstype=fstype):
                r = subprocess.run(["mount", "-t", fstype, lib.SAMPLE, self.mnt],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr, "")  # rw from mount(8) is not worth a word
                out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", self.mnt],
                                     capture_output=True, text=True).stdout.split()
                self.assertEqual(out[0], "fuse.stfs")
                self.assertEqual(out[1], os.path.realpath(lib.SAMPLE))
                opts = out[2].split(",")
                self.assertIn("ro", opts)
                self.assertIn("allow_other", opts)  # a root mount lets others in
                with open(os.path.join(self.mnt, "__metadata__.json")) as f:
                    self.assertEqual(f.read(), '{"format":"pt"}\n')
                r = subprocess.run(["umount", self.mnt], capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIsNone(mounted(self.mnt))

    def fstab(self, line):
        path = os.path.join(self.tmp, "fstab")
        with open(path, "w") as f:
            f.write("# test fstab\n" + line + "\n")
        return path

    def test_fstab_line_with_boot_words(self):
        tab = self.fstab("%s %s stfs ro,nofail,noauto,x-systemd.automount,defaults,allow_other 0 0"
                         % (lib.SAMPLE, self.mnt))
        r = subprocess.run(["mount", "-T", tab, self.mnt], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(mounted(self.mnt)["fstype"], "fuse.stfs")
        self.assertTrue(os.path.exists(os.path.join(self.mnt, "lm_head.weight")))

    def test_fstab_rw_mounts_read_only(self):
        tab = self.fstab("%s %s stfs rw 0 0" % (lib.SAMPLE, self.mnt))
        r = subprocess.run(["mount", "-T", tab, self.mnt], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open("/proc/mounts") as f:
            line = [ln for ln in f if ln.split()[1] == self.mnt][0]
        self.assertEqual(line.split()[3].split(",")[0], "ro")

    def test_fstab_bad_source_fails_with_nothing_mounted(self):
        bad = os.path.join(self.tmp, "bad.safetensors")
        with open(bad, "wb") as f:
            f.write(b"\x02\x00\x00\x00\x00\x00\x00\x00{}junk")
        tab = self.fstab("%s %s stfs defaults 0 0" % (bad, self.mnt))
        r = subprocess.run(["mount", "-T", tab, self.mnt], capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("MetadataIncompleteBuffer", r.stderr)
        self.assertIsNone(mounted(self.mnt))
        self.assertEqual(lib.pids_serving(self.mnt), [])

    def test_helper_fake_run_and_sloppy(self):
        helper = os.path.join(SBIN, "mount.stfs")
        r = subprocess.run([helper, lib.SAMPLE, self.mnt, "-f", "-o", "rw"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNone(mounted(self.mnt))
        r = subprocess.run([helper, lib.SAMPLE, self.mnt, "-f", "-o", "bogus"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown mount option 'bogus'", r.stderr)
        r = subprocess.run([helper, lib.SAMPLE, self.mnt, "-s", "-o", "bogus", "-o", "rw"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("unknown mount option 'bogus' ignored", r.stderr)
        self.assertTrue(mounted(self.mnt))
        umount(self.mnt)
        r = subprocess.run([helper, lib.SAMPLE, self.mnt, "-v", "-o", "rw"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("'rw' ignored", r.stderr)


@lib.require_fuse
class SdNotify(unittest.TestCase):
    def run_with_socket(self, address, bind_path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(bind_path)
        sock.settimeout(20)
        messages = []
        env = dict(os.environ, NOTIFY_SOCKET=address)
        with tempfile.TemporaryDirectory() as d:
            mp = os.path.join(d, "mnt")
            os.mkdir(mp)
            p = subprocess.Popen([lib.STFS, "-f", lib.SAMPLE, mp], env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            try:
                messages.append(sock.recv(4096).decode())
                self.assertTrue(mounted(mp))
                self.assertTrue(os.path.exists(os.path.join(mp, "lm_head.weight")))
                p.terminate()
                messages.append(sock.recv(4096).decode())
                self.assertEqual(p.wait(timeout=20), 0)
            finally:
                lib.reap(p, mp, timeout=0)
                sock.close()
        return messages

    def check(self, messages):
        self.assertEqual(messages[0].splitlines()[0], "READY=1")
        self.assertRegex(messages[0], r"STATUS=serving 21 tensors from .*tiny-llama.safetensors")
        self.assertEqual(messages[1], "STOPPING=1")

    def test_path_socket(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "notify")
            self.check(self.run_with_socket(path, path))

    def test_abstract_socket(self):
        name = "stfs-test-%d" % os.getpid()
        self.check(self.run_with_socket("@" + name, "\0" + name))

    def test_watchdog_pings(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "notify")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.settimeout(20)
            mp = os.path.join(d, "mnt")
            os.mkdir(mp)
            env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
            p = subprocess.Popen([lib.STFS, "-f", lib.SAMPLE, mp], env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            try:
                got = [sock.recv(4096).decode() for _ in range(4)]
                self.assertTrue(got[0].startswith("READY=1"))
                self.assertEqual(got[1:], ["WATCHDOG=1"] * 3)
            finally:
                p.terminate()
                lib.reap(p, mp, timeout=20)
                sock.close()


@lib.require_fuse
class UserMounts(unittest.TestCase):
    def test_allow_other_without_fuse_conf_says_so(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to switch users")
        with open("/etc/fuse.conf") if os.path.exists("/etc/fuse.conf") else open(os.devnull) as f:
            if any(ln.strip() == "user_allow_other" for ln in f):
                self.skipTest("this machine allows user_allow_other")
        with tempfile.TemporaryDirectory() as d:
            os.chmod(d, 0o777)
            mp = os.path.join(d, "mnt")
            os.mkdir(mp)
            os.chown(mp, 65534, 65534)
            src = os.path.join(d, "m.safetensors")
            subprocess.run(["cp", lib.SAMPLE, src], check=True)
            os.chmod(src, 0o644)
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                lib.stfs_for_other_users(), "-o", "allow_other", src, mp],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("user_allow_other", r.stderr)
            self.assertIn("/etc/fuse.conf", r.stderr)
            self.assertIsNone(mounted(mp))


if __name__ == "__main__":
    unittest.main()
