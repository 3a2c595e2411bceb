"""GGUF models as directories (issue 23, DESIGN.md §8, docs/GGUF.md): files
written by an independent writer (gguf_writer.py), mounted for real, read
back byte for byte, alone and in folders, with the views, and hostile files
refused with the rule they break."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import gguf_writer as gw  # noqa: E402
import stfs_testlib as lib  # noqa: E402
from stfs_testlib import Mount  # noqa: E402

# These tests read a folder's tensors at X.safetensors/ (stfs_testlib.py).
lib.FOLDER_DEFAULTS = ["-o", "model_dirs"]

try:
    import numpy as np
except ImportError:  # Debian's python3-numpy is installed by scripts/setup.sh
    np = None


def f32(v):
    """The double a float32 value is: what __metadata__.json must hold."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def expected_value(vtype, value):
    if vtype == gw.ARRAY:
        etype, items = value
        return [expected_value(etype, v) for v in items]
    if vtype == gw.F32:
        return f32(value)
    return value


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write(d, name, data):
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def check_model_dir(tc, top, kv, tensors, data_start, offsets):
    """`top` shows the model as the writer wrote it."""
    names = sorted(lib.map_name(n).decode() for n, _, _, _ in tensors)
    tc.assertEqual(sorted(os.listdir(top)), sorted(names + ["__header__.json", "__metadata__.json"]))
    meta = read_json(os.path.join(top, "__metadata__.json"))
    tc.assertEqual(list(meta), [k for k, _, _ in kv], "keys in file order")
    for key, vtype, value in kv:
        want = expected_value(vtype, value)
        tc.assertEqual(meta[key], want, key)
        # Integers stay integers, floats stay floats.
        if vtype in (gw.F32, gw.F64):
            tc.assertIsInstance(meta[key], float, key)
        if vtype in (gw.U32, gw.I32, gw.U64, gw.I64):
            tc.assertIsInstance(meta[key], int, key)
    header = read_json(os.path.join(top, "__header__.json"))
    tc.assertEqual(header["gguf_version"], 3)
    tc.assertEqual(header["data_offset"], data_start)
    tc.assertEqual(list(header["tensors"]), [n for n, _, _, _ in tensors])
    for (name, tname, shape, data), off in zip(tensors, offsets):
        entry = header["tensors"][name]
        tc.assertEqual(entry, {"dtype": tname, "shape": shape,
                               "data_offsets": [off, off + len(data)]})
        p = os.path.join(top, lib.map_name(name).decode())
        st = os.stat(p)
        tc.assertEqual(st.st_size, len(data), name)
        with open(p, "rb") as f:
            tc.assertEqual(f.read(), data, name)
        tc.assertEqual(os.getxattr(p, "user.stfs.name"), name.encode())
        tc.assertEqual(os.getxattr(p, "user.stfs.dtype").decode(), tname)
        tc.assertEqual(json.loads(os.getxattr(p, "user.stfs.shape")), shape)
        tc.assertEqual(json.loads(os.getxattr(p, "user.stfs.data_offsets")),
                       [off, off + len(data)])
        tc.assertEqual(int(os.getxattr(p, "user.stfs.offset")), data_start + off)


@lib.require_fuse
class GgufFile(unittest.TestCase):
    def test_a_llama_model_mounts_lists_and_reads_exactly(self):
        kv, tensors = gw.llama_like()
        data, start, offsets = gw.gguf_bytes(kv, tensors)
        with tempfile.TemporaryDirectory() as d:
            src = write(d, "llama-q4_0.gguf", data)
            with Mount(src) as mnt:
                check_model_dir(self, mnt.path, kv, tensors, start, offsets)
                # dd of one tensor, at an offset inside it.
                name, _, _, blob = tensors[1]
                out = subprocess.run(["dd", "if=" + os.path.join(mnt.path, name), "bs=7",
                                      "skip=3", "count=5", "status=none"],
                                     capture_output=True, check=True).stdout
                self.assertEqual(out, blob[21:56])
            r = lib.run_stfs("--check", src)
            self.assertEqual(r.returncode, 0, r.stdout)
            # What was validated: the format, its version, the count, the data.
            data_bytes = sum(len(t[3]) for t in tensors)
            self.assertEqual(r.stdout.strip(),
                             "OK %s: GGUF v3, %d tensors, %s (BF16,F16,F32,Q4_0,Q4_K,Q6_K,Q8_0)"
                             % (src, len(tensors), human_size(data_bytes)))

    def test_every_ggml_type(self):
        tensors = gw.every_type()
        data, start, offsets = gw.gguf_bytes([("general.alignment", gw.U32, 64)], tensors,
                                             alignment=64)
        with tempfile.TemporaryDirectory() as d:
            src = write(d, "types.gguf", data)
            with Mount(src) as mnt:
                check_model_dir(self, mnt.path, [("general.alignment", gw.U32, 64)], tensors,
                                start, offsets)
                header = read_json(os.path.join(mnt.path, "__header__.json"))
                self.assertEqual(header["alignment"], 64)

    def test_version_2_names_that_need_mapping_and_no_tensors(self):
        tensors = [("", "F32", [2], b"\1" * 8), ("a/b", "F16", [2, 2], b"\2" * 8),
                   ("__header__.json", "I8", [3], b"\3\4\5"), ("..", "I64", [], b"\6" * 8)]
        data, start, offsets = gw.gguf_bytes([], tensors, version=2)
        empty, _, _ = gw.gguf_bytes([("general.name", gw.STRING, "nothing")])
        with tempfile.TemporaryDirectory() as d:
            src = write(d, "v2.gguf", data)
            with Mount(src) as mnt:
                header = read_json(os.path.join(mnt.path, "__header__.json"))
                self.assertEqual(header["gguf_version"], 2)
                header["gguf_version"] = 3
                for (name, tname, shape, blob), off in zip(tensors, offsets):
                    p = os.path.join(mnt.path, lib.map_name(name).decode())
                    with open(p, "rb") as f:
                        self.assertEqual(f.read(), blob, name)
                    self.assertEqual(header["tensors"][name]["shape"], shape)
                self.assertIn("%2E%2E", os.listdir(mnt.path))
                self.assertIn("%5F_header__.json", os.listdir(mnt.path))
            src = write(d, "empty.gguf", empty)
            with Mount(src) as mnt:
                self.assertEqual(sorted(os.listdir(mnt.path)), ["__header__.json", "__metadata__.json"])
                self.assertEqual(read_json(os.path.join(mnt.path, "__metadata__.json")),
                                 {"general.name": "nothing"})


HOSTILE = [
    # (name, bytes, rule)
    ("v1", b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "GgufVersion"),
    ("big-endian", b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "GgufVersion"),
    ("huge-count", b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 0) + b"\0" * 64, "GgufTruncated"),
    ("huge-string", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gw._string("k")
     + struct.pack("<IQ", gw.STRING, 1 << 50), "GgufTruncated"),
    ("huge-array", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gw._string("k")
     + struct.pack("<IIQ", gw.ARRAY, gw.U64, 1 << 58) + b"\0" * 64, "GgufTruncated"),
    ("bad-utf8-key", gw.gguf_bytes([(b"\xff\xfe", gw.U8, 1)])[0], "GgufInvalidUtf8"),
    ("bad-utf8-name", gw.gguf_bytes([], [(b"w\xc3", "F32", [1], b"\0" * 4)])[0],
     "GgufInvalidUtf8"),
    ("dup-key", gw.gguf_bytes([("a", gw.U8, 1), ("a", gw.U8, 2)])[0], "GgufKey"),
    ("dup-tensor", gw.gguf_bytes([], [("w", "F32", [1], b"\0" * 4)] * 2)[0], "GgufTensorName"),
    ("bad-bool", gw.gguf_bytes([("b", gw.U8, 7)])[0].replace(
        struct.pack("<I", gw.U8) + b"\x07", struct.pack("<I", gw.BOOL) + b"\x07"), "GgufValueType"),
    ("alignment-3", gw.gguf_bytes([("general.alignment", gw.U32, 3)],
                                  [("w", "F32", [1], b"\0" * 4)])[0], "GgufAlignment"),
    ("deep", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gw._string("k") + struct.pack("<I", gw.ARRAY)
     + struct.pack("<IQ", gw.ARRAY, 1) * 200 + struct.pack("<IQ", gw.U8, 0), "GgufNesting"),
]


def tensor_file(ne, type_id, offset=0, data=64):
    """One tensor info written raw (so it may break any rule), then data."""
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + gw._string("w")
    head += struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", n) for n in ne)
    head += struct.pack("<IQ", type_id, offset)
    return head + b"\0" * ((-len(head)) % 32) + b"\0" * data


HOSTILE += [
    ("five-dims", tensor_file([1, 1, 1, 1, 1], 0), "GgufShape"),
    ("negative-dim", tensor_file([-4], 0), "GgufShape"),
    ("overflow", tensor_file([1 << 40, 1 << 40], 0), "GgufShape"),
    ("removed-type", tensor_file([32], 4), "GgufType"),
    ("unknown-type", tensor_file([32], 1000), "GgufType"),
    ("not-a-block", tensor_file([33], 2), "GgufBlockSize"),
    ("offset-hole", tensor_file([4], 0, offset=32), "GgufOffset"),
    ("past-eof", tensor_file([64], 0, data=100), "GgufOutOfBounds"),
]


class GgufHostile(unittest.TestCase):
    def test_each_hostile_file_is_refused_with_its_rule(self):
        with tempfile.TemporaryDirectory() as d:
            mp = os.path.join(d, "mnt")
            os.mkdir(mp)
            for name, data, rule in HOSTILE:
                src = write(d, name + ".gguf", data)
                r = lib.run_stfs("--check", src)
                self.assertEqual(r.returncode, 2, (name, r.stdout))
                line = r.stdout.strip()
                self.assertTrue(line.startswith("INVALID " + src + ": "), line)
                self.assertTrue(line.endswith("[%s]" % rule), (name, line))
                if lib.fuse_usable():
                    m = lib.run_stfs(src, mp)
                    self.assertEqual(m.returncode, 2, (name, m.stderr))
                    self.assertIn(src, m.stderr)
                    self.assertIn("[%s]" % rule, m.stderr)
                    self.assertIsNone(lib.find_mount(mp))

    def test_every_truncation_of_a_valid_file_is_refused(self):
        kv, tensors = gw.llama_like(vocab=20, layers=1, dim=32)
        data, start, offsets = gw.gguf_bytes(kv, tensors)
        last_end = start + offsets[-1] + len(tensors[-1][3])
        self.assertLess(last_end, len(data), "the writer pads the last tensor too")
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "t.gguf")
            # Cuts inside the header, the padding and the last tensor.
            cuts = list(range(0, start, max(1, start // 150))) + [start - 1, last_end - 1]
            for n in cuts:
                write(d, "t.gguf", data[:n])
                r = lib.run_stfs("--check", src)
                self.assertEqual(r.returncode, 2, (n, r.stdout))
            # Without the last tensor's padding it is still whole, as llama.cpp reads it.
            for n in (last_end, len(data)):
                write(d, "t.gguf", data[:n])
                self.assertEqual(lib.run_stfs("--check", src).returncode, 0, n)


@lib.require_fuse
class GgufFolder(unittest.TestCase):
    def make(self, d):
        kv, tensors = gw.llama_like(vocab=50, layers=1)
        data, start, offsets = gw.gguf_bytes(kv, tensors)
        write(d, "model.gguf", data)
        lib.write_safetensors(os.path.join(d, "other.safetensors"),
                              [("x", "F32", [2], b"\0" * 8)])
        write(d, "broken.gguf", dict((n, b) for n, b, _ in HOSTILE)["bad-utf8-key"])
        # The bytes of a safetensors file under a GGUF name, and the reverse.
        with open(os.path.join(d, "other.safetensors"), "rb") as f:
            write(d, "not-gguf.gguf", f.read())
        write(d, "not-st.safetensors", data)
        write(d, "notes.txt", b"hello\n")
        return kv, tensors, data, start, offsets

    def test_gguf_files_become_model_directories(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "src")
            os.mkdir(src)
            kv, tensors, data, start, offsets = self.make(src)
            with Mount(src) as mnt:
                listed = sorted(os.listdir(mnt.path))
                self.assertEqual(listed, ["model.gguf", "notes.txt", "other.safetensors"])
                self.assertTrue(os.path.isdir(os.path.join(mnt.path, "model.gguf")))
                check_model_dir(self, os.path.join(mnt.path, "model.gguf"), kv, tensors,
                                start, offsets)
            log = mnt.log_text
            self.assertRegex(log, r"broken\.gguf: left out: .*\[GgufInvalidUtf8\]")
            self.assertRegex(log, r"not-gguf\.gguf: left out: not a GGUF file")
            self.assertRegex(log, r"not-st\.safetensors: left out: the name says safetensors, "
                                  r"the bytes are GGUF")

    def test_originals_keep_the_gguf_file_for_loaders(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "src")
            os.mkdir(src)
            kv, tensors, data, start, offsets = self.make(src)
            with Mount(src, "-o", "originals") as mnt:
                p = os.path.join(mnt.path, "model.gguf")
                self.assertTrue(os.path.isfile(p))
                self.assertEqual(os.stat(p).st_size, len(data))
                with open(p, "rb") as f:
                    self.assertEqual(f.read(), data)
                check_model_dir(self, os.path.join(mnt.path, "model.gguf.d"), kv, tensors,
                                start, offsets)


@unittest.skipIf(np is None, "numpy missing")
@lib.require_fuse
class GgufViews(unittest.TestCase):
    def test_npy_and_f32_where_the_values_are_elements_and_q8_0_q4_0_dequantised(self):
        rnd = np.random.default_rng(5)
        arrays = {"f32": rnd.standard_normal((3, 4)).astype("<f4"),
                  "f16": rnd.standard_normal((2, 8)).astype("<f2"),
                  "f64": rnd.standard_normal((5,)).astype("<f8"),
                  "i8": rnd.integers(-128, 127, (4, 4)).astype("|i1"),
                  "i16": rnd.integers(-9, 9, (2, 3, 4)).astype("<i2"),
                  "i32": rnd.integers(-9, 9, (6,)).astype("<i4"),
                  "i64": rnd.integers(-9, 9, (1, 2, 1, 3)).astype("<i8"),
                  "bf16": rnd.integers(0, 65535, (2, 2)).astype("<u2")}
        types = {"f32": "F32", "f16": "F16", "f64": "F64", "i8": "I8", "i16": "I16",
                 "i32": "I32", "i64": "I64", "bf16": "BF16"}
        tensors = [(k, types[k], list(a.shape), a.tobytes()) for k, a in arrays.items()]
        # Quantised blocks: an f16 scale, then the quants.
        def blocks(count, quant_bytes):
            scales = rnd.standard_normal(count).astype("<f2").view("|u1").reshape(count, 2)
            quants = rnd.integers(0, 256, (count, quant_bytes)).astype("|u1")
            return np.concatenate([scales, quants], axis=1)
        q8, q4 = blocks(6, 32), blocks(4, 16)
        tensors += [("q8", "Q8_0", [3, 64], q8.tobytes()), ("q4", "Q4_0", [2, 64], q4.tobytes()),
                    ("q4k", "Q4_K", [1, 256], bytes(range(144)))]
        # ggml's dequantisation, written out in numpy: x = q * d in float32.
        d8 = q8[:, :2].copy().view("<f2").astype("<f4")
        want_q8 = (q8[:, 2:].view("|i1").astype("<f4") * d8).ravel()
        d4 = q4[:, :2].copy().view("<f2").astype("<f4")
        nib = np.concatenate([q4[:, 2:] & 0x0f, q4[:, 2:] >> 4], axis=1).astype("<f4") - 8
        want_q4 = (nib * d4).ravel()
        data, _, _ = gw.gguf_bytes([], tensors)
        with tempfile.TemporaryDirectory() as d:
            src = write(d, "v.gguf", data)
            with Mount(src, "-o", "npy,f32") as mnt:
                npy = os.path.join(mnt.path, "__npy__")
                self.assertEqual(sorted(os.listdir(npy)), sorted(k + ".npy" for k in arrays))
                for k, a in arrays.items():
                    got = np.load(os.path.join(npy, k + ".npy"))
                    self.assertEqual(got.dtype, a.dtype, k)
                    self.assertTrue(np.array_equal(got, a), k)
                f32d = os.path.join(mnt.path, "__f32__")
                self.assertEqual(sorted(os.listdir(f32d)),
                                 ["bf16", "f16", "f32", "f64", "q4", "q4k", "q8"])
                # Q4_K too (GgufDequant checks every type at length).
                import ggml_dequant as gd
                want_q4k = gd.q4_k(np.frombuffer(bytes(range(144)), np.uint8).reshape(1, 144))
                with open(os.path.join(f32d, "q4k"), "rb") as f:
                    self.assertEqual(f.read(), want_q4k.astype("<f4").tobytes())
                for k, want in (("q8", want_q8), ("q4", want_q4)):
                    p = os.path.join(f32d, k)
                    self.assertEqual(os.stat(p).st_size, want.size * 4, k)
                    with open(p, "rb") as f:
                        self.assertEqual(f.read(), want.tobytes(), k)
                    # A read that starts and ends inside blocks.
                    with open(p, "rb") as f:
                        f.seek(70)
                        self.assertEqual(f.read(333), want.tobytes()[70:403], k)
                for k in ("f32", "f16", "f64"):
                    got = np.fromfile(os.path.join(f32d, k), dtype="<f4")
                    self.assertTrue(np.array_equal(got, arrays[k].astype("<f4").ravel()), k)
                bf = np.fromfile(os.path.join(f32d, "bf16"), dtype="<u4")
                self.assertTrue(np.array_equal(bf, arrays["bf16"].astype("<u4").ravel() << 16))
                # The quantised tensors stay raw blocks.
                for k, raw in (("q8", q8.tobytes()), ("q4k", bytes(range(144)))):
                    with open(os.path.join(mnt.path, k), "rb") as f:
                        self.assertEqual(f.read(), raw)


@lib.require_fuse
class GgufSplit(unittest.TestCase):
    """A model split by gguf-split (X-00001-of-00003.gguf, split.* keys)
    mounts as one merged directory, each tensor read from its part. (This
    module's folder mounts default to -o model_dirs; "originals" names the
    loader layout, the default of a plain mount.)"""

    def write_split(self, d, parts=3, per=2, keys=None, skip=(), dup=None):
        """Writes the parts; returns {tensor: bytes} and the first part's
        key/values. keys(no) may change a part's split keys."""
        rnd = np.random.default_rng(7) if np is not None else None
        want = {}
        for no in range(1, parts + 1):
            tensors = []
            for i in range(per):
                name = "blk.%d.w%d" % (no, i)
                blob = (rnd.integers(0, 256, 64 * 4, dtype=np.uint8).tobytes() if rnd is not None
                        else bytes([no * 16 + i]) * 256)
                tensors.append((name, "F32", [64], blob))
                want[name] = blob
            if dup and no == dup[1]:
                tensors.append((dup[0], "F32", [64], bytes(256)))
            kv = [("split.no", gw.U16, no - 1), ("split.count", gw.U16, parts),
                  ("split.tensors.count", gw.I32, parts * per)]
            if no == 1:
                kv = [("general.name", gw.STRING, "split-test")] + kv
            if keys:
                kv = keys(no, kv)
            if no in skip:
                continue
            data, _, _ = gw.gguf_bytes(kv, tensors)
            write(d, "m-%05d-of-%05d.gguf" % (no, parts), data)
        return want

    def test_three_parts_mount_as_one_directory(self):
        with tempfile.TemporaryDirectory() as d:
            want = self.write_split(d)
            with Mount(d, "-o", "originals") as mnt:
                merged = os.path.join(mnt.path, "m.gguf.d")
                self.assertTrue(os.path.isdir(merged), os.listdir(mnt.path))
                names = sorted(os.listdir(merged))
                self.assertEqual(names, sorted(["__metadata__.json"] + list(want)))
                for name, blob in want.items():
                    with open(os.path.join(merged, name), "rb") as f:
                        self.assertEqual(f.read(), blob, name)
                with open(os.path.join(merged, "__metadata__.json")) as f:
                    meta = json.load(f)
                self.assertEqual(meta["general.name"], "split-test")
                # The parts stay files (the loader layout), byte for byte.
                for no in (1, 2, 3):
                    part = "m-%05d-of-00003.gguf" % no
                    with open(os.path.join(mnt.path, part), "rb") as f, \
                            open(os.path.join(d, part), "rb") as g:
                        self.assertEqual(f.read(), g.read())
                    self.assertTrue(os.path.isdir(os.path.join(mnt.path, part + ".d")))
            with Mount(d, "-o", "model_dirs") as mnt:
                self.assertEqual(sorted(os.listdir(os.path.join(mnt.path, "m.gguf"))),
                                 sorted(["__metadata__.json"] + list(want)))

    def test_a_missing_part_leaves_out_its_tensors_only(self):
        with tempfile.TemporaryDirectory() as d:
            want = self.write_split(d, skip=(2,))
            with Mount(d, "-o", "originals") as mnt:
                merged = os.path.join(mnt.path, "m.gguf.d")
                self.assertEqual(sorted(os.listdir(merged)), sorted(
                    ["__metadata__.json"] + [n for n in want if not n.startswith("blk.2.")]))
                self.assertIn("m-00002-of-00003.gguf left out of the merged view: the part is "
                              "missing", mnt.log())

    def test_disagreeing_keys_and_duplicates_are_never_served(self):
        with tempfile.TemporaryDirectory() as d:
            def keys(no, kv):
                if no == 3:  # says it is part 2
                    return [(k, t, 1 if k == "split.no" else v) for k, t, v in kv]
                return kv
            want = self.write_split(d, keys=keys, dup=("blk.1.w0", 2))
            with Mount(d, "-o", "originals") as mnt:
                merged = os.path.join(mnt.path, "m.gguf.d")
                got = sorted(os.listdir(merged))
                # Part 3 is out; blk.1.w0 is in parts 1 and 2: out.
                self.assertEqual(got, sorted(["__metadata__.json"] + [
                    n for n in want if not n.startswith("blk.3.") and n != "blk.1.w0"]))
                log = mnt.log()
                self.assertIn("does not match its name", log)
                self.assertIn("blk.1.w0 left out of the merged view: two parts hold it", log)
                for name in got[1:]:
                    with open(os.path.join(merged, name), "rb") as f:
                        self.assertEqual(f.read(), want[name], name)


def human_size(n):
    """--check's size: bytes below 1 KiB, else three significant figures."""
    if n < 1024:
        return "%d B" % n
    v, units = n / 1024, ["KiB", "MiB", "GiB", "TiB"]
    u = 0
    while v >= 1024 and u < len(units) - 1:
        v /= 1024
        u += 1
    return ("%.2f %s" if v < 10 else "%.1f %s" if v < 100 else "%.0f %s") % (v, units[u])


@unittest.skipIf(np is None, "needs numpy")
class GgufDequant(unittest.TestCase):
    """The f32 view of every quantised type with a dequantiser equals ggml's
    reference dequantiser, written again in numpy (ggml_dequant.py), bit for
    bit: on blocks of every quant bit pattern, and on blocks quantised from
    weights the way ggml's quantisers write them."""

    def test_every_type_bit_for_bit(self):
        import ggml_dequant as gd
        rng = np.random.default_rng(34)
        tensors, want = [], {}
        for name, (fn, block, size, _) in sorted(gd.DEQUANT.items()):
            for kind in ("random", "quantised"):
                count = 24 if block > 32 else 96
                if kind == "random":
                    blocks = gd.random_blocks(name, count, rng)
                else:
                    weights = (rng.standard_normal(count * block) * 0.05).astype("<f4")
                    blocks = gd.quantize_like_ggml(name, weights, rng)
                key = "%s.%s" % (name.lower(), kind)
                tensors.append((key, name, [count * block // 32, 32] if block == 32
                                else [count, block], blocks.tobytes()))
                want[key] = fn(blocks).astype("<f4")
        data, _, _ = gw.gguf_bytes([], tensors)
        with tempfile.TemporaryDirectory() as d:
            src = write(d, "q.gguf", data)
            r = lib.run_stfs("--check", src)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with Mount(src, "-o", "f32") as mnt:
                f32d = os.path.join(mnt.path, "__f32__")
                self.assertEqual(sorted(os.listdir(f32d)), sorted(want))
                for key, w in want.items():
                    p = os.path.join(f32d, key)
                    self.assertEqual(os.stat(p).st_size, w.size * 4, key)
                    with open(p, "rb") as f:
                        got = np.frombuffer(f.read(), dtype="<u4")
                    bad = np.nonzero(got != w.view("<u4"))[0]
                    self.assertEqual(bad.size, 0, "%s: %d values differ, first at %s: %r != %r"
                                     % (key, bad.size, bad[:1], got[bad[:1]].view("<f4"),
                                        w[bad[:1]]))
                    # Reads that start and end inside blocks.
                    with open(p, "rb") as f:
                        f.seek(1030)
                        self.assertEqual(f.read(4099), w.tobytes()[1030:5129], key)

    def test_ggml_block_sizes(self):
        # Q8_1 is 36 bytes a block in ggml (a file ggml wrote mounts);
        # Q2_0, id 42, 64 elements in 18 bytes.
        tensors = [("q81", "Q8_1", [2, 64], bytes(range(144))),
                   ("q20", "Q2_0", [1, 128], bytes(range(36)))]
        data, _, _ = gw.gguf_bytes([], tensors)
        with tempfile.TemporaryDirectory() as d:
            src = write(d, "s.gguf", data)
            r = lib.run_stfs("--check", src)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with Mount(src) as mnt:
                with open(os.path.join(mnt.path, "q81"), "rb") as f:
                    self.assertEqual(f.read(), bytes(range(144)))
                with open(os.path.join(mnt.path, "q20"), "rb") as f:
                    self.assertEqual(f.read(), bytes(range(36)))


if __name__ == "__main__":
    unittest.main()
