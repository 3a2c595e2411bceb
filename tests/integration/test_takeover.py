"""A mount outlives its daemon (supervisor.hpp): readers that check every
byte see no error while the daemon is killed, crashes, is killed by its own
seccomp filter, or is replaced with `stfs --restart`; a request that kills
every daemon ends in an unmount; and a remount never loses the new mount.

Readers: threads that pread with the page cache dropped first (so each read
reaches the daemon) and compare with the source, a directory walker that
keeps a directory stream open, and a process that reads through a shared
mapping (a SIGBUS would kill it). Each run prints the distribution of read
latencies: the pause a takeover costs a reader."""
import errno
import mmap
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import stfs_testlib as lib
from stfs_testlib import Mount

CRASH_PRELOAD = os.environ.get("STFS_CRASH_PRELOAD", "")
SANITIZER = os.environ.get("STFS_SANITIZER", "")
# A SIGSEGV sent from outside is a death here, not a report: under ASan the
# runtime would catch it and print one (which fails a clean exit).
SEGV_ENV = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":handle_segv=0",
                TSAN_OPTIONS=os.environ.get("TSAN_OPTIONS", "") + ":handle_segv=0")


def resends():
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return (major, minor) >= (6, 9)


def require_resend(cls):
    return unittest.skipUnless(resends(), "this kernel cannot resend requests (Linux 6.9+)")(cls)


def make_model(path, count=6, size=2 << 20, seed=0):
    tensors = [("t%02d" % i, "U8", [size], lib.random_bytes(size, seed + i)) for i in range(count)]
    lib.write_safetensors(path, tensors)
    return {name: blob for name, _, _, blob in tensors}


def make_folder(root, seed=0):
    """A model folder with a sharded checkpoint (so -o packed has a view).
    Returns {path inside the mount: expected bytes} for every tensor file,
    found by reading the sources independently."""
    shard_names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    for k, shard in enumerate(shard_names):
        tensors = [("layer%d.t%d" % (k, i), "U8", [1 << 20], lib.random_bytes(1 << 20, seed + 10 * k + i))
                   for i in range(3)]
        lib.write_safetensors(os.path.join(root, shard), tensors)
        for name, _, _, _ in tensors:
            weight_map[name] = shard
    import json
    with open(os.path.join(root, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(os.path.join(root, "config.json"), "w") as f:
        f.write('{"model_type": "test"}\n')
    return shard_names


def tensor_files(mountpoint, root, shard_names):
    """{absolute path in the mount: expected bytes}, from the sources: every
    tensor file, and in the loader layout each model file itself (what a
    loader reads mid-load)."""
    out = {}
    for shard in shard_names:
        src = os.path.join(root, shard)
        header, _, start = lib.read_header(src)
        # The tensor directory: X.safetensors.d/ in the loader layout,
        # X.safetensors/ in the directory layout.
        d = os.path.join(mountpoint, shard + ".d")
        if os.path.isdir(d):
            with open(src, "rb") as f:
                out[os.path.join(mountpoint, shard)] = f.read()
        else:
            d = os.path.join(mountpoint, shard)
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            out[os.path.join(d, os.fsdecode(lib.map_name(name)))] = lib.tensor_bytes(src, entry, start)
    return out


MAPPED_READER = r"""
import mmap, os, random, sys
path, want_path, stop = sys.argv[1], sys.argv[2], sys.argv[3]
want = open(want_path, "rb").read()
fd = os.open(path, os.O_RDONLY)
m = mmap.mmap(fd, len(want), mmap.MAP_SHARED, mmap.PROT_READ)
rng = random.Random(1)
n = 0
while not os.path.exists(stop):
    # Drop what the mapping and the cache hold: the next touch faults and
    # reaches the daemon.
    m.madvise(mmap.MADV_DONTNEED)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    off = rng.randrange(len(want) - 4096)
    if m[off:off + 4096] != want[off:off + 4096]:
        print("wrong bytes at", off, flush=True)
        sys.exit(1)
    n += 1
print("mapped reads", n, flush=True)
"""


class Readers:
    """Readers of a mount, started together, stopped together."""

    def __init__(self, files, walk_dir, mapped=None, threads=3):
        self.files = files
        self.names = sorted(files)
        self.walk_dir = walk_dir
        self.walk_names = sorted(os.listdir(walk_dir))
        self.stop_event = threading.Event()
        self.errors = []
        self.wrong = []
        self.latencies = []
        self.reads = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.pread_loop, args=(i,)) for i in range(threads)]
        self.threads.append(threading.Thread(target=self.walk_loop))
        self.tmp = tempfile.mkdtemp(prefix="stfs-readers-")
        self.stop_file = os.path.join(self.tmp, "stop")
        self.mapped_proc = None
        if mapped:
            want = os.path.join(self.tmp, "want")
            with open(want, "wb") as f:
                f.write(files[mapped])
            self.mapped_proc = subprocess.Popen(
                [sys.executable, "-c", MAPPED_READER, mapped, want, self.stop_file],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def note(self, ok, t0, what):
        with self.lock:
            self.latencies.append(time.monotonic() - t0)
            self.reads += 1
            if not ok:
                self.wrong.append(what)

    def pread_loop(self, seed):
        rng = random.Random(seed)
        while not self.stop_event.is_set():
            name = rng.choice(self.names)
            want = self.files[name]
            off = rng.randrange(len(want))
            size = rng.choice((4096, 65536, 1 << 20))
            t0 = time.monotonic()
            try:
                fd = os.open(name, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    got = os.pread(fd, size, off)
                finally:
                    os.close(fd)
            except OSError as e:
                with self.lock:
                    self.errors.append((name, e.errno))
                continue
            self.note(got == want[off:off + size], t0, (name, off, len(got)))

    def walk_loop(self):
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            try:
                # One directory stream open across a few reads of it.
                with os.scandir(self.walk_dir) as it:
                    seen = []
                    for e in it:
                        seen.append(e.name)
                        e.stat()
                        time.sleep(0.001)
            except OSError as e:
                with self.lock:
                    self.errors.append((self.walk_dir, e.errno))
                continue
            self.note(sorted(seen) == self.walk_names, t0, ("listing", sorted(seen)))

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=60)
        alive = [t for t in self.threads if t.is_alive()]
        mapped = None
        if self.mapped_proc:
            open(self.stop_file, "w").close()
            out, _ = self.mapped_proc.communicate(timeout=60)
            mapped = (self.mapped_proc.returncode, out)
        return alive, mapped

    def summary(self):
        lat = sorted(self.latencies)
        if not lat:
            return "no reads"

        def q(p):
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
        return ("%d reads: latency p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms"
                % (len(lat), q(0.5), q(0.99), q(0.999), lat[-1] * 1000))


def memory_cgroup(test, limit):
    """A new memory cgroup (v1 or v2) limited to `limit` bytes, removed at
    the test's end; skips the test where none can be made."""
    if os.geteuid() != 0:
        test.skipTest("needs root to make a memory cgroup")
    base = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(",") and os.path.isdir("/sys/fs/cgroup/memory"):
                base, limit_file = "/sys/fs/cgroup/memory" + path, "memory.limit_in_bytes"
            elif controllers == "" and base is None:
                for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                    if os.path.exists(os.path.join(root + path, "memory.max")):
                        base, limit_file = root + path, "memory.max"
    if base is None:
        test.skipTest("no memory cgroup to make one in")
    path = os.path.join(base, "stfs-oom-%d" % os.getpid())
    try:
        os.mkdir(path)
        with open(os.path.join(path, limit_file), "w") as f:
            f.write(str(limit))
    except OSError as e:
        test.skipTest("cannot make a memory cgroup in %s: %s" % (base, e))

    def remove():
        # Its processes are gone once the mount has stopped.
        lib.wait_for(lambda: not open(os.path.join(path, "cgroup.procs")).read().strip(), 30)
        os.rmdir(path)
    test.addCleanup(remove)
    return path


class TakeoverCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stfs-takeover-")

    def tearDown(self):
        subprocess.run(["rm", "-rf", self.tmp])

    def crashing_mount(self, how, who):
        """A file mount whose daemons (`who`: the first, or every one) die
        on the READ of t00's first bytes, `how`: segv or seccomp
        (crash_preload.cpp). Returns the mount and the tensors' bytes."""
        src = os.path.join(self.tmp, "m.safetensors")
        blobs = make_model(src)
        _, _, start = lib.read_header(src)
        mnt = Mount(src)
        mnt.env = dict(os.environ, LD_PRELOAD=CRASH_PRELOAD, STFS_CRASH_AT=str(start + 100),
                       STFS_CRASH_HOW=how, STFS_CRASH_WHO=who,
                       ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                       ":verify_asan_link_order=0")
        mnt.start()
        return mnt, blobs

    def file_mount(self, *options, env=SEGV_ENV):
        src = os.path.join(self.tmp, "m.safetensors")
        blobs = make_model(src)
        mnt = Mount(src, *options)
        mnt.env = env
        mnt.start()
        return mnt, src, {os.path.join(mnt.path, n): b for n, b in blobs.items()}

    def folder_mount(self, *options):
        root = os.path.join(self.tmp, "models")
        os.mkdir(root)
        shards = make_folder(root)
        mnt = Mount(root, *options)
        mnt.env = SEGV_ENV
        mnt.start()
        try:
            files = tensor_files(mnt.path, root, shards)
        except BaseException:
            mnt.stop()
            raise
        return mnt, files

    def run_readers(self, mnt, files, disturb, mapped=True):
        """Starts readers, runs disturb(), stops them; asserts 0 errors and
        0 wrong bytes, and that the mount still serves."""
        readers = Readers(files, os.path.dirname(sorted(files)[0]),
                          mapped=sorted(files)[0] if mapped else None).start()
        try:
            time.sleep(0.3)
            disturb()
            time.sleep(0.5)
        except BaseException:
            readers.stop()
            print("\nthe mount's log:\n" + mnt.log()[-6000:], file=sys.stderr)
            raise
        alive, mapped_result = readers.stop()
        print("\n%s: %s" % (self.id(), readers.summary()), file=sys.stderr)
        self.assertEqual(alive, [], "a reader hung")
        self.assertEqual(readers.errors[:5], [], "reader errors (%d), the mount's log:\n%s"
                         % (len(readers.errors), mnt.log()[-6000:]))
        self.assertEqual(readers.wrong, [], "wrong bytes")
        self.assertGreater(readers.reads, 10)
        if mapped_result is not None:
            self.assertEqual(mapped_result[0], 0, "the mapped reader: %r" % (mapped_result,))
        # Still serving, every byte.
        for path, want in files.items():
            with open(path, "rb") as f:
                self.assertEqual(f.read(), want, path)
        return readers


@lib.require_fuse
class Remount(unittest.TestCase):
    """An old mount's end never unmounts a new mount at the same path (the
    kernel reuses device numbers)."""

    def remount_many(self, source, cycles, pause):
        mp = tempfile.mkdtemp(prefix="stfs-remount-")
        try:
            for i in range(cycles):
                r = lib.run_stfs(source, mp)
                self.assertEqual(r.returncode, 0, "cycle %d: %s" % (i, r.stderr))
                time.sleep(pause)
                self.assertIsNotNone(lib.find_mount(mp), "cycle %d: the new mount is gone" % i)
                self.assertTrue(os.listdir(mp), "cycle %d" % i)
                u = subprocess.run(["fusermount3", "-u", mp], capture_output=True, text=True)
                self.assertEqual(u.returncode, 0, "cycle %d: %s" % (i, u.stderr))
            # The last one, watched for longer than the old ends take.
            r = lib.run_stfs(source, mp)
            self.assertEqual(r.returncode, 0, r.stderr)
            time.sleep(2.0)
            self.assertIsNotNone(lib.find_mount(mp), "the last mount is gone")
            self.assertTrue(os.listdir(mp))
        finally:
            for _ in range(2):
                if lib.find_mount(mp):
                    subprocess.run(["fusermount3", "-u", mp], capture_output=True)
            lib.wait_for(lambda: not lib.stfs_processes(mp), 10)
            for p in lib.stfs_processes(mp):
                os.kill(p, signal.SIGKILL)
            if lib.find_mount(mp):
                subprocess.run(["fusermount3", "-uz", mp], capture_output=True)
            os.rmdir(mp)

    def test_file_source_no_pause(self):
        self.remount_many(lib.SAMPLE, int(os.environ.get("STFS_REMOUNT_CYCLES", "60")), 0)

    def test_file_and_folder_sources_watched(self):
        with tempfile.TemporaryDirectory() as d:
            import shutil
            shutil.copy(lib.SAMPLE, os.path.join(d, "m.safetensors"))
            # The old daemon's end (its unmount) comes within 1.5 s.
            self.remount_many(d, 5, 1.6)
            self.remount_many(lib.SAMPLE, 5, 1.6)
            self.remount_many(d, 20, 0)


@lib.require_fuse
@require_resend
class Takeover(TakeoverCase):
    def kill_daemon(self, mnt, sig, times=1, every=0.0):
        pids = []
        last = None
        for _ in range(times):
            pid = mnt.daemon_pid(other_than=last)
            os.kill(pid, sig)
            pids.append(pid)
            last = pid
            time.sleep(every)
        # A new daemon serves.
        new = mnt.daemon_pid(other_than=last)
        self.assertNotIn(new, pids)
        return pids

    def test_sigkill_every_200ms_file(self):
        mnt, _, files = self.file_mount()
        try:
            seconds = float(os.environ.get("STFS_KILL_SECONDS", "20"))
            self.run_readers(mnt, files, lambda: self.kill_daemon(
                mnt, signal.SIGKILL, int(seconds / 0.2), 0.2))
            self.assertIn("a new daemon takes the mount over", mnt.log())
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)
        self.assertIsNone(lib.find_mount(mnt.path))

    def test_file_mount_acceptance(self):
        # 12 SIGKILLs 1.5 s apart, a SIGSEGV, and 4 restarts.
        mnt, _, files = self.file_mount()
        try:
            def disturb():
                self.kill_daemon(mnt, signal.SIGKILL, 12, 1.5)
                self.kill_daemon(mnt, signal.SIGSEGV, 1, 0.5)
                for _ in range(4):
                    r = lib.run_stfs("--restart", mnt.path, timeout=120)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    time.sleep(0.5)
            self.run_readers(mnt, files, disturb)
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)

    def test_folder_mount_acceptance(self):
        mnt, files = self.folder_mount("-o", "packed")
        try:
            packed = os.path.join(mnt.path, "__packed__", "model.safetensors")
            self.assertTrue(os.path.isfile(packed), os.listdir(mnt.path))

            def disturb():
                self.kill_daemon(mnt, signal.SIGKILL, 12, 1.5)
                self.kill_daemon(mnt, signal.SIGSEGV, 1, 0.5)
                for _ in range(4):
                    r = lib.run_stfs("--restart", mnt.path, timeout=120)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    time.sleep(0.5)
            self.run_readers(mnt, files, disturb)
            # The packed view still reads as one valid file.
            header, _, _ = lib.read_header(packed)
            self.assertEqual(len([k for k in header if k != "__metadata__"]), 6)
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)

    @unittest.skipIf(SANITIZER == "asan", "the ASan run mounts with the sandbox off")
    def test_killed_by_its_own_seccomp_filter(self):
        mnt, blobs = self.crashing_mount("seccomp", "first")
        files = {os.path.join(mnt.path, n): b for n, b in blobs.items()}
        try:
            first = mnt.daemon_pid()

            def disturb():
                # Reading t00's first bytes makes the first daemon execve.
                with open(os.path.join(mnt.path, "t00"), "rb") as f:
                    self.assertEqual(f.read(4096), blobs["t00"][:4096])
                self.assertNotEqual(mnt.daemon_pid(other_than=first), first)
            self.run_readers(mnt, files, disturb)
            self.assertIn("killed by SYS", mnt.log())
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)

    def test_polled_file_source(self):
        # A polled source numbers inodes by hash, as a folder does.
        mnt, _, files = self.file_mount("-o", "poll=1")
        try:
            self.run_readers(mnt, files, lambda: self.kill_daemon(mnt, signal.SIGKILL, 5, 0.7))
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)

    def test_a_file_source_replaced_since_the_mount_is_not_taken_over(self):
        # Its inode numbers are its entries' order: a new daemon would serve
        # other bytes under them. The mount ends as without a supervisor.
        mnt, src, files = self.file_mount()
        try:
            path = sorted(files)[0]
            with open(path, "rb") as f:
                self.assertEqual(f.read(), files[path])
            make_model(src + ".new", seed=99)
            os.rename(src + ".new", src)
            os.kill(mnt.daemon_pid(), signal.SIGKILL)
            self.assertEqual(mnt.proc.wait(timeout=60), 3)
            self.assertIn("changed since it was mounted", mnt.log())
            with self.assertRaises(OSError) as cm:
                os.stat(path)
            self.assertIn(cm.exception.errno, (errno.ENOTCONN, errno.ENOENT))
        finally:
            mnt.stop()

    def test_killed_between_reading_init_and_answering_it(self):
        # The first daemon hands INIT to the supervisor and dies before
        # answering it: the resend brings the kernel's INIT back after the
        # new daemon was fed the copy. libfuse alone would refuse a second
        # INIT, and the kernel would then refuse every request
        # (ECONNREFUSED): the new daemon answers it as it answered the copy.
        for options in (("-v",), ("-v", "-o", "direct_io")):
            env = dict(SEGV_ENV, LD_PRELOAD=CRASH_PRELOAD, STFS_CRASH_AT="init",
                       ASAN_OPTIONS=SEGV_ENV["ASAN_OPTIONS"] + ":verify_asan_link_order=0")
            mnt, src, files = self.file_mount(*options, env=env)
            try:
                for path, want in files.items():
                    with open(path, "rb") as f:
                        self.assertEqual(f.read(), want, path)
                if "direct_io" in options:  # the amended INIT answer too: mappings work
                    with open(sorted(files)[0], "rb") as f, \
                            mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
                        self.assertEqual(bytes(m), files[sorted(files)[0]])
                log = mnt.log()
                self.assertIn("a new daemon takes the mount over", log)
                self.assertIn("answered the kernel's INIT", log)
            finally:
                status = mnt.stop()
            mnt.check_clean_exit(status)
            os.unlink(src)

    def test_an_ordinary_users_mount_is_taken_over_too(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to become the user")
        home = tempfile.mkdtemp(prefix="stfs-home-", dir=self.tmp)
        os.chmod(self.tmp, 0o755)
        os.chmod(home, 0o755)
        src = os.path.join(home, "m.safetensors")
        blobs = make_model(src)
        mp = os.path.join(home, "mnt")
        os.mkdir(mp)
        for p in (home, src, mp):
            os.chown(p, 65534, 65534)
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        old_mode = os.stat("/dev/fuse").st_mode & 0o7777
        os.chmod("/dev/fuse", 0o666)
        p = subprocess.Popen(as_user + [lib.stfs_for_other_users(), "-f", src, mp],
                             env=dict(os.environ, HOME=home), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self.assertTrue(lib.wait_for(lambda: lib.find_mount(mp) is not None, 30))
            files = {os.path.join(mp, n): b for n, b in blobs.items()}
            first = lib.daemon_under(p.pid)
            os.kill(first, signal.SIGKILL)
            second = lib.daemon_under(p.pid, other_than=first)
            # Only the user reads a mount made without allow_other.
            for path, want in files.items():
                got = subprocess.run(as_user + ["cat", path], capture_output=True, timeout=30)
                self.assertEqual(got.returncode, 0, got.stderr)
                self.assertEqual(got.stdout, want, path)
            # The user restarts their own mount.
            r = subprocess.run(as_user + [lib.stfs_for_other_users(), "--restart", mp],
                               capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, HOME=home))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotEqual(lib.daemon_under(p.pid, other_than=second), second)
            u = subprocess.run(as_user + ["fusermount3", "-u", mp], capture_output=True, text=True)
            self.assertEqual(u.returncode, 0, u.stderr)
            self.assertEqual(p.wait(timeout=30), 0)
        finally:
            os.chmod("/dev/fuse", old_mode)
            if lib.find_mount(mp):
                subprocess.run(["fusermount3", "-uz", mp], capture_output=True)
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stderr.close()

    def test_handles_of_an_earlier_daemon(self):
        # A folder mount opens with handles (no stateless opens): files
        # opened before a takeover read on after it, and an unknown handle
        # is never followed.
        mnt, files = self.folder_mount()
        try:
            fds = {p: os.open(p, os.O_RDONLY) for p in files}
            self.kill_daemon(mnt, signal.SIGKILL)
            for p, fd in fds.items():
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                self.assertEqual(os.pread(fd, len(files[p]), 0), files[p], p)
                os.close(fd)
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)

    def test_supervisor_is_small_and_holds_no_source(self):
        mnt, src, _ = self.file_mount()
        try:
            sup = mnt.supervisor_pid()
            self.assertEqual(lib.comm_of(sup), "stfs-supervise")
            self.assertEqual(lib.comm_of(mnt.daemon_pid()), "stfs")
            targets = []
            for fd in os.listdir("/proc/%d/fd" % sup):
                try:
                    targets.append(os.readlink("/proc/%d/fd/%s" % (sup, fd)))
                except OSError:
                    pass
            self.assertIn("/dev/fuse", targets)
            self.assertFalse([t for t in targets if src in t or self.tmp in t], targets)
            with open("/proc/%d/maps" % sup) as f:
                self.assertNotIn(src, f.read())
            if os.geteuid() == 0 and SANITIZER != "asan":
                with open("/proc/%d/status" % sup) as f:
                    st = dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)
                self.assertEqual(st["NoNewPrivs"].strip(), "1")
                self.assertEqual(st["Seccomp"].strip(), "2")
                # Unmounting (CAP_SYS_ADMIN) and what starting a daemon needs.
                allowed = sum(1 << c for c in (21, 2, 1, 7, 6, 8))
                self.assertEqual(int(st["CapBnd"], 16) & ~allowed, 0, st["CapBnd"])
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)

    def test_supervisor_and_daemon_killed_leave_enotconn(self):
        # With nothing left holding the connection, the mount ends as it
        # did without a supervisor: ENOTCONN and a clear message.
        mnt = Mount(lib.SAMPLE)
        try:
            mnt.start()
            daemon = mnt.daemon_pid()
            os.kill(mnt.proc.pid, signal.SIGKILL)
            mnt.proc.wait(timeout=10)
            os.kill(daemon, signal.SIGKILL)
            lib.wait_for(lambda: not os.path.exists("/proc/%d" % daemon), 10)
            with self.assertRaises(OSError) as cm:
                lib.wait_for(lambda: False, 0.2)
                os.stat(mnt.path)
            self.assertEqual(cm.exception.errno, errno.ENOTCONN)
            r = lib.run_stfs(lib.SAMPLE, mnt.path)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("Transport endpoint is not connected", r.stderr)
            self.assertIn("fusermount3 -u", r.stderr)
        finally:
            mnt.stop()
        self.assertIsNone(lib.find_mount(mnt.path))


@lib.require_fuse
@require_resend
class Poison(TakeoverCase):
    def test_a_request_that_kills_every_daemon_ends_in_an_unmount(self):
        mnt, blobs = self.crashing_mount("segv", "every")
        try:
            # Another tensor reads fine; t00's first page kills its reader.
            with open(os.path.join(mnt.path, "t01"), "rb") as f:
                self.assertEqual(f.read(), blobs["t01"])
            t0 = time.monotonic()
            with self.assertRaises(OSError) as cm:
                with open(os.path.join(mnt.path, "t00"), "rb") as f:
                    f.read(4096)
            self.assertIn(cm.exception.errno, (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED))
            self.assertEqual(mnt.proc.wait(timeout=60), 3)
            self.assertLess(time.monotonic() - t0, 60)
            self.assertIsNone(lib.find_mount(mnt.path))
            log = mnt.log()
            self.assertIn("a request kills every daemon it reaches", log)
            self.assertEqual(log.count("a new daemon takes the mount over"), 2, log)
            self.assertEqual(lib.stfs_processes(mnt.path), [])
        finally:
            mnt.stop()

    def test_a_request_that_runs_every_daemon_out_of_memory_ends_in_an_unmount(self):
        # The OOM killer's SIGKILL looks like a kill from outside; the
        # kernel's OOM count tells them apart, so this ends too.
        cgroup = memory_cgroup(self, 512 << 20)
        mnt, blobs = self.crashing_mount("oom", "every")
        try:
            for pid in (mnt.proc.pid, mnt.daemon_pid()):
                with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            with open(os.path.join(mnt.path, "t01"), "rb") as f:
                self.assertEqual(f.read(), blobs["t01"])
            with self.assertRaises(OSError) as cm:
                with open(os.path.join(mnt.path, "t00"), "rb") as f:
                    f.read(4096)
            self.assertIn(cm.exception.errno, (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED))
            self.assertEqual(mnt.proc.wait(timeout=120), 3)
            self.assertIsNone(lib.find_mount(mnt.path))
            log = mnt.log()
            self.assertIn("out of memory", log)
            self.assertIn("a request kills every daemon it reaches", log)
            self.assertEqual(log.count("a new daemon takes the mount over"), 2, log)
        finally:
            mnt.stop()

    def test_kills_from_outside_never_make_it_give_up(self):
        mnt, _, files = self.file_mount()
        try:
            seconds = int(os.environ.get("STFS_OUTSIDE_KILL_SECONDS", "30"))

            def disturb():
                last = None
                for _ in range(seconds):
                    last = mnt.daemon_pid(other_than=last)
                    os.kill(last, signal.SIGKILL)
                    time.sleep(1.0)
            self.run_readers(mnt, files, disturb, mapped=False)
            self.assertNotIn("unmounting", mnt.log())
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)


@lib.require_fuse
@require_resend
class Restart(TakeoverCase):
    def test_restart_replaces_the_daemon_under_readers(self):
        mnt, _, files = self.file_mount("-v")
        try:
            def disturb():
                for _ in range(4):
                    old = mnt.daemon_pid()
                    r = lib.run_stfs("--restart", mnt.path, timeout=120)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertIn("served by a new daemon", r.stdout)
                    new = mnt.daemon_pid(other_than=old)
                    self.assertTrue(lib.wait_for(lambda: not os.path.exists("/proc/%d" % old)
                                                 or lib.is_zombie(old), 10))
                    self.assertNotEqual(new, old)
            self.run_readers(mnt, files, disturb)
            self.assertIn("retiring: a new daemon takes the mount over", mnt.log())
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)

    def test_restart_refuses_what_it_cannot_do(self):
        r = lib.run_stfs("--restart", "/")
        self.assertEqual(r.returncode, 3)
        self.assertIn("no stfs mount there", r.stderr)
        r = lib.run_stfs("--restart")
        self.assertEqual(r.returncode, 1)
        mnt, _, _ = self.file_mount()
        try:
            # Another user may not restart it.
            if os.geteuid() == 0:
                r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                    lib.stfs_for_other_users(), "--restart", mnt.path],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 3, r.stderr)
                self.assertIn("cannot restart", r.stderr)
            # A new daemon that cannot serve: the old one keeps the mount.
            old = mnt.daemon_pid()
            os.rename(mnt.source, mnt.source + ".moved")
            r = lib.run_stfs("--restart", mnt.path, timeout=120)
            self.assertEqual(r.returncode, 3, r.stdout)
            self.assertIn("still serves", r.stderr)
            self.assertEqual(mnt.daemon_pid(), old)
            self.assertTrue(os.listdir(mnt.path))
            os.rename(mnt.source + ".moved", mnt.source)
        finally:
            status = mnt.stop()
        mnt.check_clean_exit(status)


if __name__ == "__main__":
    unittest.main()
