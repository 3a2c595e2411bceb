"""Each byte read through a mount is cached once (issue 16): after a read is
answered, the source's own cached pages of those bytes are dropped, unless
-o source_cache=keep. Checked with fincore (util-linux) on the source, not
with timings."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import stfs_testlib as lib
from stfs_testlib import Mount

MiB = 1 << 20


def resident(path):
    r = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                       capture_output=True, text=True, check=True)
    return int(r.stdout.strip() or 0)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")


def read_all(root):
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                total += len(fh.read())
    return total


@lib.require_fuse
class SourceCache(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0 or not shutil.which("fincore"):
            self.skipTest("needs root (drop_caches) and fincore")
        self.tmp = tempfile.mkdtemp(prefix="stfs-mem-")
        self.src = os.path.join(self.tmp, "m.safetensors")
        # An odd header length: tensors do not start on page boundaries.
        lib.write_safetensors(self.src, [
            ("a", "U8", [24 * MiB + 3], os.urandom(24 * MiB + 3)),
            ("b", "BF16", [4 * MiB], os.urandom(8 * MiB)),
            ("c", "F32", [5], os.urandom(20)),
        ], metadata={"pad": "x" * 1001}, pad=False)
        with open(os.path.join(self.tmp, "plain.bin"), "wb") as f:
            f.write(os.urandom(9 * MiB))
        self.size = os.path.getsize(self.src)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_source_pages_are_dropped_once_served(self):
        # What may stay: one 2 MiB chunk (the last, partly past the data);
        # with three views reading each tensor, chunks shared by two
        # tensors may be counted out of step and wait for the next
        # crossing: at most 2 more (docs/DECISIONS.md).
        for source, opts, slack in ((self.src, (), 2 * MiB), (self.src, ("-o", "read_path=pread"), 2 * MiB),
                                    (self.src, ("-o", "npy,f32"), 6 * MiB), (self.tmp, (), 2 * MiB)):
            drop_caches()
            with Mount(source, *opts) as mnt:
                self.assertGreater(read_all(mnt.path), 32 * MiB)
                left = resident(self.src)
                self.assertLess(left, slack + 64 * 1024, (opts, left))
                if source == self.tmp:
                    self.assertLess(resident(os.path.join(self.tmp, "plain.bin")), 2 * MiB)

    def test_keep_leaves_them(self):
        drop_caches()
        with Mount(self.src, "-o", "source_cache=keep") as mnt:
            read_all(mnt.path)
            self.assertGreater(resident(self.src), self.size - MiB)

    def test_a_native_mapping_of_the_source_keeps_its_pages(self):
        # A program that maps the source natively keeps its pages: stfs drops
        # no more than a native posix_fadvise(DONTNEED) user would.
        import mmap
        drop_caches()
        with open(self.src, "rb") as f, Mount(self.src) as mnt:
            m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            try:
                m.madvise(mmap.MADV_WILLNEED)
                touched = sum(m[i] for i in range(0, self.size, 4096))  # map every page
                del touched
                read_all(mnt.path)
                self.assertGreater(resident(self.src), self.size - MiB)
            finally:
                m.close()


    def test_a_random_reader_pulls_in_what_it_reads_not_windows(self):
        # 64 random 4 KiB reads of a cold source: the source's page cache
        # grows by about what was read (two pages a read: tensors do not
        # start on a page boundary here), not by a readahead window
        # (megabytes) a read, as a native random pread reader's would.
        import random
        rng = random.Random(7)
        start = lib.read_header(self.src)[2]
        drop_caches()
        got = {}
        with Mount(self.src) as mnt:
            fd = os.open(os.path.join(mnt.path, "a"), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # 4 KiB requests
                for _ in range(64):
                    off = rng.randrange(0, 24 * MiB // 4096) * 4096
                    got[off] = os.pread(fd, 4096, off)
            finally:
                os.close(fd)
            self.assertLess(resident(self.src), 64 * 8192 + 256 * 1024)
        with open(self.src, "rb") as src:
            for off, data in got.items():
                src.seek(start + off)
                self.assertEqual(data, src.read(4096), off)


@lib.require_fuse
class DirectIo(unittest.TestCase):
    """-o direct_io: source bytes go to the reader without the mount's page
    cache; the bytes are the same, the source's cache holds the only copy
    (kept unless source_cache=drop is given), and shared mappings work
    where the kernel can serve them (Linux 6.6, FUSE_DIRECT_IO_ALLOW_MMAP,
    asked for whatever the libfuse), else fail with ENODEV."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stfs-dio-")
        self.src = os.path.join(self.tmp, "m.safetensors")
        self.data = {"a": os.urandom(5 * MiB + 3), "b": os.urandom(2 * MiB), "c": os.urandom(20)}
        lib.write_safetensors(self.src, [
            ("a", "U8", [5 * MiB + 3], self.data["a"]),
            ("b", "BF16", [MiB], self.data["b"]),
            ("c", "F32", [5], self.data["c"]),
        ], metadata={"pad": "x" * 1001}, pad=False)
        self.size = os.path.getsize(self.src)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_bytes_match_at_any_offset(self):
        import random
        rng = random.Random(5)
        with Mount(self.src, "-o", "direct_io") as mnt:
            for name, want in self.data.items():
                p = os.path.join(mnt.path, name)
                with open(p, "rb") as f:
                    self.assertEqual(f.read(), want, name)
                fd = os.open(p, os.O_RDONLY)
                try:
                    for _ in range(40):
                        off = rng.randrange(0, len(want) + 10)
                        n = rng.choice([1, 7, 4096, 65537, MiB + 1])
                        self.assertEqual(os.pread(fd, n, off), want[off:off + n], (name, off, n))
                finally:
                    os.close(fd)
                r = subprocess.run(["dd", "if=" + p, "bs=4093", "skip=3", "status=none"],
                                   capture_output=True, check=True)
                self.assertEqual(r.stdout, want[3 * 4093:], name)
            with open(os.path.join(mnt.path, "__metadata__.json"), "rb") as f:
                self.assertEqual(json.loads(f.read()), {"pad": "x" * 1001})

    def test_views_give_the_same_bytes_at_any_offset(self):
        # Under direct_io a READ has the reader's own offset and size, not
        # page-aligned windows: the converted views must cut them the same.
        import random
        rng = random.Random(11)
        with Mount(lib.SAMPLE, "-o", "npy,f32") as cached, \
                Mount(lib.SAMPLE, "-o", "npy,f32,direct_io") as direct:
            checked = 0
            for sub in ("__f32__", "__npy__", ""):
                for name in sorted(os.listdir(os.path.join(cached.path, sub))):
                    want_path = os.path.join(cached.path, sub, name)
                    if os.path.isdir(want_path):
                        continue
                    with open(want_path, "rb") as f:
                        want = f.read()
                    fd = os.open(os.path.join(direct.path, sub, name), os.O_RDONLY)
                    try:
                        self.assertEqual(os.pread(fd, len(want) + 1, 0), want, name)
                        for _ in range(30):
                            off = rng.randrange(0, len(want) + 3)
                            n = rng.choice([1, 3, 7, 100, 4097])
                            self.assertEqual(os.pread(fd, n, off), want[off:off + n],
                                             (sub, name, off, n))
                    finally:
                        os.close(fd)
                    checked += 1
            self.assertGreater(checked, 30)

    def test_shared_mappings_follow_the_kernel(self):
        import mmap
        # libfuse 3.14 cannot ask for them itself: stfs adds the flag to its
        # INIT reply (init_reply.hpp), so only the kernel decides.
        maps = lib.direct_io_maps()
        # -v: the line saying mappings work is at info level.
        with Mount(self.src, "-v", "-o", "direct_io") as mnt:
            # The JSON files are never direct_io: mappable everywhere.
            with open(os.path.join(mnt.path, "__header__.json"), "rb") as f:
                m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
                self.assertEqual(json.loads(m[:])["c"]["dtype"], "F32")
                m.close()
            with open(os.path.join(mnt.path, "a"), "rb") as f:
                private = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
                self.assertEqual(private[:], self.data["a"])
                private.close()
                self.assert_shared_mapping(f, "a", maps)
        if maps:
            self.assertIn("shared mappings are served from the page cache", mnt.log_text)
        else:
            self.assertIn("shared mappings of its files fail with ENODEV", mnt.log_text)

    def test_shared_mappings_without_busy_polling(self):
        """busy_poll_us=0 leaves the device reads to libfuse, except that
        INIT must still pass stfs (init_reply.hpp) for the flag to be asked."""
        with Mount(self.src, "-o", "direct_io,busy_poll_us=0") as mnt:
            with open(os.path.join(mnt.path, "b"), "rb") as f:
                self.assert_shared_mapping(f, "b", lib.direct_io_maps())

    def assert_shared_mapping(self, f, name, maps):
        """A shared mapping of open tensor file `f` holds tensor `name`'s
        bytes if `maps`, else fails with ENODEV."""
        import errno
        import mmap
        if maps:
            shared = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            self.assertEqual(shared[:], self.data[name])
            shared.close()
        else:
            with self.assertRaises(OSError) as cm:
                mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            self.assertEqual(cm.exception.errno, errno.ENODEV)

    def test_one_copy_in_the_source_cache(self):
        if os.geteuid() != 0 or not shutil.which("fincore"):
            self.skipTest("needs root (drop_caches) and fincore")
        drop_caches()
        with Mount(self.src, "-o", "direct_io") as mnt:
            self.assertGreater(read_all(mnt.path), 7 * MiB)
            # Nothing in the mount's page cache; the source keeps its pages
            # (source_cache=keep is implied), so a re-read is no disk read.
            self.assertEqual(resident(os.path.join(mnt.path, "a")), 0)
            self.assertGreater(resident(self.src), self.size - 64 * 1024)
        drop_caches()
        with Mount(self.src, "-o", "direct_io,source_cache=drop") as mnt:
            read_all(mnt.path)
            self.assertEqual(resident(os.path.join(mnt.path, "a")), 0)
            self.assertLess(resident(self.src), 2 * MiB + 64 * 1024)

    def test_option_in_help(self):
        r = subprocess.run([lib.STFS, "--help"], capture_output=True, text=True)
        self.assertIn("direct_io", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
