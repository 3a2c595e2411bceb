"""Model folders (issue 6, DESIGN.md §4): a directory source mirrored,
sharded checkpoints merged, Hugging Face cache layouts followed. Bytes are
checked against an independent reading of each shard."""
import json
import os
import shutil
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import stfs_testlib as lib  # noqa: E402
from stfs_testlib import Mount  # noqa: E402

# These tests read a folder's tensors at X.safetensors/ (stfs_testlib.py).
lib.FOLDER_DEFAULTS = ["-o", "model_dirs"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


@lib.require_fuse
class ShardedCorpus(unittest.TestCase):
    def setUp(self):
        shard_dir = os.path.join(lib.CORPUS, "sharded-safetensorsjl") if lib.CORPUS else ""
        if not os.path.isdir(shard_dir):
            if os.environ.get("STFS_REQUIRE_CORPUS") == "1":
                self.fail("sharded corpus missing")
            self.skipTest("no corpus")
        self.tmp = tempfile.mkdtemp(prefix="stfs-fold-")
        self.addCleanup(shutil.rmtree, self.tmp)
        for f in os.listdir(shard_dir):
            shutil.copy(os.path.join(shard_dir, f), self.tmp)
        with open(os.path.join(self.tmp, "config.json"), "w") as f:
            f.write('{"model_type": "test", "hidden_size": 8}\n')
        with open(os.path.join(self.tmp, "broken.safetensors"), "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
        os.mkdir(os.path.join(self.tmp, "sub"))
        shutil.copy(lib.SAMPLE, os.path.join(self.tmp, "sub", "tiny.safetensors"))

    def test_merged_view_shards_and_passthrough(self):
        with open(os.path.join(self.tmp, "model.safetensors.index.json")) as f:
            index = json.load(f)
        with Mount(self.tmp) as mnt:
            root = mnt.path
            merged = os.path.join(root, "model.safetensors")
            self.assertTrue(os.path.isdir(merged))
            names = set(os.listdir(merged))
            self.assertEqual(names, {lib.map_name(t).decode() for t in index["weight_map"]}
                             | {"__metadata__.json"})
            for tensor, shard in index["weight_map"].items():
                src = os.path.join(self.tmp, shard)
                header, _, start = lib.read_header(src)
                got = read(os.path.join(merged, lib.map_name(tensor).decode()))
                self.assertEqual(got, lib.tensor_bytes(src, header[tensor], start), tensor)
                # The same bytes through the shard's own directory.
                self.assertEqual(read(os.path.join(root, shard, lib.map_name(tensor).decode())),
                                 got)
            self.assertEqual(json.loads(read(os.path.join(merged, "__metadata__.json"))),
                             index.get("metadata", {}))
            for f in ("config.json", "model.safetensors.index.json"):
                self.assertEqual(read(os.path.join(root, f)), read(os.path.join(self.tmp, f)))
            self.assertNotIn("broken.safetensors", os.listdir(root))
            self.assertIn("broken.safetensors: left out", mnt.log())
            self.assertIn("InvalidHeaderLength", mnt.log())
            sub = os.path.join(root, "sub", "tiny.safetensors")
            lib_header, _, start = lib.read_header(os.path.join(self.tmp, "sub", "tiny.safetensors"))
            self.assertEqual(read(os.path.join(sub, "lm_head.weight")),
                             lib.tensor_bytes(os.path.join(self.tmp, "sub", "tiny.safetensors"),
                                              lib_header["lm_head.weight"], start))

    def test_existing_file_of_the_merged_name(self):
        shutil.copy(lib.SAMPLE, os.path.join(self.tmp, "model.safetensors"))
        with Mount(self.tmp) as mnt:
            self.assertIn("lm_head.weight", os.listdir(os.path.join(mnt.path, "model.safetensors")))
            self.assertIn("__metadata__.json",
                          os.listdir(os.path.join(mnt.path, "model.safetensors.merged")))

    def test_index_errors_are_reported_and_never_served(self):
        path = os.path.join(self.tmp, "model.safetensors.index.json")
        with open(path) as f:
            index = json.load(f)
        wm = index["weight_map"]
        some = sorted(wm)[0]
        wm["not_in_any_shard"] = wm[some]
        wm["in_missing_shard"] = "model-00009-of-00009.safetensors"
        with open(path, "w") as f:
            json.dump(index, f)
        # A second copy of shard 2 under another name, listed too: every
        # tensor of shard 2 is now held by two shards.
        shutil.copy(os.path.join(self.tmp, "model-00002-of-00006.safetensors"),
                    os.path.join(self.tmp, "model-00002-copy.safetensors"))
        header2, _, _ = lib.read_header(os.path.join(self.tmp, "model-00002-of-00006.safetensors"))
        dup = sorted(header2)[0]
        with open(path) as f:
            index = json.load(f)
        index["weight_map"]["extra"] = "model-00002-copy.safetensors"
        with open(path, "w") as f:
            json.dump(index, f)
        with Mount(self.tmp) as mnt:
            names = os.listdir(os.path.join(mnt.path, "model.safetensors"))
            self.assertNotIn("not_in_any_shard", names)
            self.assertNotIn("in_missing_shard", names)
            self.assertNotIn(dup, names)
            self.assertIn(lib.map_name(some).decode(), names + [lib.map_name(dup).decode()])
            log = mnt.log()
            self.assertIn("`not_in_any_shard` left out", log)
            self.assertIn("`in_missing_shard` left out: shard model-00009-of-00009.safetensors is missing", log)
            self.assertIn("`%s` left out: two shards hold it" % dup, log)

    def test_tensors_take_their_shards_modes(self):
        shard = os.path.join(self.tmp, "model-00001-of-00006.safetensors")
        os.chmod(shard, 0o600)
        header, _, _ = lib.read_header(shard)
        name = sorted(header)[0]
        with Mount(self.tmp) as mnt:
            st = os.stat(os.path.join(mnt.path, "model.safetensors", lib.map_name(name).decode()))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o400)


@lib.require_fuse
class HuggingFaceCache(unittest.TestCase):
    def test_snapshot_of_symlinks_into_blobs(self):
        with tempfile.TemporaryDirectory() as d:
            repo = os.path.join(d, "models--org--tiny")
            blobs = os.path.join(repo, "blobs")
            snap = os.path.join(repo, "snapshots", "0123abcd")
            os.makedirs(blobs)
            os.makedirs(snap)
            os.makedirs(os.path.join(repo, "refs"))
            with open(os.path.join(repo, "refs", "main"), "w") as f:
                f.write("0123abcd")
            shutil.copy(lib.SAMPLE, os.path.join(blobs, "f00dfeed"))
            with open(os.path.join(blobs, "c0ffee"), "w") as f:
                f.write('{"architectures": ["LlamaForCausalLM"]}\n')
            os.symlink("../../blobs/f00dfeed", os.path.join(snap, "model.safetensors"))
            os.symlink("../../blobs/c0ffee", os.path.join(snap, "config.json"))
            os.symlink("../../blobs/missing", os.path.join(snap, "dangling.json"))
            header, _, start = lib.read_header(lib.SAMPLE)
            for source in (d, snap):
                with Mount(source) as mnt:
                    base = mnt.path if source == snap else os.path.join(
                        mnt.path, "models--org--tiny", "snapshots", "0123abcd")
                    model = os.path.join(base, "model.safetensors")
                    self.assertTrue(os.path.isdir(model))
                    for name, entry in header.items():
                        self.assertEqual(read(os.path.join(model, lib.map_name(name).decode())),
                                         lib.tensor_bytes(lib.SAMPLE, entry, start))
                    self.assertEqual(read(os.path.join(base, "config.json")),
                                     read(os.path.join(blobs, "c0ffee")))
                    self.assertNotIn("dangling.json", os.listdir(base))


wait_for = lib.wait_for


@lib.require_fuse
class LiveUpdates(unittest.TestCase):
    def test_mountpoint_inside_the_folder_is_left_out(self):
        # `stfs . mnt`: the mount must never list (or read) itself.
        mnt_dir = os.path.join(self.src, "mnt")
        os.mkdir(mnt_dir)
        import subprocess
        p = subprocess.Popen([lib.STFS, "-f", self.src, mnt_dir], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self.assertTrue(wait_for(lambda: lib.find_mount(mnt_dir) is not None, 20))
            # The default layout: the model file, its tensors beside it.
            self.assertEqual(sorted(os.listdir(mnt_dir)),
                             ["config.json", "m.safetensors", "m.safetensors.d"])
            self.assertTrue(os.path.isfile(os.path.join(mnt_dir, "m.safetensors")))
            with open(os.path.join(self.src, "extra.json"), "w") as f:
                f.write("{}\n")
            self.assertTrue(wait_for(lambda: os.path.exists(os.path.join(mnt_dir, "extra.json"))))
            self.assertNotIn("mnt", os.listdir(mnt_dir))
        finally:
            subprocess.run(["fusermount3", "-u", mnt_dir])
            self.assertEqual(lib.reap(p, mnt_dir, timeout=30), 0)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="stfs-live-")
        self.addCleanup(shutil.rmtree, self.tmp)
        self.src = os.path.join(self.tmp, "src")
        os.mkdir(self.src)
        lib.write_safetensors(os.path.join(self.src, "m.safetensors"),
                              [("w", "U8", [4], b"old!"), ("b", "U8", [2], b"ob")])
        with open(os.path.join(self.src, "config.json"), "w") as f:
            f.write("{}\n")

    def test_add_remove_and_replace_within_two_seconds(self):
        with Mount(self.src) as mnt:
            root = mnt.path
            self.assertEqual(read(os.path.join(root, "m.safetensors", "w")), b"old!")
            old_fd = os.open(os.path.join(root, "m.safetensors", "w"), os.O_RDONLY)
            try:
                # A new plain file, a new folder with a model, and a new model.
                with open(os.path.join(self.src, "tokenizer.json"), "w") as f:
                    f.write('{"v": 1}\n')
                os.mkdir(os.path.join(self.src, "sub"))
                lib.write_safetensors(os.path.join(self.src, "sub", "s.safetensors"),
                                      [("x", "U8", [1], b"x")])
                self.assertTrue(wait_for(lambda: os.path.exists(
                    os.path.join(root, "tokenizer.json"))), "added file did not appear")
                self.assertEqual(read(os.path.join(root, "tokenizer.json")), b'{"v": 1}\n')
                self.assertTrue(wait_for(lambda: os.path.exists(
                    os.path.join(root, "sub", "s.safetensors", "x"))), "new folder not seen")
                # Removed.
                os.unlink(os.path.join(self.src, "config.json"))
                self.assertTrue(wait_for(lambda: not os.path.exists(
                    os.path.join(root, "config.json"))), "removed file still there")
                # Replaced by atomic rename, the way downloaders finish.
                tmp = os.path.join(self.src, ".m.safetensors.part")
                lib.write_safetensors(tmp, [("w", "U8", [4], b"new!"), ("c", "U8", [1], b"c")])
                os.rename(tmp, os.path.join(self.src, "m.safetensors"))
                self.assertTrue(wait_for(lambda: os.path.exists(
                    os.path.join(root, "m.safetensors", "c"))), "replacement not seen")
                self.assertEqual(read(os.path.join(root, "m.safetensors", "w")), b"new!")
                self.assertFalse(os.path.exists(os.path.join(root, "m.safetensors", "b")))
                # The reader that had the old file open still reads the old bytes.
                self.assertEqual(os.pread(old_fd, 4, 0), b"old!")
            finally:
                os.close(old_fd)


if __name__ == "__main__":
    unittest.main()
