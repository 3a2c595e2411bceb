"""Helpers for the mount tests: an independent reading of safetensors files
(Python's json, nothing shared with the C++ parser), the DESIGN.md §3 name
mapping written again from the spec, file writers, and a Mount fixture that
always unmounts: fusermount3 -u, then -uz, then SIGKILL by PID."""
import json
import os
import signal
import struct
import subprocess
import tempfile
import time
import unittest

STFS = os.environ.get("STFS_BIN", "")
SAMPLE = os.environ.get("STFS_SAMPLE", "")
CORPUS = os.environ.get("STFS_CORPUS_DIR") or os.environ.get("STFS_CORPUS_DIR_DEFAULT", "")


def direct_io_maps():
    """Whether this kernel serves shared mappings of direct_io files
    (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6), which stfs asks for with any
    libfuse (init_reply.hpp)."""
    release = os.uname().release.split("-")[0].split(".")[:2]
    return tuple(int(x) for x in release) >= (6, 6)


def fuse_usable():
    return os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK)


def require_fuse(test_case_class):
    """Skips without FUSE, unless STFS_REQUIRE_FUSE=1 makes that a failure."""
    if fuse_usable():
        return test_case_class
    if os.environ.get("STFS_REQUIRE_FUSE") == "1":
        raise RuntimeError("/dev/fuse is not usable and STFS_REQUIRE_FUSE=1")
    return unittest.skip("/dev/fuse is not usable")(test_case_class)


def corpus_files():
    if not CORPUS or not os.path.isdir(CORPUS):
        if os.environ.get("STFS_REQUIRE_CORPUS") == "1":
            raise RuntimeError("corpus missing at %r (STFS_REQUIRE_CORPUS=1)" % CORPUS)
        return []
    out = []
    for root, _, files in os.walk(CORPUS):
        out += [os.path.join(root, f) for f in files if f.endswith(".safetensors")]
    return sorted(out)


# ---- independent reading ----

def read_header(path):
    """(header dict without __metadata__, metadata or None, data start)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    meta = h.pop("__metadata__", None)
    return h, meta, 8 + n


def tensor_bytes(path, entry, start):
    b, e = entry["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + b)
        return f.read(e - b)


# ---- DESIGN.md §3, from the text ----

RESERVED = ("__header__.json", "__metadata__.json")


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def map_name(name, reserved=RESERVED, suffix=b""):
    """The file name of tensor `name`, as bytes; `suffix` (b".npy") is
    appended after step 4, which then applies whenever name and suffix
    together pass 255 bytes."""
    raw = name.encode("utf-8")
    if raw == b"":
        out = b"%"
    elif raw == b".":
        out = b"%2E"
    elif raw == b"..":
        out = b"%2E%2E"
    else:
        out = bytearray()
        for byte in raw:
            if byte in (0x25, 0x2F) or byte < 0x20 or byte == 0x7F:
                out += b"%%%02X" % byte
            else:
                out.append(byte)
        out = bytes(out)
    if out.decode() in reserved:
        out = b"%%%02X" % out[0] + out[1:]
    if len(out) + len(suffix) > 255:
        keep, i = b"", 0
        while i < len(out):
            c = out[i]
            n = 3 if c == 0x25 else 4 if c >= 0xF0 else 3 if c >= 0xE0 else 2 if c >= 0xC0 else 1
            if len(keep) + n > 200:
                break
            keep += out[i:i + n]
            i += n
        out = keep + b"%~" + b"%016x" % fnv1a64(raw)
    return out + suffix


def tree_path(name, names):
    """The path of tensor `name` under -o tree (bytes, relative): components
    split at '.', each mapped on its own; a name that is also a prefix of
    another lives inside its directory as __tensor__."""
    parts = name.split(".")
    out = [map_name(p, RESERVED + ("__tensor__",) if i == 0 else ("__tensor__",))
           for i, p in enumerate(parts)]
    if any(other.startswith(name + ".") for other in names):
        out.append(b"__tensor__")
    return b"/".join(out)


# ---- writing files ----

def write_safetensors(path, tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes), laid out in that order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def random_bytes(n, seed):
    import random
    return random.Random(seed).randbytes(n)


# ---- mounting ----

def find_mount(path):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mp = parts[4].encode().decode("unicode_escape")
            if mp == path:
                dash = parts.index("-", 6)
                return {"device": parts[2], "fstype": parts[dash + 1],
                        "source": parts[dash + 2].encode().decode("unicode_escape"),
                        "options": parts[5]}
    return None


_OTHER_USERS_BIN = None


def stfs_for_other_users():
    """A copy of stfs that any user can run, in a temp dir of mode 0755: the
    build tree may sit under a private folder (a clone in `mktemp -d`),
    which another user cannot reach. The ASan wrapper (a script that execs
    the build's binary) is copied with its binary, and points at the copy.
    Made once per test process; named stfs, as the tests look for."""
    global _OTHER_USERS_BIN
    if _OTHER_USERS_BIN:
        return _OTHER_USERS_BIN
    import atexit
    import re
    import shutil
    d = tempfile.mkdtemp(prefix="stfs-bin-")
    os.chmod(d, 0o755)
    atexit.register(shutil.rmtree, d, True)
    with open(STFS, "rb") as f:
        head = f.read(2)
    dest = os.path.join(d, "stfs")
    if head == b"#!":
        with open(STFS) as f:
            script = f.read()
        real = re.search(r'"(/[^"]+)"\s+-o', script).group(1)
        os.mkdir(os.path.join(d, "real"), 0o755)
        copy = os.path.join(d, "real", "stfs")  # its process is named stfs too
        shutil.copy(real, copy)
        os.chmod(copy, 0o755)
        with open(dest, "w") as f:
            f.write(script.replace(real, copy))
    else:
        shutil.copy(STFS, dest)
    os.chmod(dest, 0o755)
    _OTHER_USERS_BIN = dest
    return dest


def comm_of(pid):
    try:
        with open("/proc/%s/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def supervisor_process(pid):
    """Whether `pid` is a mount's supervisor (supervisor.hpp): it holds the
    connection, serves nothing and names itself stfs-supervise."""
    return comm_of(pid) == "stfs-supervise"


def children_of(pid):
    """PIDs whose parent is `pid` (and that are not zombies)."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            fields = stat_fields("/proc/%s/stat" % p)
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(p))
    return out


def stfs_processes(mountpoint):
    """PIDs of stfs processes (supervisors and daemons) whose command line
    names `mountpoint`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"stfs" and os.fsencode(mountpoint) in argv:
            if not is_zombie(int(pid)):
                out.append(int(pid))
    return out


def pids_serving(mountpoint):
    """PIDs of stfs daemons whose command line names `mountpoint` (not
    their supervisors)."""
    return [p for p in stfs_processes(mountpoint) if not supervisor_process(p)]


def daemon_under(supervisor, timeout=30, other_than=None):
    """The one stfs daemon that `supervisor` runs now (waits while a
    takeover starts one)."""
    found = []

    def one():
        found[:] = [p for p in children_of(supervisor)
                    if comm_of(p) == "stfs" and p != other_than]
        return len(found) == 1
    if not wait_for(one, timeout):
        raise AssertionError("no single daemon under supervisor %d: %r" % (supervisor, found))
    return found[0]


def holds_dev_fuse(pid):
    """Whether process `pid` has /dev/fuse open (a supervisor, once the
    daemon has handed it the connection)."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "/dev/fuse":
                return True
        except OSError:
            pass
    return False


def supervisors_of(mountpoint):
    return [p for p in stfs_processes(mountpoint) if supervisor_process(p)]


def reap(proc, mountpoint, timeout=30):
    """Waits for a foreground stfs that a test started by hand; if it is still
    running after `timeout`, lazily unmounts and kills it (by PID). Returns
    its exit status, or None when it had to be killed."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True)
        proc.kill()
        proc.wait()
        return None


def wait_for(predicate, seconds=2.0):
    """True once predicate() holds, polling; False after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def run_stfs(*args, timeout=30):
    return subprocess.run([STFS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def without_asan_sandbox_line(log):
    """The ASan run turns the sandbox off for every daemon (tests/CMakeLists.txt),
    and each says so; that one line is not what a test asserts about."""
    if os.environ.get("STFS_SANITIZER") != "asan":
        return log
    return "".join(ln for ln in log.splitlines(True)
                   if "the daemon is not confined: sandbox off (-o sandbox=off)" not in ln)


# Options a module's folder mounts get unless they name a layout: modules
# whose tests read tensors at X.safetensors/ (the layout of -o model_dirs)
# set ["-o", "model_dirs"]. The default layout keeps X.safetensors a file
# (test_loaders.py, test_takeover.py and the folder tests mount with it).
FOLDER_DEFAULTS = []


class Mount:
    """A real mount of `source` in a fresh temp dir, in the foreground
    (-f) so the test knows the daemon's PID. Always unmounts."""

    def __init__(self, source, *options, foreground=True):
        self.source = source
        self.options = list(options)
        if (FOLDER_DEFAULTS and os.path.isdir(source)
                and not any("model_dirs" in o or "originals" in o for o in self.options)):
            self.options = FOLDER_DEFAULTS + self.options
        self.foreground = foreground
        self.dir = tempfile.mkdtemp(prefix="stfs-mnt-")
        self.path = os.path.join(self.dir, "mnt")
        os.mkdir(self.path)
        self.proc = None
        self.preexec = None  # run in the daemon's process before exec (limits)
        self.env = None  # the environment of stfs (None: ours)
        self.log_text = ""
        self.stderr_path = os.path.join(self.dir, "stderr")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        status = self.stop()
        if exc_type is None:
            self.check_clean_exit(status)

    def check_clean_exit(self, status):
        """The daemon ended with 0 and printed no sanitizer report."""
        log = self.log_text
        for banner in ("Sanitizer", "runtime error:", "LeakSanitizer"):
            if banner in log:
                raise AssertionError("daemon reported a sanitizer error:\n" + log)
        if status not in (None, 0):
            raise AssertionError("daemon exited with %r:\n%s" % (status, log))

    def start(self, timeout=60):
        if self.foreground:
            self._stderr = open(self.stderr_path, "wb")
            self.proc = subprocess.Popen([STFS, "-f", *self.options, self.source, self.path],
                                         stdin=subprocess.DEVNULL, stdout=self._stderr,
                                         stderr=self._stderr, preexec_fn=self.preexec,
                                         env=self.env)
            deadline = time.monotonic() + timeout
            while find_mount(self.path) is None:
                if self.proc.poll() is not None:
                    raise AssertionError("stfs exited with %d before mounting: %s"
                                         % (self.proc.returncode, self.log()))
                if time.monotonic() > deadline:
                    raise AssertionError("mount did not appear within %ds" % timeout)
                time.sleep(0.02)
            # The mount is in mountinfo once mount(2) has attached it, a
            # moment before the daemon hands the connection to its
            # supervisor: a test that kills the daemon waits for that.
            wait_for(lambda: self.proc.poll() is not None or holds_dev_fuse(self.proc.pid),
                     timeout)
        else:
            r = run_stfs(*self.options, self.source, self.path)
            if r.returncode != 0:
                raise AssertionError("stfs exited %d: %s" % (r.returncode, r.stderr))

    def log(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return without_asan_sandbox_line(f.read().decode(errors="replace"))
        except OSError:
            return ""

    def pids(self):
        out = stfs_processes(self.path)
        if self.proc is not None and self.proc.poll() is None and self.proc.pid not in out:
            out.append(self.proc.pid)
        return out

    def supervisor_pid(self):
        """The mount's supervisor: the foreground stfs itself, or the
        background one's."""
        if self.proc is not None:
            return self.proc.pid
        sup = supervisors_of(self.path)
        if len(sup) != 1:
            raise AssertionError("expected one supervisor for %s, found %r" % (self.path, sup))
        return sup[0]

    def daemon_pid(self, timeout=30, other_than=None):
        """The daemon serving the mount now: the supervisor's stfs child
        (waits while a takeover starts one). `other_than`: wait for a
        daemon with another PID."""
        return daemon_under(self.supervisor_pid(), timeout, other_than)

    def stop(self):
        """Unmounts: fusermount3 -u, then -uz, then SIGKILL; returns the
        daemon's exit status when it is our child."""
        pids = self.pids()
        if find_mount(self.path) is not None:
            if subprocess.run(["fusermount3", "-u", self.path], capture_output=True).returncode:
                subprocess.run(["fusermount3", "-uz", self.path], capture_output=True)
        status = None
        if self.proc is not None:
            try:
                status = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                status = self.proc.wait()
            self._stderr.close()
            self.log_text = self.log()
        if pids:
            deadline = time.monotonic() + 10
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if os.path.exists("/proc/%d" % p)
                        and not is_zombie(p)]
                time.sleep(0.05)
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if find_mount(self.path) is not None:
            subprocess.run(["fusermount3", "-uz", self.path], capture_output=True)
        try:
            os.rmdir(self.path)
            os.unlink(self.stderr_path) if os.path.exists(self.stderr_path) else None
            os.rmdir(self.dir)
        except OSError:
            pass
        return status


def stat_fields(path):
    """The fields of a /proc/.../stat file after the command's name (which
    may hold spaces and parentheses): [0] is the state, [11] and [12] the
    user and system ticks."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def is_zombie(pid):
    try:
        return stat_fields("/proc/%d/stat" % pid)[0] == "Z"
    except OSError:
        return True
