"""Checkpoint-shaped rows of scripts/bench.py (issue 22): what a user feels
when a loader or `cp -r` reads a real checkpoint tensor by tensor.

The model has the tensor-size mix of a 7B checkpoint (32 layers: two norms
of 8 KiB, q and o, k and v, gate, up and down; embeddings and head) scaled
to about 0.9 GiB: 291 tensors, mostly 0.6-7 MiB, 64 of 8 KiB. Every reader
reads into one reused 1 MiB buffer (a fresh buffer per call costs more than
the read itself here), file by file in header order, or with 4 threads
over disjoint tensors. Each row is the median of alternating pairs in one
run, and the ratio is stfs against the row's peer."""
import json
import os
import statistics
import struct
import threading

MiB = 1 << 20
KiB = 1 << 10


def checkpoint_shape(layers=32):
    """(name, bytes) in header order: a 7B checkpoint's sizes / 14.5."""
    out = [("model.embed_tokens.weight", 18 * MiB)]
    for i in range(layers):
        p = "model.layers.%d." % i
        out += [(p + "input_layernorm.weight", 8 * KiB),
                (p + "self_attn.q_proj.weight", 2304 * KiB),
                (p + "self_attn.k_proj.weight", 576 * KiB),
                (p + "self_attn.v_proj.weight", 576 * KiB),
                (p + "self_attn.o_proj.weight", 2304 * KiB),
                (p + "post_attention_layernorm.weight", 8 * KiB),
                (p + "mlp.gate_proj.weight", 6 * MiB),
                (p + "mlp.up_proj.weight", 6 * MiB),
                (p + "mlp.down_proj.weight", 6 * MiB)]
    out += [("model.norm.weight", 8 * KiB), ("lm_head.weight", 18 * MiB)]
    return out


def issue_shape(layers=8):
    """(name, bytes): the 74-tensor, 376 MiB model issue 22 measured C on
    (0.88x then): per layer two 8 KiB norms, q and o of 4 MiB, k and v of
    1 MiB, gate, up and down of 11 MiB; 16 MiB embeddings and head. Its
    tensors are larger than the 291-tensor shape's, as a real 7B's are
    (32-86 MiB), so per-file costs weigh less."""
    out = [("model.embed_tokens.weight", 16 * MiB)]
    for i in range(layers):
        p = "model.layers.%d." % i
        out += [(p + "input_layernorm.weight", 8 * KiB),
                (p + "self_attn.q_proj.weight", 4 * MiB),
                (p + "self_attn.k_proj.weight", MiB),
                (p + "self_attn.v_proj.weight", MiB),
                (p + "self_attn.o_proj.weight", 4 * MiB),
                (p + "post_attention_layernorm.weight", 8 * KiB),
                (p + "mlp.gate_proj.weight", 11 * MiB),
                (p + "mlp.up_proj.weight", 11 * MiB),
                (p + "mlp.down_proj.weight", 11 * MiB)]
    return out + [("lm_head.weight", 16 * MiB)]


def real_sizes_shape(layers=3):
    """(name, bytes): layers of a 7B checkpoint at their real sizes (f16:
    4096 x 4096 attention, 4096 x 11008 MLP, norms of 8 KiB), no
    embeddings: 28 tensors, 1.13 GiB. The 291-tensor shape divides every
    size by 14.5 and so weighs each file's fixed cost 14.5 times more than
    a real checkpoint does; this one keeps a real file's size."""
    attn, mlp = 4096 * 4096 * 2, 4096 * 11008 * 2
    out = []
    for i in range(layers):
        p = "model.layers.%d." % i
        out += [(p + "input_layernorm.weight", 8 * KiB),
                (p + "self_attn.q_proj.weight", attn), (p + "self_attn.k_proj.weight", attn),
                (p + "self_attn.v_proj.weight", attn), (p + "self_attn.o_proj.weight", attn),
                (p + "post_attention_layernorm.weight", 8 * KiB),
                (p + "mlp.gate_proj.weight", mlp), (p + "mlp.up_proj.weight", mlp),
                (p + "mlp.down_proj.weight", mlp)]
    return out + [("model.norm.weight", 8 * KiB)]


def write_model(path, shape, dtype="U8", item=1):
    """A safetensors file of `shape` ((name, bytes) pairs; every tensor of
    `dtype`, `item` bytes an element) with random bytes (kept if `path`
    exists: an earlier group of a --compare run wrote it); returns the
    [(name, absolute offset, size)] in header order."""
    header, off = {}, 0
    for name, size in shape:
        header[name] = {"dtype": dtype, "shape": [size // item],
                        "data_offsets": [off, off + size]}
        off += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    start = 8 + len(text)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for _, size in shape:
                f.write(os.urandom(size))
    out, off = [], start
    for name, size in shape:
        out.append((name, off, size))
        off += size
    return out


def read_files(paths, threads=1):
    """Reads every path whole into a reused 1 MiB buffer per thread;
    `threads` readers take disjoint paths (round robin)."""
    def reader(mine):
        buf = bytearray(MiB)
        for p in mine:
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass

    if threads == 1:
        reader(paths)
        return
    ts = [threading.Thread(target=reader, args=(paths[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def read_whole(path):
    read_files([path])


class CheckpointRows:
    """Rows over `bench` (a bench.Bench): its mounts, timers and row table."""

    def __init__(self, bench, timed, drop_caches, warm, sh, pairs=5):
        self.b = bench
        self.timed = timed
        self.drop = drop_caches
        self.warm = warm
        self.sh = sh
        self.pairs = pairs
        # The targeted local rows' pairs spread widely on a 2-core VM (C's
        # 0.55-1.3x; B's with the disk's rate, 0.45-1.9 GB/s natively within
        # minutes): more of them.
        self.c_pairs = max(pairs, 9)
        work = os.path.join(bench.work, "cp")
        os.makedirs(work, exist_ok=True)
        self.model = os.path.join(work, "checkpoint.safetensors")
        self.tensors = write_model(self.model, checkpoint_shape())
        self.total = sum(s for _, _, s in self.tensors)
        # The same bytes as one tensor: C's peer.
        self.one = os.path.join(work, "one-tensor.safetensors")
        write_model(self.one, [("all", self.total)])

    def files(self, mp):
        return [os.path.join(mp, name) for name, _, _ in self.tensors]

    def pairs_of(self, a, b, pairs=None, total=None):
        """Medians of `a` and `b` (GB/s, each reading `total` bytes: the
        model's by default) over alternating pairs, and of their per-pair
        ratios a/b."""
        ra, rb, ratios = [], [], []
        for i in range(pairs or self.pairs):
            got = {}
            for which in (("a", "b") if i % 2 == 0 else ("b", "a")):
                fn = a if which == "a" else b
                got[which] = (total or self.total) / 1e9 / fn()
            ra.append(got["a"])
            rb.append(got["b"])
            ratios.append(got["a"] / got["b"])
        return statistics.median(ra), statistics.median(rb), statistics.median(ratios)

    def report(self, title, a_name, b_name, result, target=None):
        a, b, ratio = result
        print(title)
        self.b.row(a_name, a, "GB/s")
        self.b.row(b_name, b, "GB/s")
        ok = None if target is None else ratio >= target
        self.b.row("ratio", ratio, "x", target=None if target is None else ">=%.1fx" % target,
                   ok=ok)

    def cold(self, fn):
        """A run of `fn` timed after the page cache is dropped."""
        def run():
            self.drop()
            return self.timed(fn)
        return run

    def warm_then(self, fn, source):
        """A run of `fn` timed with only `source` in the page cache."""
        def run():
            self.drop()
            self.warm(source)
            return self.timed(fn)
        return run

    def local(self):
        """B: caches dropped; C: source warm, against one tensor of the same size."""
        mp, p = self.b.mount_stfs(self.model)
        one_mp, one_p = self.b.mount_stfs(self.one)
        files = self.files(mp)

        for threads in (1, 4):
            self.report("B. checkpoint, local, caches dropped, %d reader(s): stfs / native "
                        "whole-file read" % threads, "stfs, tensor by tensor", "native file",
                        self.pairs_of(self.cold(lambda: read_files(files, threads)),
                                      self.cold(lambda: read_whole(self.model)),
                                      pairs=self.c_pairs if threads == 1 else None),
                        target=0.8 if threads == 1 else None)

        self.report("C. checkpoint, local, source warm: stfs tensor by tensor / one tensor "
                    "of the same size through stfs", "stfs, 291 tensors", "stfs, one tensor",
                    self.pairs_of(self.warm_then(lambda: read_files(files), self.model),
                                  self.warm_then(lambda: read_whole(os.path.join(one_mp, "all")),
                                            self.one), pairs=self.c_pairs),
                    target=0.8)
        self.b.umount(one_mp, one_p)
        self.b.umount(mp, p)
        self.other_c("issue", issue_shape(), "the issue's model (74 tensors, 376 MiB)")
        self.other_c("real-sizes", real_sizes_shape(),
                     "a 7B's real tensor sizes (3 layers: 28 tensors, 1.13 GiB)")

    def other_c(self, key, shape, label):
        """C on another model shape, against one tensor of its size."""
        work = os.path.join(self.b.work, "cp")
        model = os.path.join(work, key + "-checkpoint.safetensors")
        tensors = write_model(model, shape)
        one = os.path.join(work, key + "-one-tensor.safetensors")
        write_model(one, [("all", sum(s for _, _, s in tensors))])
        mp, p = self.b.mount_stfs(model)
        one_mp, one_p = self.b.mount_stfs(one)
        files = [os.path.join(mp, name) for name, _, _ in tensors]
        try:
            self.report("C on %s, source warm: stfs tensor by tensor / one tensor of the same "
                        "size through stfs" % label,
                        "stfs, %d tensors" % len(tensors), "stfs, one tensor",
                        self.pairs_of(self.warm_then(lambda: read_files(files), model),
                                      self.warm_then(lambda: read_whole(os.path.join(one_mp, "all")),
                                                     one), pairs=self.c_pairs,
                                      total=sum(s for _, _, s in tensors)),
                        target=0.8)
        finally:
            self.b.umount(one_mp, one_p)
            self.b.umount(mp, p)

    def direct_io(self):
        """-o direct_io against the default, side by side: the first read
        (B, C), and what it costs a re-read (the mount's page cache is not
        used, so every read goes to the daemon)."""
        mp, p = self.b.mount_stfs(self.model)
        one_mp, one_p = self.b.mount_stfs(self.one)
        files = self.files(mp)

        def cold_dio():
            # A mount of its own per run: with source_cache=keep (implied)
            # the daemon's mapping holds the pages it served, which
            # drop_caches leaves alone.
            dmp, dp = self.b.mount_stfs(self.model, "-o", "direct_io")
            try:
                self.drop()
                return self.timed(lambda: read_files(self.files(dmp)))
            finally:
                self.b.umount(dmp, dp)

        self.report("B with -o direct_io: local, caches dropped, 1 reader: stfs -o direct_io / "
                    "native whole-file read", "stfs -o direct_io", "native file",
                    self.pairs_of(cold_dio, self.cold(lambda: read_whole(self.model))))
        self.report("checkpoint, caches dropped: stfs -o direct_io / stfs", "stfs -o direct_io",
                    "stfs", self.pairs_of(cold_dio, self.cold(lambda: read_files(files))))

        dmp, dp = self.b.mount_stfs(self.model, "-o", "direct_io")
        done_mp, done_p = self.b.mount_stfs(self.one, "-o", "direct_io")
        dfiles = self.files(dmp)
        self.report("checkpoint, source warm: stfs -o direct_io / stfs", "stfs -o direct_io",
                    "stfs", self.pairs_of(self.warm_then(lambda: read_files(dfiles), self.model),
                                          self.warm_then(lambda: read_files(files), self.model)))
        self.report("C with -o direct_io: source warm, 291 tensors / one tensor, both "
                    "-o direct_io", "stfs -o direct_io, 291 tensors", "one tensor",
                    self.pairs_of(self.warm_then(lambda: read_files(dfiles), self.model),
                                  self.warm_then(lambda: read_whole(os.path.join(done_mp, "all")),
                                            self.one)))

        def reread(path, read=read_whole):
            def run():
                read(path)  # the first read: both caches warm after it
                return self.timed(lambda: read(path))
            return run

        self.report("re-read of one tensor (0.9 GB), everything warm: stfs -o direct_io / stfs",
                    "stfs -o direct_io", "stfs",
                    self.pairs_of(reread(os.path.join(done_mp, "all")),
                                  reread(os.path.join(one_mp, "all"))))

        # Small reads: a reader of 4 KiB pieces sends one READ a piece under
        # direct_io, cached or not; the default reads ahead a window at a
        # time and answers repeats from the mount's cache.
        small = 64 * MiB

        def dd_4k(path):
            self.sh("dd", "if=" + path, "of=/dev/null", "bs=4k", "count=%d" % (small // 4096),
                    "status=none")

        def first_4k(path):
            return self.warm_then(lambda: dd_4k(path), self.one)

        for label, fn in (("first read, source warm", first_4k),
                          ("re-read", lambda path: reread(path, dd_4k))):
            self.report("small reads (dd bs=4k, 64 MiB of one tensor), %s: stfs -o direct_io / "
                        "stfs" % label, "stfs -o direct_io", "stfs",
                        self.pairs_of(fn(os.path.join(done_mp, "all")),
                                      fn(os.path.join(one_mp, "all")), total=small))
        for m in ((done_mp, done_p), (one_mp, one_p), (dmp, dp), (mp, p)):
            self.b.umount(*m)

    def scaling(self, label="local", lower_argv=None):
        """1, 2 and 4 readers over distinct tensors, caches dropped, locally
        or with the model on a FUSE source (`lower_argv` mounts it)."""
        lower = lp = None
        src = self.model
        if lower_argv:
            lower, lp = self.b.mount(lower_argv, "lower-bench-")
            src = os.path.join(lower, os.path.basename(self.model))
        mp, p = self.b.mount_stfs(src)
        files = self.files(mp)
        print("D. checkpoint, %s, caches dropped: readers over distinct tensors (GB/s, "
              "median of %d; this machine has %d cores)" % (label, self.pairs, os.cpu_count()))
        for threads in (1, 2, 4):
            runs = []
            for _ in range(self.pairs):
                self.drop()
                runs.append(self.total / 1e9 / self.timed(lambda: read_files(files, threads)))
            self.b.row("stfs, %d reader(s)" % threads, statistics.median(runs), "GB/s")
        self.b.umount(mp, p)
        if lower:
            self.b.umount(lower, lp)

    def over_fuse(self, label, lower_argv, image=None, opts=()):
        """stfs (with `opts`) on a FUSE source against a whole-file read of
        the model file on that same source, caches dropped."""
        lower, lp = self.b.mount(lower_argv, "lower-bench-")
        src = os.path.join(lower, os.path.basename(self.model))
        mp, p = self.b.mount_stfs(src, *opts)
        files = self.files(mp)

        def cold(fn):
            def run():
                self.drop()
                if image:
                    self.warm(image)  # the image in memory: FUSE, not the disk, is measured
                return self.timed(fn)
            return run

        for threads in (1, 4):
            self.report("%s, %d reader(s): stfs / a direct read of the model file there"
                        % (label, threads), "stfs on it", "the file read directly",
                        self.pairs_of(cold(lambda: read_files(files, threads)),
                                      cold(lambda: read_whole(src))),
                        target=0.8 if threads == 1 and not opts and "A" in label.split()[0]
                        else None)
        self.b.umount(mp, p)
        self.b.umount(lower, lp)

    def squashfuse(self, compressed, name, tensors=None, opts=()):
        tree = os.path.join(self.b.work, "cp-tree")
        os.mkdir(tree)
        model = self.model
        if tensors is not None:
            model = os.path.join(tree, "small.safetensors")
            self.tensors_saved, self.total_saved = self.tensors, self.total
            self.tensors = write_model(model, tensors)
            self.total = sum(s for _, _, s in self.tensors)
        else:
            os.link(self.model, os.path.join(tree, os.path.basename(self.model)))
        image = os.path.join(self.b.work, "cp.squashfs")
        squash_opts = [] if compressed else ["-noI", "-noD", "-noF", "-noX"]
        self.sh("mksquashfs", tree, image, *squash_opts, "-no-progress", "-quiet")
        saved_model = self.model
        self.model = model
        try:
            self.over_fuse(name, ["squashfuse_ll", "-f", image], image=image, opts=opts)
        finally:
            self.model = saved_model
            if tensors is not None:
                self.tensors, self.total = self.tensors_saved, self.total_saved
            os.unlink(image)
            for f in os.listdir(tree):
                os.unlink(os.path.join(tree, f))
            os.rmdir(tree)

    def over_squashfuse(self, opts=()):
        """A and A', stfs mounted with `opts`."""
        with_opts = " with " + " ".join(opts) if opts else ""
        self.squashfuse(False, "A. checkpoint over squashfuse_ll (uncompressed image)" +
                        with_opts, opts=opts)
        self.squashfuse(True, "A'. 20 tensors of 4 MiB over squashfuse_ll (default image)" +
                        with_opts, tensors=[("t%d" % i, 4 * MiB) for i in range(20)], opts=opts)

    def run(self):
        self.local()
        self.direct_io()
        self.scaling()
        self.over_squashfuse()
        self.over_squashfuse(("-o", "direct_io"))
        self.over_fuse("E. checkpoint over bindfs",
                       ["bindfs", "-f", os.path.dirname(self.model)])
        self.scaling("over bindfs", ["bindfs", "-f", os.path.dirname(self.model)])
