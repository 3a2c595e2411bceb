"""Each byte read through a mount is cached once (issue 16): after a read is
answered, the source's own cached pages of those bytes are dropped, unless
-o source_cache=keep. Checked with fincore (util-linux) on the source, not
with timings."""
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

if __name__ == "__main__":
    unittest.main()
