"""Views beyond raw bytes (issue 6, DESIGN.md §6): -o npy."""
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import stfs_testlib as lib  # noqa: E402
from stfs_testlib import Mount  # noqa: E402

# These tests read a folder's tensors at X.safetensors/ (stfs_testlib.py).
lib.FOLDER_DEFAULTS = ["-o", "model_dirs"]

try:
    import numpy as np
except ImportError:  # Debian's python3-numpy is installed by scripts/setup.sh
    np = None

NUMPY = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "I16": "<i2", "U16": "<u2", "F16": "<f2",
         "I32": "<i4", "U32": "<u4", "F32": "<f4", "I64": "<i8", "U64": "<u8", "F64": "<f8",
         "C64": "<c8",
         # numpy has none of these: raw bits as unsigned integers of the width
         "BF16": "<u2", "F8_E4M3": "|u1", "F8_E5M2": "|u1", "F8_E8M0": "|u1",
         "F8_E4M3FNUZ": "|u1", "F8_E5M2FNUZ": "|u1"}
BITS = {"BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32,
        "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F8_E4M3": 8,
        "F8_E5M2": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F6_E2M3": 6,
        "F6_E3M2": 6, "F4": 4}


@unittest.skipIf(np is None, "numpy missing")
@lib.require_fuse
class NpyView(unittest.TestCase):
    def make(self, d):
        tensors = []
        for i, (dtype, bits) in enumerate(sorted(BITS.items())):
            for shape in ([3, 4], [], [0, 5], [7]):
                count = 1
                for s in shape:
                    count *= s
                if (count * bits) % 8:
                    continue
                tensors.append(("%s.%s" % (dtype.lower(), "x".join(map(str, shape)) or "scalar"),
                                dtype, shape, lib.random_bytes(count * bits // 8, i)))
        tensors.append(("__npy__", "F32", [2], lib.random_bytes(8, 99)))  # reserved name
        src = os.path.join(d, "all.safetensors")
        lib.write_safetensors(src, tensors, {"format": "pt"})
        return src, tensors

    def test_numpy_load_mmap_every_dtype(self):
        with tempfile.TemporaryDirectory() as d:
            src, tensors = self.make(d)
            with Mount(src, "-o", "npy") as mnt:
                npy = os.path.join(mnt.path, "__npy__")
                self.assertIn("%5F_npy__", os.listdir(mnt.path))
                listed = set(os.listdir(npy))
                for name, dtype, shape, blob in tensors:
                    # With the view on, "__npy__" is reserved like the JSON files.
                    reserved = lib.RESERVED + ("__npy__",)
                    base = lib.map_name(name, reserved).decode()
                    fname = lib.map_name(name, reserved, b".npy").decode()
                    if dtype not in NUMPY:
                        self.assertNotIn(fname, listed, "F6/F4 have no .npy")
                        continue
                    arr = np.load(os.path.join(npy, fname), mmap_mode="r")
                    want = np.frombuffer(blob, dtype=NUMPY[dtype]).reshape(shape)
                    self.assertEqual(arr.dtype, want.dtype, name)
                    self.assertEqual(arr.shape, tuple(shape), name)
                    self.assertTrue(np.array_equal(arr, want, equal_nan=dtype[0] in "FC")
                                    if dtype[0] in "FC" and "8" not in dtype and dtype != "BF16"
                                    else np.array_equal(arr, want), name)
                    # Plain reads agree with the raw tensor file after the header.
                    raw = open(os.path.join(mnt.path, base), "rb").read()
                    whole = open(os.path.join(npy, fname), "rb").read()
                    self.assertTrue(whole.endswith(raw))
                    self.assertEqual((len(whole) - len(raw)) % 64, 0)
                    self.assertEqual(os.getxattr(os.path.join(npy, fname), "user.stfs.name"),
                                     name.encode())
                    # A live memmap keeps the mount busy: release it.
                    del arr
                    gc.collect()

    def test_reads_across_the_header_boundary(self):
        with tempfile.TemporaryDirectory() as d:
            src, tensors = self.make(d)
            name, _, _, blob = [t for t in tensors if t[0] == "f32.3x4"][0]
            with Mount(src, "-o", "npy") as mnt:
                path = os.path.join(mnt.path, "__npy__", name + ".npy")
                whole = open(path, "rb").read()
                head = len(whole) - len(blob)
                fd = os.open(path, os.O_RDONLY)
                try:
                    for off, n in ((0, 10), (head - 3, 7), (head, len(blob)), (5, 10000),
                                   (len(whole) - 1, 10)):
                        self.assertEqual(os.pread(fd, n, off), whole[off:off + n])
                finally:
                    os.close(fd)
                self.assertTrue(whole[:6] == b"\x93NUMPY" and whole.endswith(blob))

    def test_without_the_option_there_is_no_view(self):
        with tempfile.TemporaryDirectory() as d:
            src, _ = self.make(d)
            with Mount(src) as mnt:
                self.assertIn("__npy__", os.listdir(mnt.path))  # the tensor, not the view
                self.assertTrue(os.path.isfile(os.path.join(mnt.path, "__npy__")))


def f8_reference(v, exp_bits, man_bits, bias, kind):
    """Independent decoding of one 8-bit float (numpy has none)."""
    import math
    if kind == "fnuz" and v == 0x80:
        return math.nan
    if kind == "fn" and (v & 0x7F) == 0x7F:
        return math.nan
    sign = -1.0 if v >> 7 else 1.0
    e = (v >> man_bits) & ((1 << exp_bits) - 1)
    m = v & ((1 << man_bits) - 1)
    if kind == "ieee" and e == (1 << exp_bits) - 1:
        return math.nan if m else sign * math.inf
    if e == 0:
        return sign * m * 2.0 ** (1 - bias - man_bits)
    return sign * (1 + m / 2.0 ** man_bits) * 2.0 ** (e - bias)


@unittest.skipIf(np is None, "numpy missing")
@lib.require_fuse
class F32View(unittest.TestCase):
    def test_conversions_match_an_independent_reading(self):
        all_bytes = bytes(range(256))
        rng = np.random.default_rng(7)
        f16 = rng.standard_normal(300).astype("<f2").tobytes() + np.array(
            [0.0, -0.0, np.inf, -np.inf, np.nan, 6e-8, 65504], dtype="<f2").tobytes()
        bf16_bits = np.concatenate([rng.integers(0, 1 << 16, 500, dtype=np.uint16),
                                    np.array([0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x8000],
                                             dtype=np.uint16)]).astype("<u2")
        # F64: random values, ties and near-ties of float32 rounding, past
        # its range, subnormals, signed zeros, infinities and NaN.
        one = 1.0
        f64 = np.concatenate([
            rng.standard_normal(200) * 10.0 ** rng.integers(-40, 40, 200),
            np.array([one + 2.0 ** -24, one + 3 * 2.0 ** -24, one + 2.0 ** -24 + 2.0 ** -40,
                      -(one + 2.0 ** -24), 3.4028235677973366e38, 3.5e38, -1e300, 1e-46,
                      1.4e-45, 7e-46, 0.0, -0.0, np.inf, -np.inf, np.nan])]).astype("<f8").tobytes()
        tensors = [("h", "F16", [len(f16) // 2], f16),
                   ("b", "BF16", [len(bf16_bits)], bf16_bits.tobytes()),
                   ("e4m3", "F8_E4M3", [256], all_bytes), ("e5m2", "F8_E5M2", [256], all_bytes),
                   ("e4m3fnuz", "F8_E4M3FNUZ", [256], all_bytes),
                   ("e5m2fnuz", "F8_E5M2FNUZ", [256], all_bytes),
                   ("e8m0", "F8_E8M0", [256], all_bytes),
                   ("f", "F32", [2], b"abcdefgh"),
                   ("d", "F64", [len(f64) // 8], f64),
                   ("i", "I32", [2], b"\1\0\0\0\2\0\0\0")]
        want = {
            "h": np.frombuffer(f16, "<f2").astype("<f4"),
            "b": (bf16_bits.astype("<u4") << 16).view("<f4"),
            "e4m3": np.array([f8_reference(v, 4, 3, 7, "fn") for v in range(256)], "<f4"),
            "e5m2": np.array([f8_reference(v, 5, 2, 15, "ieee") for v in range(256)], "<f4"),
            "e4m3fnuz": np.array([f8_reference(v, 4, 3, 8, "fnuz") for v in range(256)], "<f4"),
            "e5m2fnuz": np.array([f8_reference(v, 5, 2, 16, "fnuz") for v in range(256)], "<f4"),
            "e8m0": np.array([np.nan if v == 255 else 2.0 ** (v - 127) for v in range(256)],
                             "<f4"),
            # numpy's cast rounds to nearest, ties to even, as documented.
            "d": np.frombuffer(f64, "<f8").astype("<f4"),
            "f": np.frombuffer(b"abcdefgh", "<f4"),  # served as it is
        }
        self.assertEqual(want["d"][200], np.float32(1.0))  # the tie goes to even
        self.assertEqual(want["d"][201], np.float32(1.0 + 2.0 ** -22))
        self.assertEqual(want["d"][202], np.float32(1.0 + 2.0 ** -23))
        self.assertTrue(np.isinf(want["d"][205]))
        # Spot values an engineer would check by hand.
        self.assertEqual(want["e4m3"][0x7E], 448.0)
        self.assertEqual(want["e5m2"][0x7B], 57344.0)
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "q.safetensors")
            lib.write_safetensors(src, tensors)
            with Mount(src, "-o", "f32") as mnt:
                view = os.path.join(mnt.path, "__f32__")
                # Every floating tensor; integers stay out.
                self.assertEqual(sorted(os.listdir(view)), sorted(want))
                self.assertEqual(open(os.path.join(view, "f"), "rb").read(), b"abcdefgh")
                for name, expected in want.items():
                    path = os.path.join(view, name)
                    got = np.fromfile(path, dtype="<f4")
                    self.assertEqual(os.path.getsize(path), 4 * len(expected))
                    self.assertTrue(np.array_equal(got, expected, equal_nan=True), name)
                    raw = open(path, "rb").read()
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        for off, n in ((1, 5), (3, 9), (4 * 17 + 2, 31), (len(raw) - 3, 10)):
                            self.assertEqual(os.pread(fd, n, off), raw[off:off + n], (name, off))
                    finally:
                        os.close(fd)


@lib.require_fuse
class NameLimits(unittest.TestCase):
    """Every name a mount lists fits in 255 bytes (statvfs f_namemax), with
    every view on, in file and folder mode, for names built to sit at the
    edge: mapped lengths 250-260, escapes that triple a byte, UTF-8 that
    must not be cut, dotted components for the tree view."""

    def hostile_names(self):
        names = []
        for n in range(248, 262):
            names.append("a" * n)
            names.append("w." + "b" * n)
            names.append("%" * (n // 3) + "x")
            names.append("\u00e9" * (n // 2))
            names.append("a" * (n - 4) + ".npy")
        names.append(("c" * 254 + ".") * 3 + "d")
        return list(dict.fromkeys(names))  # once each, in order

    def test_every_listed_name_fits(self):
        names = self.hostile_names()
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "m.safetensors")
            lib.write_safetensors(src, [(n, "BF16", [1], b"\0\0") for n in names])
            shard = os.path.join(d, "m-00001-of-00001.safetensors")
            lib.write_safetensors(shard, [(n, "F32", [1], b"\0" * 4) for n in names])
            with open(os.path.join(d, "m-x.safetensors.index.json"), "w") as f:
                import json
                json.dump({"weight_map": {n: "m-00001-of-00001.safetensors" for n in names}}, f)
            for source in (src, d):
                for opts in ("npy,f32", "npy,f32,tree"):
                    with Mount(source, "-o", opts) as mnt:
                        self.assertEqual(os.statvfs(mnt.path).f_namemax, 255)
                        seen = 0
                        for root, dirs, files in os.walk(os.fsencode(mnt.path)):
                            for n in dirs + files:
                                seen += 1
                                self.assertLessEqual(len(n), 255, n)
                        self.assertGreater(seen, len(names) * 2)
                        # cp -r of the npy view works, as the user tried.
                        dst = os.path.join(d, "copy")
                        base = mnt.path if source == src else os.path.join(mnt.path,
                                                                            "m.safetensors")
                        r = subprocess.run(["cp", "-r", os.path.join(base, "__npy__"), dst],
                                           capture_output=True, text=True)
                        self.assertEqual(r.returncode, 0, r.stderr[-500:])
                        shutil.rmtree(dst)


@lib.require_fuse
class TreeView(unittest.TestCase):
    def check_tree(self, src):
        header, _, start = lib.read_header(src)
        with Mount(src, "-o", "tree") as mnt:
            root = os.fsencode(mnt.path)
            files = set()
            for dirpath, _, filenames in os.walk(root):
                for f in filenames:
                    files.add(os.path.relpath(os.path.join(dirpath, f), root))
            want = {lib.tree_path(n, header) for n in header}
            self.assertEqual(files, want | {b"__header__.json", b"__metadata__.json"})
            for name, entry in header.items():
                p = os.path.join(root, lib.tree_path(name, header))
                with open(p, "rb") as f:
                    self.assertEqual(f.read(), lib.tensor_bytes(src, entry, start), name)
                self.assertEqual(os.getxattr(p, "user.stfs.name"), name.encode())

    def test_transformer_names(self):
        self.check_tree(lib.SAMPLE)
        with Mount(lib.SAMPLE, "-o", "tree") as mnt:
            self.assertTrue(os.path.isfile(os.path.join(
                mnt.path, "model/layers/0/mlp/up_proj/weight")))
            self.assertEqual(sorted(os.listdir(os.path.join(mnt.path, "model/layers"))),
                             ["0", "1"])

    def test_tensor_that_is_also_a_prefix(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "bnb.safetensors")
            lib.write_safetensors(src, [
                ("w", "U8", [2], b"ab"), ("w.absmax", "F32", [1], b"abcd"),
                ("w.quant_map", "F32", [1], b"efgh"), ("a..b", "U8", [1], b"y"),
                ("x/y.z", "U8", [1], b"z"), ("__tensor__.k", "U8", [1], b"t"),
                ("lm_head.weight", "U8", [1], b"l")])
            self.check_tree(src)
            with Mount(src, "-o", "tree") as mnt:
                self.assertEqual(open(os.path.join(mnt.path, "w", "__tensor__"), "rb").read(),
                                 b"ab")
                self.assertEqual(open(os.path.join(mnt.path, "w", "absmax"), "rb").read(),
                                 b"abcd")


if __name__ == "__main__":
    unittest.main()
