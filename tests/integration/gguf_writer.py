"""An independent GGUF writer for the tests (no code shared with stfs's
reader): what it writes is what the tests expect to read through a mount.

Written from the GGUF specification (ggml/docs/gguf.md) and gguf-py's
GGML_QUANT_SIZES table, in Python, on purpose: a bug shared with the C++
reader would hide itself.

    python3 gguf_writer.py --seeds DIR   # a few files to seed fuzz_gguf
"""
import os
import random
import struct
import sys

# Value types of the key/value section.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}

QK_K = 256
# ggml type id -> (name, block size, bytes per block), from ggml's C block
# structs (ggml-common.h): Q8_1 is 36 bytes there (gguf-py still says 40).
TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", QK_K, 2 + 2 + QK_K // 16 + QK_K // 4),
    11: ("Q3_K", QK_K, 2 + QK_K // 4 + QK_K // 8 + 12),
    12: ("Q4_K", QK_K, 2 + 2 + QK_K // 2 + 12),
    13: ("Q5_K", QK_K, 2 + 2 + QK_K // 2 + QK_K // 8 + 12),
    14: ("Q6_K", QK_K, 2 + QK_K // 2 + QK_K // 4 + QK_K // 16),
    15: ("Q8_K", QK_K, 4 + QK_K + QK_K // 8),
    16: ("IQ2_XXS", QK_K, 2 + QK_K // 4), 17: ("IQ2_XS", QK_K, 2 + QK_K // 4 + QK_K // 32),
    18: ("IQ3_XXS", QK_K, 2 + QK_K // 4 + QK_K // 8),
    19: ("IQ1_S", QK_K, 2 + QK_K // 8 + QK_K // 16), 20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", QK_K, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
    22: ("IQ2_S", QK_K, 2 + QK_K // 4 + QK_K // 16),
    23: ("IQ4_XS", QK_K, 2 + 2 + QK_K // 2 + QK_K // 64),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 29: ("IQ1_M", QK_K, QK_K // 8 + QK_K // 16 + QK_K // 32),
    30: ("BF16", 1, 2), 34: ("TQ1_0", QK_K, 2 + 4 * 13), 35: ("TQ2_0", QK_K, 2 + 64),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
    42: ("Q2_0", 64, 18),
}
BY_NAME = {name: (tid, block, size) for tid, (name, block, size) in TYPES.items()}
# numpy's spelling of the element types (BF16 as its raw bits).
NUMPY = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I8": "|i1", "I16": "<i2", "I32": "<i4",
         "I64": "<i8", "BF16": "<u2"}


def nbytes(type_name, shape):
    """Bytes of a tensor of `shape` (row-major) and ggml type `type_name`."""
    _, block, size = BY_NAME[type_name]
    count = 1
    for s in shape:
        count *= s
    assert not shape or shape[-1] % block == 0, "row not a whole number of blocks"
    return count // block * size


def _string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _value(vtype, value):
    if vtype == STRING:
        return _string(value)
    if vtype == ARRAY:
        etype, items = value
        out = struct.pack("<IQ", etype, len(items))
        return out + b"".join(_value(etype, v) for v in items)
    return struct.pack(SCALAR[vtype], value)


def gguf_bytes(kv=(), tensors=(), version=3, alignment=32, trailing=b""):
    """A GGUF file. kv: (key, vtype, value) with ARRAY values as
    (element type, [values]); tensors: (name, type name, row-major shape,
    data bytes). Returns (bytes, data section offset, [tensor offsets])."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, vtype, value in kv:
        head += _string(key) + struct.pack("<I", vtype) + _value(vtype, value)
    offsets, at = [], 0
    for name, tname, shape, data in tensors:
        assert len(data) == nbytes(tname, shape), name
        ne = list(reversed(shape))  # GGUF stores the innermost dimension first
        head += _string(name) + struct.pack("<I", len(ne))
        head += b"".join(struct.pack("<Q", n) for n in ne)
        head += struct.pack("<IQ", BY_NAME[tname][0], at)
        offsets.append(at)
        at += (len(data) + alignment - 1) // alignment * alignment
    pad = lambda n: b"\0" * ((-n) % alignment)  # noqa: E731
    data_start = len(head) + (len(pad(len(head))) if tensors else 0)
    out = head + (pad(len(head)) if tensors else b"")
    for _, _, _, data in tensors:
        out += data + pad(len(data))
    return out + trailing, data_start, offsets


def llama_like(seed=1, vocab=300, layers=2, dim=64):
    """A small llama.cpp-shaped model: the metadata a converter writes
    (tokenizer arrays included) and tensors of the usual types."""
    rnd = random.Random(seed)
    tokens = ["<unk>", "<s>", "</s>"] + ["\u2581tok%d" % i for i in range(vocab - 3)]
    kv = [
        ("general.architecture", STRING, "llama"),
        ("general.name", STRING, "stfs test llama \u00e9\u6f22"),
        ("llama.context_length", U32, 2048),
        ("llama.embedding_length", U32, dim),
        ("llama.block_count", U32, layers),
        ("llama.rope.freq_base", F32, 10000.0),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("general.file_type", U32, 2),
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        ("tokenizer.ggml.scores", ARRAY, (F32, [-float(i) / 7 for i in range(vocab)])),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [2, 3, 3] + [1] * (vocab - 3))),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
        ("general.quantization_version", U32, 2),
    ]

    def data(tname, shape):
        return bytes(rnd.getrandbits(8) for _ in range(nbytes(tname, shape)))

    tensors = [("token_embd.weight", "Q4_0", [vocab, dim], None)]
    for i in range(layers):
        tensors += [("blk.%d.attn_norm.weight" % i, "F32", [dim], None),
                    ("blk.%d.attn_q.weight" % i, "Q8_0", [dim, dim], None),
                    ("blk.%d.attn_k.weight" % i, "F16", [dim, dim], None),
                    ("blk.%d.ffn_up.weight" % i, "Q4_K", [dim, 256], None),
                    ("blk.%d.ffn_down.weight" % i, "BF16", [dim, dim], None)]
    tensors += [("output_norm.weight", "F32", [dim], None),
                ("output.weight", "Q6_K", [vocab, 256], None)]
    return kv, [(n, t, s, data(t, s)) for n, t, s, _ in tensors]


def every_type(seed=2):
    """One tensor of two rows of two blocks per ggml type."""
    rnd = random.Random(seed)
    out = []
    for tid, (name, block, size) in sorted(TYPES.items()):
        shape = [2, 2 * block]
        out.append(("t.%s" % name, name, shape,
                    bytes(rnd.getrandbits(8) for _ in range(nbytes(name, shape)))))
    return out


def main(argv):
    if len(argv) == 3 and argv[1] == "--seeds":
        os.makedirs(argv[2], exist_ok=True)
        kv, tensors = llama_like(vocab=40, dim=32)
        files = {"llama": gguf_bytes(kv, [t for t in tensors if t[1] in ("F32", "F16", "Q4_0")]),
                 "types": gguf_bytes([], every_type()[:12]),
                 "empty": gguf_bytes([("k", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["x"])]))]),
                 "v2": gguf_bytes([("general.alignment", U32, 64)],
                                  [("w", "F32", [4], b"\0" * 16)], version=2, alignment=64)}
        for name, (data, _, _) in files.items():
            with open(os.path.join(argv[2], "writer-" + name + ".gguf"), "wb") as f:
                f.write(data)
        return 0
    print(__doc__)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
