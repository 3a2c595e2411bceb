"""The packed view (-o packed, issue 15): a sharded checkpoint as one valid
safetensors file, read in place. Checked against an independent reader and
an independent packer written here from the documented order."""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

import stfs_testlib as lib
from stfs_testlib import Mount

# These tests read a folder's tensors at X.safetensors/ (stfs_testlib.py).
lib.FOLDER_DEFAULTS = ["-o", "model_dirs"]

SHARDED = os.path.join(lib.CORPUS, "sharded-safetensorsjl") if lib.CORPUS else ""


def read(path):
    with open(path, "rb") as f:
        return f.read()


def parse(blob):
    """An independent reading of a whole safetensors file held in memory."""
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    data = blob[8 + n:]
    return header, meta, data, n


def pack(folder, index_name):
    """The documented packing, written again: the index's tensors whose
    shard holds them (once), shard by shard in shard-name order, by offset
    within a shard; contiguous offsets; metadata = what all used shards
    agree on, then the index's scalar metadata as strings; header padded
    with spaces to a multiple of 8."""
    with open(os.path.join(folder, index_name)) as f:
        index = json.load(f)
    weight_map = index["weight_map"]
    shards = {}
    for shard in sorted(set(weight_map.values())):
        p = os.path.join(folder, shard)
        if os.path.isfile(p):
            shards[shard] = lib.read_header(p)
    holders = {}
    for shard, (h, _, _) in shards.items():
        for t in h:
            holders.setdefault(t, []).append(shard)
    chosen = []
    for t, shard in weight_map.items():
        if shard in shards and holders.get(t) == [shard]:
            h, _, start = shards[shard]
            chosen.append((shard, h[t]["data_offsets"][0], h[t]["data_offsets"][1], t))
    chosen.sort()
    used = []
    for shard, _, _, _ in chosen:
        if shard not in used:
            used.append(shard)
    meta = {}
    if used:
        first = shards[used[0]][1] or {}
        for k, v in first.items():
            if all((shards[s][1] or {}).get(k) == v for s in used[1:]):
                meta[k] = v
    for k, v in (index.get("metadata") or {}).items():
        if isinstance(v, str):
            meta[k] = v
        elif isinstance(v, bool):
            meta[k] = "true" if v else "false"
        elif isinstance(v, (int, float)):
            meta[k] = json.dumps(v)
    header, data, off = {}, b"", 0
    if meta:
        header["__metadata__"] = dict(sorted(meta.items()))
    for shard, _, _, t in chosen:
        h, _, start = shards[shard]
        e = h[t]
        blob = lib.tensor_bytes(os.path.join(folder, shard), e, start)
        header[t] = {"dtype": e["dtype"], "shape": e["shape"],
                     "data_offsets": [off, off + len(blob)]}
        data += blob
        off += len(blob)
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


@lib.require_fuse
class PackedView(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stfs-packed-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def generated(self):
        d = os.path.join(self.tmp, "gen")
        os.mkdir(d)
        w = lib.write_safetensors
        w(os.path.join(d, "m-00001-of-00003.safetensors"),
          [("b.weight", "F16", [3, 5], lib.random_bytes(30, 1)),
           ("a.weight", "BF16", [7], lib.random_bytes(14, 2)),
           ("empty", "F32", [0], b"")], metadata={"format": "pt", "who": "one"}, pad=False)
        w(os.path.join(d, "m-00002-of-00003.safetensors"),
          [("c", "I64", [2, 2], lib.random_bytes(32, 3)),
           ("extra.not.in.index", "U8", [3], b"xyz")], metadata={"format": "pt", "who": "two"},
          pad=False)
        w(os.path.join(d, "m-00003-of-00003.safetensors"),
          [("d\u00e9\"q", "F64", [3], lib.random_bytes(24, 4)),
           ("e", "BOOL", [5], b"\0\1\0\1\1")], metadata={"format": "pt"}, pad=False)
        with open(os.path.join(d, "m.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 105, "note": "x", "nested": {"a": 1},
                                    "flag": True},
                       "weight_map": {"a.weight": "m-00001-of-00003.safetensors",
                                      "b.weight": "m-00001-of-00003.safetensors",
                                      "empty": "m-00001-of-00003.safetensors",
                                      "c": "m-00002-of-00003.safetensors",
                                      "d\u00e9\"q": "m-00003-of-00003.safetensors",
                                      "e": "m-00003-of-00003.safetensors"}}, f)
        return d, "m.safetensors.index.json"

    def check(self, folder, index_name):
        want = pack(folder, index_name)
        base = index_name[:-len(".index.json")]
        with Mount(folder, "-o", "packed") as mnt:
            p = os.path.join(mnt.path, "__packed__", base)
            self.assertEqual(os.path.getsize(p), len(want))
            got = read(p)
            self.assertEqual(got, want)  # cmp against the independent packer
            header, meta, data, n = parse(got)
            self.assertEqual(n % 8, 0)
            self.assertEqual(8 + n + len(data), len(got))
            ends = sorted(e["data_offsets"] for e in header.values())
            pos = 0
            for b, e in ends:  # contiguous, no gaps, covering the data
                self.assertEqual(b, pos)
                pos = e
            self.assertEqual(pos, len(data))
            if meta is not None:
                self.assertTrue(all(isinstance(v, str) for v in meta.values()))
            # Every tensor's bytes equal its file in the merged directory.
            merged = os.path.join(mnt.path, base)
            for name, e in header.items():
                b, end = e["data_offsets"]
                self.assertEqual(data[b:end], read(os.path.join(merged, lib.map_name(name).decode())),
                                 name)
            # Reads at every boundary, odd offsets and lengths.
            bounds = {0, 8, 8 + n}
            for b, e in ends:
                bounds |= {8 + n + b, 8 + n + e}
            fd = os.open(p, os.O_RDONLY)
            try:
                for x in sorted(bounds):
                    for start in (x - 3, x - 1, x, x + 1):
                        for length in (1, 3, 7, 13, 4097):
                            if start < 0:
                                continue
                            self.assertEqual(os.pread(fd, length, start), got[start:start + length],
                                             (start, length))
            finally:
                os.close(fd)
            # stfs's own strict parser accepts it.
            r = lib.run_stfs("--check", p)
            self.assertEqual(r.returncode, 0, r.stdout)
            # Mounted again as a single file, its tensors equal the merged ones.
            with Mount(p) as again:
                for name in header:
                    f = lib.map_name(name).decode()
                    self.assertEqual(read(os.path.join(again.path, f)),
                                     read(os.path.join(merged, f)), name)
            st = os.stat(p)
            self.assertEqual(st.st_mode & 0o222, 0)
        return header, meta

    def test_generated_checkpoint(self):
        folder, index = self.generated()
        header, meta = self.check(folder, index)
        self.assertNotIn("extra.not.in.index", header)
        # Shard by shard, by offset within a shard (the byte compare checks it too).
        self.assertEqual(list(header), ["b.weight", "a.weight", "empty", "c", "d\u00e9\"q", "e"])
        self.assertEqual(meta["format"], "pt")       # all shards agree
        self.assertNotIn("who", meta)                # they do not
        self.assertEqual(meta["total_size"], "105")  # numbers become strings
        self.assertEqual(meta["flag"], "true")
        self.assertNotIn("nested", meta)             # non-scalars dropped

    def test_corpus_sharded_checkpoint(self):
        if not SHARDED or not os.path.isdir(SHARDED):
            if os.environ.get("STFS_REQUIRE_CORPUS") == "1":
                self.fail("corpus sharded checkpoint missing")
            self.skipTest("corpus missing")
        self.check(SHARDED, "model.safetensors.index.json")

    def test_truncated_shard_gives_eio_never_zeros(self):
        folder, index = self.generated()
        with Mount(folder, "-o", "packed") as mnt:
            p = os.path.join(mnt.path, "__packed__", "m.safetensors")
            with open(p, "rb") as f:  # the open file keeps its generation
                size = os.fstat(f.fileno()).st_size
                shard = os.path.join(folder, "m-00003-of-00003.safetensors")
                os.truncate(shard, os.path.getsize(shard) - 3)
                try:
                    got = f.read()
                    self.fail("read %d bytes of a packed file whose shard shrank" % len(got))
                except OSError as e:
                    self.assertEqual(e.errno, 5)
                self.assertEqual(size, os.fstat(f.fileno()).st_size)

    def test_reads_spanning_more_pieces_than_a_reply_holds(self):
        # 1,100 one-tensor shards: one read covers them all (more than
        # IOV_MAX pieces); 20 shards of 2,000 tensors each coalesce.
        for shards, per in ((1100, 1), (20, 2000)):
            d = os.path.join(self.tmp, "s%d" % shards)
            os.mkdir(d)
            wm = {}
            for k in range(shards):
                name = "m-%05d-of-%05d.safetensors" % (k + 1, shards)
                ts = [("t%d.%d" % (k, j), "U8", [3], bytes([k % 256, j % 256, 7]))
                      for j in range(per)]
                lib.write_safetensors(os.path.join(d, name), ts)
                for t in ts:
                    wm[t[0]] = name
            with open(os.path.join(d, "m.safetensors.index.json"), "w") as f:
                json.dump({"weight_map": wm}, f)
            want = pack(d, "m.safetensors.index.json")
            with Mount(d, "-o", "packed") as mnt:
                p = os.path.join(mnt.path, "__packed__", "m.safetensors")
                got = lib.run_stfs("--check", p, timeout=60)
                self.assertEqual(got.returncode, 0, got.stdout)
                self.assertIn("%d tensors" % (shards * per), got.stdout)
                self.assertEqual(read(p), want)

    def test_single_file_source_has_no_packed_view(self):
        with Mount(lib.SAMPLE, "-o", "packed") as mnt:
            self.assertNotIn("__packed__", os.listdir(mnt.path))
        r = lib.run_stfs("--help")
        self.assertIn("packed", r.stdout)


if __name__ == "__main__":
    unittest.main()
