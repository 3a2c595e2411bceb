"""The daemon's confinement (src/mount/sandbox.hpp): stfs --sandbox-test for
every source kind, what a live daemon's /proc/PID/status shows, the
options, links that a rebuild finds pointing elsewhere, and an ordinary
user's mount in their home through fusermount3."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import stfs_testlib as lib
from stfs_testlib import Mount as PlainMount

# These tests read a folder's tensors at X.safetensors/ (stfs_testlib.py).
lib.FOLDER_DEFAULTS = ["-o", "model_dirs"]

CAP_DAC_READ_SEARCH = 1 << 2


def setUpModule():
    # Under ASan these daemons keep the sandbox on, so LeakSanitizer's
    # exit-time check (a clone and ptrace it refuses) is off for them.
    if os.environ.get("STFS_SANITIZER") == "asan":
        os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"

ATTACKS = ("read /etc/shadow", "list /root", "create a file in /tmp", "exec /bin/sh",
           "open a TCP socket", "ptrace another process", "setuid(0)", "raise every capability")


def Mount(source, *options):
    """A mount with the sandbox on, even where the suite turns it off (ASan)."""
    return PlainMount(source, "-o", "sandbox=on", *options)


def status_of(pid):
    """/proc/PID/status as a dict of its fields."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


def watchers_of(mountpoint):
    """PIDs of the supervisors (supervisor.hpp) of `mountpoint`."""
    return lib.supervisors_of(mountpoint)


def copy_sample(folder, name="m.safetensors"):
    path = os.path.join(folder, name)
    shutil.copyfile(lib.SAMPLE, path)
    os.chmod(path, 0o644)
    return path


def make_hf_cache(root):
    """models--org--m/{blobs/<hash>, snapshots/rev/model.safetensors ->
    ../../blobs/<hash>}, as huggingface_hub lays it out; returns the
    snapshot folder and the blobs folder."""
    repo = os.path.join(root, "models--org--m")
    blobs = os.path.join(repo, "blobs")
    snap = os.path.join(repo, "snapshots", "rev")
    os.makedirs(blobs)
    os.makedirs(snap)
    copy_sample(blobs, "0123abcd")
    os.symlink("../../blobs/0123abcd", os.path.join(snap, "model.safetensors"))
    return snap, blobs


@contextlib.contextmanager
def dev_fuse_mode(mode):
    """/dev/fuse set to `mode` for the block, restored even on failure."""
    old = os.stat("/dev/fuse").st_mode & 0o7777
    os.chmod("/dev/fuse", mode)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", old)


@lib.require_fuse
class SandboxTest(unittest.TestCase):
    """stfs --sandbox-test SOURCE refuses every attempt, for every kind."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stfs-sbx-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def selftest(self, source, *opts):
        r = lib.run_stfs("--sandbox-test", source, "-o", "sandbox=on", *opts, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("every attempt was refused", r.stdout)
        for attack in ATTACKS:
            line = [ln for ln in r.stdout.splitlines() if ln.strip().startswith(attack)]
            self.assertEqual(len(line), 1, (attack, r.stdout))
            self.assertIn("refused", line[0])
        self.assertNotIn("ALLOWED", r.stdout)
        return r.stdout

    def test_file(self):
        out = self.selftest(lib.SAMPLE)
        self.assertIn("reads allowed beneath: nothing", out)
        self.assertIn("read the source through a descriptor opened before", out)

    def test_folder(self):
        copy_sample(self.tmp)
        out = self.selftest(self.tmp)
        self.assertIn("\n    %s\n" % os.path.realpath(self.tmp), out)
        self.assertRegex(out, r"open a file beneath the source .* allowed, as serving needs")

    def test_hugging_face_cache_links(self):
        snap, blobs = make_hf_cache(self.tmp)
        out = self.selftest(snap)
        # The snapshot's links resolve into blobs/: readable, nothing more.
        self.assertIn("\n    %s\n" % os.path.realpath(blobs), out)
        self.assertIn("\n    %s\n" % os.path.realpath(snap), out)

    def test_a_link_to_a_plain_file_outside_opens_that_file_only(self):
        # A hostile folder's `notes.json -> /etc/hostname` must not open /etc.
        copy_sample(self.tmp)
        os.symlink("/etc/hostname", os.path.join(self.tmp, "notes.json"))
        out = self.selftest(self.tmp)
        self.assertIn("\n    %s\n" % os.path.realpath("/etc/hostname"), out)
        self.assertNotIn("\n    /etc\n", out)

    def test_fuse_source(self):
        if not shutil.which("bindfs") or os.geteuid() != 0:
            self.skipTest("needs bindfs and root")
        src = os.path.join(self.tmp, "src")
        lower = os.path.join(self.tmp, "lower")
        os.mkdir(src)
        os.mkdir(lower)
        copy_sample(src)
        p = subprocess.Popen(["bindfs", "-f", src, lower], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(lib.wait_for(lambda: lib.find_mount(lower) is not None, 20))
            self.selftest(lower)
            self.selftest(os.path.join(lower, "m.safetensors"))
        finally:
            subprocess.run(["fusermount3", "-u", lower], capture_output=True)
            if p.poll() is None:
                subprocess.run(["fusermount3", "-uz", lower], capture_output=True)
                p.kill()
            p.wait()

    def test_the_selftest_can_fail(self):
        # With the sandbox off the same attempts get through: exit 1.
        r = lib.run_stfs("--sandbox-test", lib.SAMPLE, "-o", "sandbox=off", timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("ALLOWED", r.stdout)
        self.assertIn("the sandbox does NOT hold", r.stdout)

    def test_usage(self):
        r = lib.run_stfs("--sandbox-test")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--sandbox-test needs one SOURCE", r.stderr)


@lib.require_fuse
class LiveDaemon(unittest.TestCase):
    """What /proc/PID/status of a serving daemon shows."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stfs-sbx-")
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def confined(self, mnt, cap_eff):
        # The mount appears before the daemon confines itself; the first
        # request is answered after (what a reader can reach is confined).
        os.listdir(mnt.path)
        st = status_of(mnt.daemon_pid())
        self.assertEqual(st["NoNewPrivs"], "1")
        self.assertEqual(st["Seccomp"], "2")
        self.assertEqual(int(st["CapEff"], 16), cap_eff)
        self.assertEqual(int(st["CapPrm"], 16), cap_eff)
        self.assertEqual(int(st["CapAmb"], 16), 0)
        if os.geteuid() == 0:
            self.assertEqual(int(st["CapBnd"], 16), cap_eff)
        return st

    def test_file_source_keeps_nothing(self):
        with Mount(lib.SAMPLE, "-v") as mnt:
            self.assertIn(b"lm_head.weight", os.listdir(os.fsencode(mnt.path)))
            self.confined(mnt, 0)
            self.assertIn("daemon confined", mnt.log())

    def test_folder_owned_by_root_keeps_nothing(self):
        copy_sample(self.tmp)
        with Mount(self.tmp) as mnt:
            self.assertTrue(read(os.path.join(mnt.path, "m.safetensors", "lm_head.weight")))
            self.confined(mnt, 0)

    def test_folder_others_own_keeps_dac_read_search(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        os.chown(self.tmp, 65534, 65534)
        os.chmod(self.tmp, 0o700)
        path = copy_sample(self.tmp)
        os.chown(path, 65534, 65534)
        os.chmod(path, 0o600)
        with Mount(self.tmp, "-o", "uid=0") as mnt:
            self.confined(mnt, CAP_DAC_READ_SEARCH)
            # A model added later, as private as the first: still read.
            second = os.path.join(self.tmp, "n.safetensors")
            shutil.copyfile(lib.SAMPLE, second)
            os.chown(second, 65534, 65534)
            os.chmod(second, 0o600)
            self.assertTrue(lib.wait_for(
                lambda: os.path.isdir(os.path.join(mnt.path, "n.safetensors")), 10), mnt.log())
            self.assertEqual(read(os.path.join(mnt.path, "n.safetensors", "lm_head.weight")),
                             read(os.path.join(mnt.path, "m.safetensors", "lm_head.weight")))

    def test_sandbox_off_says_so(self):
        with Mount(lib.SAMPLE, "-o", "sandbox=off") as mnt:
            os.listdir(mnt.path)
            st = status_of(mnt.daemon_pid())
            self.assertEqual(st["NoNewPrivs"], "0")
            self.assertEqual(st["Seccomp"], "0")
            self.assertIn("the daemon is not confined", read(mnt.stderr_path).decode())

    def test_user_option(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        copy_sample(self.tmp)
        with Mount(self.tmp, "-o", "user=nobody") as mnt:
            self.assertTrue(read(os.path.join(mnt.path, "m.safetensors", "lm_head.weight")))
            st = self.confined(mnt, 0)
            self.assertEqual(st["Uid"].split(), ["65534"] * 4)
        # sandbox=off leaves out the rest of the confinement, not the user.
        with PlainMount(self.tmp, "-o", "sandbox=off,user=nobody") as mnt:
            self.assertTrue(read(os.path.join(mnt.path, "m.safetensors", "lm_head.weight")))
            self.assertEqual(status_of(mnt.daemon_pid())["Uid"].split(), ["65534"] * 4)
            self.assertEqual(int(status_of(mnt.daemon_pid())["CapEff"], 16), 0)
            self.assertIn("the daemon is not confined: sandbox off (-o sandbox=off); serving as "
                          "uid 65534", read(mnt.stderr_path).decode())
        r = lib.run_stfs(lib.SAMPLE, self.tmp, "-o", "user=no-such-user-here")
        self.assertEqual(r.returncode, 1)
        self.assertIn("user=no-such-user-here: no such user", r.stderr)

    def test_user_option_refuses_what_that_user_cannot_read_again(self):
        # A folder is listed again on every change and a polled file opened
        # again by path, as the user= user: the mount fails at once (exit 3,
        # naming the user and the path), not at the first change.
        if os.geteuid() != 0:
            self.skipTest("needs root")
        src = os.path.join(self.tmp, "private")
        os.mkdir(src, 0o700)
        model = copy_sample(src)
        mp = os.path.join(self.tmp, "mnt")
        os.mkdir(mp)
        for source, opts in ((src, "user=nobody"), (model, "user=nobody,poll=1")):
            with self.subTest(source=source):
                r = lib.run_stfs(source, mp, "-o", "sandbox=on," + opts)
                try:
                    self.assertEqual(r.returncode, 3, r.stderr)
                    self.assertIn("user=nobody cannot read %s: Permission denied" % source,
                                  r.stderr)
                    self.assertIsNone(lib.find_mount(mp))
                    self.assertEqual(lib.pids_serving(mp), [])
                    self.assertTrue(lib.wait_for(lambda: watchers_of(mp) == [], 5))
                finally:
                    if lib.find_mount(mp):
                        subprocess.run(["fusermount3", "-uz", mp], capture_output=True)
        # Once that user may read them, both mount and serve as that user.
        os.chmod(src, 0o755)
        for source, opts in ((src, ()), (model, ("-o", "poll=1"))):
            with self.subTest(source=source), Mount(source, "-o", "user=nobody", *opts) as mnt:
                name = "m.safetensors/lm_head.weight" if source == src else "lm_head.weight"
                self.assertTrue(read(os.path.join(mnt.path, name)))
                self.assertEqual(status_of(mnt.daemon_pid())["Uid"].split(), ["65534"] * 4)
                self.assertNotIn("cannot", lib.without_asan_sandbox_line(mnt.log()))

    def test_a_folder_that_turns_unreadable_keeps_its_tree(self):
        # The folder changes after the daemon (user=nobody) lost the right to
        # list it: the rebuild fails, says why, and the mount keeps serving
        # what it served (not an empty folder).
        if os.geteuid() != 0:
            self.skipTest("needs root")
        src = os.path.join(self.tmp, "models")
        os.mkdir(src, 0o755)
        copy_sample(src)
        with Mount(src, "-o", "user=nobody") as mnt:
            before = read(os.path.join(mnt.path, "m.safetensors", "lm_head.weight"))
            os.chmod(src, 0o700)
            copy_sample(src, "n.safetensors")
            self.assertTrue(lib.wait_for(lambda: "still serving the old tree" in mnt.log(), 10),
                            mnt.log())
            self.assertIn("cannot list %s: Permission denied" % src, mnt.log())
            self.assertEqual(sorted(os.listdir(mnt.path)), ["m.safetensors"])
            self.assertEqual(read(os.path.join(mnt.path, "m.safetensors", "lm_head.weight")),
                             before)

    def test_signal_unmounts_through_the_watcher(self):
        # The confined daemon cannot umount: its watcher does, before it exits.
        mnt = Mount(lib.SAMPLE)
        try:
            mnt.start()
            os.kill(mnt.proc.pid, 15)
            self.assertEqual(mnt.proc.wait(timeout=10), 0, mnt.log())
            self.assertIsNone(lib.find_mount(mnt.path))
            self.assertTrue(lib.wait_for(lambda: watchers_of(mnt.path) == [], 5))
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)


@lib.require_fuse
class Links(unittest.TestCase):
    """Links a rebuild finds pointing outside what the sandbox may read."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stfs-sbx-")
        self.snap, self.blobs = make_hf_cache(self.tmp)
        self.elsewhere = os.path.join(self.tmp, "elsewhere")
        os.mkdir(self.elsewhere)
        copy_sample(self.elsewhere, "other.safetensors")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add_link(self):
        os.symlink(os.path.join(self.elsewhere, "other.safetensors"),
                   os.path.join(self.snap, "late.safetensors"))

    def test_blobs_read_and_a_new_link_elsewhere_left_out_with_the_remedy(self):
        with Mount(self.snap) as mnt:
            want = read(os.path.join(mnt.path, "model.safetensors", "lm_head.weight"))
            # A new revision's blob lands in blobs/: still readable.
            copy_sample(self.blobs, "4567ef01")
            os.symlink("../../blobs/4567ef01", os.path.join(self.snap, "second.safetensors"))
            self.assertTrue(lib.wait_for(
                lambda: os.path.isdir(os.path.join(mnt.path, "second.safetensors")), 10))
            self.assertEqual(read(os.path.join(mnt.path, "second.safetensors",
                                               "lm_head.weight")), want)
            self.add_link()
            self.assertTrue(lib.wait_for(lambda: "late.safetensors" in mnt.log(), 10))
            time.sleep(0.3)
            self.assertNotIn("late.safetensors", os.listdir(mnt.path))
            log = mnt.log()
            self.assertIn("outside what this mount's sandbox may read", log)
            self.assertIn(os.path.realpath(self.elsewhere), log)
            self.assertIn("-o sandbox_read=DIR", log)

    def test_sandbox_read_lets_it_in(self):
        with Mount(self.snap, "-o", "sandbox_read=" + os.path.realpath(self.elsewhere)) as mnt:
            os.listdir(mnt.path)  # the watcher starts with the first request
            self.add_link()
            self.assertTrue(lib.wait_for(
                lambda: os.path.isdir(os.path.join(mnt.path, "late.safetensors")), 10),
                mnt.log())
            self.assertEqual(read(os.path.join(mnt.path, "late.safetensors", "lm_head.weight")),
                             read(os.path.join(mnt.path, "model.safetensors", "lm_head.weight")))

    def test_sandbox_read_must_be_absolute(self):
        r = lib.run_stfs(self.snap, self.tmp, "-o", "sandbox_read=relative/dir")
        self.assertEqual(r.returncode, 1)
        self.assertIn("sandbox_read=relative/dir", r.stderr)


@lib.require_fuse
class OrdinaryUser(unittest.TestCase):
    """A user with no privileges mounts their own model in their home,
    through fusermount3: confined all the same, and unmounted by them."""

    def test_user_mount_in_home(self):
        if os.geteuid() != 0 or not shutil.which("fusermount3"):
            self.skipTest("needs root to become the user")
        home = tempfile.mkdtemp(prefix="stfs-home-")
        os.chmod(home, 0o755)
        os.chown(home, 65534, 65534)
        try:
            models = os.path.join(home, "models")
            os.mkdir(models)
            copy_sample(models)
            for p in (models, os.path.join(models, "m.safetensors")):
                os.chown(p, 65534, 65534)
            mp = os.path.join(home, "mnt")
            os.mkdir(mp)
            os.chown(mp, 65534, 65534)
            as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            env = dict(os.environ, HOME=home)
            with dev_fuse_mode(0o666):
                for source in (os.path.join(models, "m.safetensors"), models):
                    p = subprocess.Popen(as_user + [lib.stfs_for_other_users(), "-f", "-o",
                                                    "sandbox=on", source,
                                                    mp], env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
                    try:
                        self.assertTrue(lib.wait_for(lambda: lib.find_mount(mp) is not None,
                                                     20), p.stderr)
                        names = subprocess.run(as_user + ["ls", mp], capture_output=True,
                                               text=True, env=env).stdout.split()
                        self.assertTrue(names, source)
                        st = status_of(lib.daemon_under(p.pid))
                        self.assertEqual(st["Uid"].split()[0], "65534")
                        self.assertEqual(st["NoNewPrivs"], "1")
                        self.assertEqual(st["Seccomp"], "2")
                        self.assertEqual(int(st["CapEff"], 16), 0)
                        r = subprocess.run(as_user + ["fusermount3", "-u", mp],
                                           capture_output=True, text=True, env=env)
                        self.assertEqual(r.returncode, 0, r.stderr)
                        self.assertEqual(p.wait(timeout=10), 0)
                        self.assertIsNone(lib.find_mount(mp))
                    finally:
                        if lib.find_mount(mp) is not None:
                            subprocess.run(["fusermount3", "-uz", mp], capture_output=True)
                        if p.poll() is None:
                            p.kill()
                        p.wait()
                        p.stderr.close()
        finally:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
