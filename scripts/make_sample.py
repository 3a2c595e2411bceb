#!/usr/bin/python3
"""Writes samples/tiny-llama.safetensors: a small Llama-shaped model.

Deterministic (fixed seed, no numpy), so the committed file can be rebuilt
byte for byte: `python3 scripts/make_sample.py samples/tiny-llama.safetensors`.
The layout follows the reference writer: header padded with spaces to a
multiple of 8, tensors packed back to back, widest dtype first, then by name.
"""
import json
import random
import struct
import sys

HIDDEN, INTER, VOCAB, LAYERS = 64, 172, 256, 2


def f32_bytes(vals):
    return struct.pack("<%df" % len(vals), *vals)


def f16_bytes(vals):
    return struct.pack("<%de" % len(vals), *vals)


def bf16_bytes(vals):
    out = bytearray()
    for v in vals:
        (bits,) = struct.unpack("<I", struct.pack("<f", v))
        bits += 0x7FFF + ((bits >> 16) & 1)  # round to nearest even
        out += struct.pack("<H", (bits >> 16) & 0xFFFF)
    return bytes(out)


ENCODERS = {"F32": (f32_bytes, 4), "F16": (f16_bytes, 2), "BF16": (bf16_bytes, 2)}


def tensors():
    yield "model.embed_tokens.weight", "BF16", [VOCAB, HIDDEN]
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        yield p + "input_layernorm.weight", "F32", [HIDDEN]
        yield p + "post_attention_layernorm.weight", "F32", [HIDDEN]
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            yield p + "self_attn.%s.weight" % proj, "F16", [HIDDEN, HIDDEN]
        yield p + "mlp.gate_proj.weight", "BF16", [INTER, HIDDEN]
        yield p + "mlp.up_proj.weight", "BF16", [INTER, HIDDEN]
        yield p + "mlp.down_proj.weight", "BF16", [HIDDEN, INTER]
    yield "model.norm.weight", "F32", [HIDDEN]
    yield "lm_head.weight", "BF16", [VOCAB, HIDDEN]


def main(path):
    rng = random.Random(20261126)
    specs = sorted(tensors(), key=lambda t: (-ENCODERS[t[1]][1], t[0]))
    header = {"__metadata__": {"format": "pt"}}
    data = bytearray()
    for name, dtype, shape in specs:
        count = 1
        for d in shape:
            count *= d
        if name.endswith("norm.weight"):
            vals = [1.0 + rng.gauss(0, 0.02) for _ in range(count)]
        else:
            vals = [rng.gauss(0, 0.02) for _ in range(count)]
        encode, _ = ENCODERS[dtype]
        blob = encode(vals)
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(data))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "samples/tiny-llama.safetensors")
