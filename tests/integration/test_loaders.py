"""Loaders read the mount: by default (the loader layout) every valid
X.safetensors of a folder stays a file at its own name, its validated
header then its data in place, and its tensor directory sits beside it as
X.safetensors.d/; -o model_dirs gives the older layout, where
X.safetensors/ is the tensor directory. Bytes are checked against the source read independently;
Hugging Face's own safetensors library (Debian 13's python3-safetensors)
loads every model of the mount as it loads the source."""
import errno
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import stfs_testlib as lib  # noqa: E402
from stfs_testlib import Mount  # noqa: E402

try:
    import numpy as np
except ImportError:  # numpy is optional for the suite
    np = None
try:
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError:
    safe_open = None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def require_safetensors(test):
    """Skips (saying why) where the library is not packaged (Debian 12);
    fails instead where it must be there (STFS_REQUIRE_SAFETENSORS=1, the
    Debian 13 run)."""
    def wrapper(self, *a, **kw):
        if safe_open is None or np is None:
            if os.environ.get("STFS_REQUIRE_SAFETENSORS") == "1":
                self.fail("python3-safetensors (and numpy) required but not importable")
            self.skipTest("Hugging Face's safetensors library is not installed "
                          "(python3-safetensors is packaged from Debian 13 on)")
        return test(self, *a, **kw)
    wrapper.__name__ = test.__name__
    return wrapper


# Every dtype numpy has, as safetensors names it.
NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2",
                "U8": "u1", "BOOL": "?"}


def models_under(root):
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.join(d, f) for f in files if f.endswith(".safetensors")]
    return sorted(out)


@lib.require_fuse
class Originals(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stfs-load-")
        self.addCleanup(shutil.rmtree, self.tmp)
        # One model folder of each kind a loader reads.
        single = os.path.join(self.tmp, "single")
        os.mkdir(single)
        shutil.copy(lib.SAMPLE, os.path.join(single, "model.safetensors"))
        with open(os.path.join(single, "config.json"), "w") as f:
            f.write('{"model_type": "llama"}\n')
        shard_dir = os.path.join(lib.CORPUS, "sharded-safetensorsjl") if lib.CORPUS else ""
        self.sharded = os.path.join(self.tmp, "sharded")
        if os.path.isdir(shard_dir):
            shutil.copytree(shard_dir, self.sharded)
            with open(os.path.join(self.sharded, "config.json"), "w") as f:
                f.write('{"model_type": "test"}\n')
        elif os.environ.get("STFS_REQUIRE_CORPUS") == "1":
            self.fail("sharded corpus missing")
        corpus = os.path.join(self.tmp, "corpus")
        os.mkdir(corpus)
        for src in lib.corpus_files():
            if os.path.dirname(src) == lib.CORPUS.rstrip("/"):
                shutil.copy(src, corpus)
        dtypes = os.path.join(self.tmp, "dtypes")
        os.mkdir(dtypes)
        for i, (st, npt) in enumerate(sorted(NUMPY_DTYPES.items())):
            size = {"<f8": 8, "<f4": 4, "<f2": 2, "<i8": 8, "<i4": 4, "<i2": 2, "i1": 1,
                    "<u8": 8, "<u4": 4, "<u2": 2, "u1": 1, "?": 1}[npt]
            blob = lib.random_bytes(6 * size, i)
            if st == "BOOL":
                blob = bytes(b & 1 for b in blob)
            lib.write_safetensors(os.path.join(dtypes, st.lower() + ".safetensors"),
                                  [("x." + st, st, (2, 3), blob), ("empty", st, (0,), b"")],
                                  metadata={"format": "np", "dtype": st})
        with open(os.path.join(self.tmp, "broken.safetensors"), "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
        # A name the layout reserves for model.safetensors's tensor directory.
        with open(os.path.join(single, "model.safetensors.d"), "w") as f:
            f.write("in the way\n")

    def mounted(self, path, mnt):
        return os.path.join(mnt.path, os.path.relpath(path, self.tmp))

    def test_every_model_is_a_file_equal_to_its_source_beside_its_tensors(self):
        with Mount(self.tmp) as mnt:
            models = models_under(self.tmp)
            self.assertGreater(len(models), 12)
            for src in models:
                got = self.mounted(src, mnt)
                if os.path.basename(src) == "broken.safetensors":
                    self.assertFalse(os.path.exists(got))
                    continue
                self.assertTrue(os.path.isfile(got), got)
                self.assertEqual(os.path.getsize(got), os.path.getsize(src), got)
                self.assertEqual(read(got), read(src), got)
                # Its tensor directory beside it, each tensor byte-equal.
                tensors = got + ".d"
                self.assertTrue(os.path.isdir(tensors), tensors)
                header, meta, start = lib.read_header(src)
                self.assertEqual(set(os.listdir(tensors)),
                                 {lib.map_name(t).decode() for t in header}
                                 | {"__header__.json", "__metadata__.json"})
                for name, entry in header.items():
                    self.assertEqual(read(os.path.join(tensors, lib.map_name(name).decode())),
                                     lib.tensor_bytes(src, entry, start), name)
            # Other files stay as they are.
            for f in ("single/config.json",):
                self.assertEqual(read(os.path.join(mnt.path, f)), read(os.path.join(self.tmp, f)))
            log = mnt.log()
            self.assertIn("broken.safetensors: left out", log)
            self.assertIn("single/model.safetensors.d: left out: the name is reserved", log)
            # The reserved name shows the tensor directory, not the source's file.
            self.assertTrue(os.path.isdir(os.path.join(mnt.path, "single",
                                                       "model.safetensors.d")))

    def test_sharded_checkpoint_merged_and_packed(self):
        if not os.path.isdir(self.sharded):
            self.skipTest("no corpus")
        with open(os.path.join(self.sharded, "model.safetensors.index.json")) as f:
            index = json.load(f)
        with Mount(self.tmp, "-o", "packed") as mnt:
            root = self.mounted(self.sharded, mnt)
            merged = os.path.join(root, "model.safetensors.d")
            self.assertTrue(os.path.isdir(merged))
            self.assertFalse(os.path.exists(os.path.join(root, "model.safetensors")))
            for tensor, shard in index["weight_map"].items():
                src = os.path.join(self.sharded, shard)
                self.assertTrue(os.path.isfile(os.path.join(root, shard)))
                header, _, start = lib.read_header(src)
                self.assertEqual(read(os.path.join(merged, lib.map_name(tensor).decode())),
                                 lib.tensor_bytes(src, header[tensor], start), tensor)
            self.assertEqual(read(os.path.join(root, "model.safetensors.index.json")),
                             read(os.path.join(self.sharded, "model.safetensors.index.json")))
            packed = os.path.join(root, "__packed__", "model.safetensors")
            r = lib.run_stfs("--check", packed)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_a_header_rewritten_after_the_mount_is_never_served(self):
        """Rewritten in place into one the parser refuses (every F32 becomes
        F64: the byte lengths no longer match). Until the watcher's rebuild
        the validated copy is served; the rebuild then leaves the file out.
        The new header is served at no moment; EIO or ENOENT are allowed."""
        src = os.path.join(self.tmp, "single", "model.safetensors")
        original = read(src)
        n = struct.unpack("<Q", original[:8])[0]
        head = original[8:8 + n]
        self.assertIn(b'"F32"', head)
        with Mount(self.tmp) as mnt:
            got = self.mounted(src, mnt)
            with open(src, "r+b") as f:
                f.write(original[:8] + head.replace(b'"F32"', b'"F64"'))
            seen = []
            for _ in range(30):  # across the rebuild (about 200 ms after the write)
                try:
                    seen.append(read(got))
                except OSError as e:
                    self.assertIn(e.errno, (errno.EIO, errno.ENOENT), e)
                    seen.append(None)
                time.sleep(0.1)
            for served in seen:
                if served is not None:
                    self.assertEqual(served[:8 + n], original[:8 + n])
            self.assertIsNone(seen[-1], "the refused file is still in the tree")
            self.assertIn("single/model.safetensors: left out", mnt.log())

    def test_the_older_layout_is_one_option_away(self):
        # -o originals, the loader layout's old name, is still accepted.
        with Mount(self.tmp, "-o", "originals") as mnt:
            self.assertTrue(os.path.isfile(os.path.join(mnt.path, "single", "model.safetensors")))
        with Mount(self.tmp, "-o", "model_dirs") as mnt:
            self.assertTrue(os.path.isdir(os.path.join(mnt.path, "single", "model.safetensors")))
            # No name is reserved then: the source's file is served as it is.
            self.assertEqual(read(os.path.join(mnt.path, "single", "model.safetensors.d")),
                             b"in the way\n")

    # ---- Hugging Face's own library (Debian 13) ----

    def assert_loads_alike(self, src, got):
        with safe_open(src, framework="np") as a, safe_open(got, framework="np") as b:
            self.assertEqual(list(a.keys()), list(b.keys()), got)
            self.assertEqual(a.metadata(), b.metadata(), got)
            for k in a.keys():
                sa, sb = a.get_slice(k), b.get_slice(k)
                self.assertEqual(sa.get_dtype(), sb.get_dtype(), k)
                self.assertEqual(sa.get_shape(), sb.get_shape(), k)
                try:
                    want = a.get_tensor(k)
                except Exception as e:  # a dtype numpy lacks (BF16, F8): same refusal
                    with self.assertRaises(type(e)):
                        b.get_tensor(k)
                    continue
                have = b.get_tensor(k)
                self.assertEqual(want.dtype, have.dtype, k)
                self.assertEqual(want.shape, have.shape, k)
                self.assertEqual(want.tobytes(), have.tobytes(), k)

    @require_safetensors
    def test_the_safetensors_library_loads_every_model_of_the_mount(self):
        self.loads_every_model("packed")

    @require_safetensors
    def test_the_library_loads_every_model_under_direct_io(self):
        # The library maps (MAP_SHARED): direct_io files allow that where the
        # kernel serves such mappings from its page cache (Linux 6.6).
        if not lib.direct_io_maps():
            self.skipTest("Linux %s maps no direct_io file (6.6 does)" % os.uname().release)
        self.loads_every_model("packed,direct_io")

    def loads_every_model(self, opts):
        with Mount(self.tmp, "-o", opts) as mnt:
            loaded = 0
            for src in models_under(self.tmp):
                if os.path.basename(src) == "broken.safetensors":
                    continue
                self.assert_loads_alike(src, self.mounted(src, mnt))
                loaded += 1
            self.assertGreater(loaded, 12)
            if os.path.isdir(self.sharded):
                # The packed view loads as one file equal to its shards.
                packed = os.path.join(self.mounted(self.sharded, mnt), "__packed__",
                                      "model.safetensors")
                with safe_open(packed, framework="np") as p:
                    with open(os.path.join(self.sharded, "model.safetensors.index.json")) as f:
                        wm = json.load(f)["weight_map"]
                    self.assertEqual(set(p.keys()), set(wm))
                    for k, shard in wm.items():
                        with safe_open(os.path.join(self.sharded, shard), framework="np") as s:
                            self.assertEqual(p.get_slice(k).get_shape(),
                                             s.get_slice(k).get_shape())
                            try:
                                want = s.get_tensor(k)
                            except Exception:
                                continue
                            self.assertEqual(p.get_tensor(k).tobytes(), want.tobytes(), k)

    @require_safetensors
    def test_the_library_never_sees_a_header_rewritten_after_the_mount(self):
        src = os.path.join(self.tmp, "dtypes", "f32.safetensors")
        original = load_file(src)
        data = read(src)
        n = struct.unpack("<Q", data[:8])[0]
        with Mount(self.tmp) as mnt:
            with open(src, "r+b") as f:
                f.write(data[:8] + data[8:8 + n].replace(b'"F32"', b'"F64"'))
            with self.assertRaises(Exception):
                load_file(src)  # the library refuses the new header itself
            for _ in range(20):  # across the rebuild
                try:
                    got = load_file(self.mounted(src, mnt))
                except (OSError, Exception) as e:  # EIO, or gone once left out
                    self.assertNotIsInstance(e, AssertionError)
                    time.sleep(0.1)
                    continue
                self.assertEqual(set(got), set(original))
                for k in original:
                    self.assertEqual(got[k].dtype, original[k].dtype, k)
                    self.assertEqual(got[k].tobytes(), original[k].tobytes(), k)
                time.sleep(0.1)


if __name__ == "__main__":
    unittest.main()
