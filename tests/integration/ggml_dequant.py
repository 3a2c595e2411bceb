"""ggml's reference dequantisers (`dequantize_row_*` in ggml-quants.c),
written again in numpy for the tests: an independent reading of ggml's C
that the daemon's C++ (src/format/dequant.cpp) must match bit for bit.

Each function takes the raw blocks as a (blocks, bytes) uint8 array and
returns float32 values in ggml's order. Every float operation is numpy's
float32 operation, one rounding each, in the order ggml's C writes it."""
import numpy as np

QK_K = 256
F32 = np.float32

KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10,
                          1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8)
KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.int8)


def f16(b, off):
    """The f16 at byte `off` of each block, as float32 (exact)."""
    return b[:, off:off + 2].copy().view("<f2").astype(F32)[:, 0]


def q4_0(b):
    d = f16(b, 0)[:, None]
    qs = b[:, 2:18].astype(np.int32)
    lo = ((qs & 0x0F) - 8).astype(F32) * d
    hi = ((qs >> 4) - 8).astype(F32) * d
    return np.concatenate([lo, hi], axis=1).ravel()


def q4_1(b):
    d, m = f16(b, 0)[:, None], f16(b, 2)[:, None]
    qs = b[:, 4:20].astype(np.int32)
    lo = (qs & 0x0F).astype(F32) * d + m
    hi = (qs >> 4).astype(F32) * d + m
    return np.concatenate([lo, hi], axis=1).ravel()


def _q5(b, qh_off, qs_off, signed):
    qh = b[:, qh_off:qh_off + 4].copy().view("<u4")[:, 0].astype(np.int64)[:, None]
    j = np.arange(16)[None, :]
    qs = b[:, qs_off:qs_off + 16].astype(np.int64)
    xh0 = ((qh >> j) << 4) & 0x10
    xh1 = (qh >> (j + 12)) & 0x10
    x0 = (qs & 0x0F) | xh0
    x1 = (qs >> 4) | xh1
    if signed:
        x0, x1 = x0 - 16, x1 - 16
    return x0.astype(F32), x1.astype(F32)


def q5_0(b):
    d = f16(b, 0)[:, None]
    x0, x1 = _q5(b, 2, 6, True)
    return np.concatenate([x0 * d, x1 * d], axis=1).ravel()


def q5_1(b):
    d, m = f16(b, 0)[:, None], f16(b, 2)[:, None]
    x0, x1 = _q5(b, 4, 8, False)
    return np.concatenate([x0 * d + m, x1 * d + m], axis=1).ravel()


def q8_0(b):
    d = f16(b, 0)[:, None]
    return (b[:, 2:34].view(np.int8).astype(F32) * d).ravel()


def q2_k(b):
    out = np.empty((b.shape[0], QK_K), F32)
    d, mn = f16(b, 80), f16(b, 82)
    for i in range(b.shape[0]):
        scales, q, y = b[i, 0:16], b[i, 16:80], 0
        is_ = 0
        for n in range(0, QK_K, 128):
            qq = q[n // 4:n // 4 + 32].astype(np.int32)
            for shift in (0, 2, 4, 6):
                for half in (0, 16):
                    sc = int(scales[is_])
                    is_ += 1
                    dl = d[i] * F32(sc & 0xF)
                    ml = mn[i] * F32(sc >> 4)
                    vals = ((qq[half:half + 16] >> shift) & 3).astype(F32)
                    out[i, y:y + 16] = dl * vals - ml
                    y += 16
    return out.ravel()


def q3_k(b):
    out = np.empty((b.shape[0], QK_K), F32)
    kmask1, kmask2 = 0x03030303, 0x0f0f0f0f
    for i in range(b.shape[0]):
        hm, q = b[i, 0:32].astype(np.int32), b[i, 32:96]
        d_all = f16(b[i:i + 1], 108)[0]
        aux = [int(v) for v in b[i, 96:108].copy().view("<u4")] + [0]
        tmp = aux[2]
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4)
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4)
        scales = np.array(aux, dtype="<u4").view(np.int8).astype(np.int32)
        y, is_, m = 0, 0, 1
        for n in range(0, QK_K, 128):
            qq = q[n // 4:n // 4 + 32].astype(np.int32)
            for shift in (0, 2, 4, 6):
                for half in (0, 16):
                    dl = d_all * F32(scales[is_] - 32)
                    is_ += 1
                    v = ((qq[half:half + 16] >> shift) & 3) - np.where(hm[half:half + 16] & m, 0, 4)
                    out[i, y:y + 16] = dl * v.astype(F32)
                    y += 16
                m <<= 1
    return out.ravel()


def scale_min_k4(j, q):
    if j < 4:
        return int(q[j]) & 63, int(q[j + 4]) & 63
    return ((int(q[j + 4]) & 0xF) | ((int(q[j - 4]) >> 6) << 4),
            (int(q[j + 4]) >> 4) | ((int(q[j]) >> 6) << 4))


def q4_k(b):
    out = np.empty((b.shape[0], QK_K), F32)
    d, mn = f16(b, 0), f16(b, 2)
    for i in range(b.shape[0]):
        scales, q = b[i, 4:16], b[i, 16:144].astype(np.int32)
        for k, j in enumerate(range(0, QK_K, 64)):
            sc1, m1 = scale_min_k4(2 * k, scales)
            sc2, m2 = scale_min_k4(2 * k + 1, scales)
            qq = q[32 * k:32 * k + 32]
            out[i, j:j + 32] = (d[i] * F32(sc1)) * (qq & 0xF).astype(F32) - mn[i] * F32(m1)
            out[i, j + 32:j + 64] = (d[i] * F32(sc2)) * (qq >> 4).astype(F32) - mn[i] * F32(m2)
    return out.ravel()


def q5_k(b):
    out = np.empty((b.shape[0], QK_K), F32)
    d, mn = f16(b, 0), f16(b, 2)
    for i in range(b.shape[0]):
        scales, qh, ql = b[i, 4:16], b[i, 16:48].astype(np.int32), b[i, 48:176].astype(np.int32)
        for k, j in enumerate(range(0, QK_K, 64)):
            sc1, m1 = scale_min_k4(2 * k, scales)
            sc2, m2 = scale_min_k4(2 * k + 1, scales)
            u1, u2 = 1 << (2 * k), 2 << (2 * k)
            qq = ql[32 * k:32 * k + 32]
            lo = (qq & 0xF) + np.where(qh & u1, 16, 0)
            hi = (qq >> 4) + np.where(qh & u2, 16, 0)
            out[i, j:j + 32] = (d[i] * F32(sc1)) * lo.astype(F32) - mn[i] * F32(m1)
            out[i, j + 32:j + 64] = (d[i] * F32(sc2)) * hi.astype(F32) - mn[i] * F32(m2)
    return out.ravel()


def q6_k(b):
    out = np.empty((b.shape[0], QK_K), F32)
    d = f16(b, 208)
    for i in range(b.shape[0]):
        ql, qh = b[i, 0:128].astype(np.int32), b[i, 128:192].astype(np.int32)
        sc = b[i, 192:208].view(np.int8).astype(F32)
        for h in range(2):
            l_ = np.arange(32)
            L, H, S = ql[64 * h:64 * h + 64], qh[32 * h:32 * h + 32], sc[8 * h:8 * h + 8]
            q1 = ((L[:32] & 0xF) | (((H >> 0) & 3) << 4)) - 32
            q2 = ((L[32:] & 0xF) | (((H >> 2) & 3) << 4)) - 32
            q3 = ((L[:32] >> 4) | (((H >> 4) & 3) << 4)) - 32
            q4 = ((L[32:] >> 4) | (((H >> 6) & 3) << 4)) - 32
            is_ = l_ // 16
            base = 128 * h
            for off, qv, k in ((0, q1, 0), (32, q2, 2), (64, q3, 4), (96, q4, 6)):
                out[i, base + off:base + off + 32] = (d[i] * S[is_ + k]) * qv.astype(F32)
    return out.ravel()


def iq4_nl(b):
    d = f16(b, 0)[:, None]
    qs = b[:, 2:18]
    lo = d * KVALUES_IQ4NL[qs & 0xF].astype(F32)
    hi = d * KVALUES_IQ4NL[qs >> 4].astype(F32)
    return np.concatenate([lo, hi], axis=1).ravel()


def iq4_xs(b):
    out = np.empty((b.shape[0], QK_K), F32)
    d = f16(b, 0)
    for i in range(b.shape[0]):
        scales_h = int(b[i, 2]) | int(b[i, 3]) << 8
        scales_l, qs = b[i, 4:8], b[i, 8:136]
        for ib in range(8):
            ls = ((int(scales_l[ib // 2]) >> 4 * (ib % 2)) & 0xF) | (((scales_h >> 2 * ib) & 3) << 4)
            dl = d[i] * F32(ls - 32)
            q = qs[16 * ib:16 * ib + 16]
            out[i, 32 * ib:32 * ib + 16] = dl * KVALUES_IQ4NL[q & 0xF].astype(F32)
            out[i, 32 * ib + 16:32 * ib + 32] = dl * KVALUES_IQ4NL[q >> 4].astype(F32)
    return out.ravel()


def _trits(byte_arr, pow3, d):
    q = (byte_arr.astype(np.uint16) * pow3) & 0xFF
    xi = (q * 3) >> 8
    return (xi.astype(np.int16) - 1).astype(F32) * d


def tq1_0(b):
    out = []
    pow3 = [1, 3, 9, 27, 81, 243]
    d = f16(b, 52)
    for i in range(b.shape[0]):
        qs, qh = b[i, 0:48], b[i, 48:52]
        row = [_trits(qs[0:32], pow3[n], d[i]) for n in range(5)]
        row += [_trits(qs[32:48], pow3[n], d[i]) for n in range(5)]
        row += [_trits(qh, pow3[n], d[i]) for n in range(4)]
        out.append(np.concatenate(row))
    return np.concatenate(out)


def tq2_0(b):
    d = f16(b, 64)
    out = []
    for i in range(b.shape[0]):
        row = []
        for j in (0, 32):
            for l_ in range(4):
                q = ((b[i, j:j + 32] >> (2 * l_)) & 3).astype(np.int8)
                row.append((q - 1).astype(F32) * d[i])
        out.append(np.concatenate(row))
    return np.concatenate(out)


def e8m0_half(e):
    e = e.astype(np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - 1) << 23).astype(np.uint32)
    return bits.view(F32)


def mxfp4(b):
    d = e8m0_half(b[:, 0])[:, None]
    qs = b[:, 1:17]
    with np.errstate(over="ignore"):  # e up to 255: 12 * 2^127 is inf, as in C
        lo = KVALUES_MXFP4[qs & 0xF].astype(F32) * d
        hi = KVALUES_MXFP4[qs >> 4].astype(F32) * d
    return np.concatenate([lo, hi], axis=1).ravel()


def ue4m3_half(x):
    """ggml_ue4m3_to_fp32: unsigned E4M3 (bias 7) times 0.5; 0 and 0x7F
    give 0, bit 7 is not read."""
    x = x.astype(np.int32)
    exp = (x >> 3) & 0xF
    man = (x & 0x7).astype(F32)
    raw = np.where(exp == 0, np.ldexp(man, -9).astype(F32),
                   np.ldexp(F32(1) + man / F32(8), exp - 7).astype(F32)).astype(F32)
    return np.where((x == 0) | (x == 0x7F), F32(0), raw * F32(0.5)).astype(F32)


def nvfp4(b):
    n = b.shape[0]
    d = ue4m3_half(b[:, 0:4])[:, :, None]  # one scale a 16-value sub-block
    qs = b[:, 4:36].reshape(n, 4, 8)
    lo = KVALUES_MXFP4[qs & 0xF].astype(F32) * d
    hi = KVALUES_MXFP4[qs >> 4].astype(F32) * d
    return np.concatenate([lo, hi], axis=2).ravel()


def q1_0(b):
    d = f16(b, 0)[:, None]
    bits = np.unpackbits(b[:, 2:18], axis=1, bitorder="little")  # value j: bit j%8 of byte j/8
    return np.where(bits == 1, d, -d).astype(F32).ravel()


def q2_0(b):
    n = b.shape[0]
    d = f16(b, 0)[:, None]
    codes = (b[:, 2:18, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3
    return ((codes.reshape(n, 64).astype(np.int32) - 1).astype(F32) * d).ravel()


# name -> (dequantiser, block values, block bytes, where the f16 scales sit)
DEQUANT = {
    "Q4_0": (q4_0, 32, 18, [0]), "Q4_1": (q4_1, 32, 20, [0, 2]),
    "Q5_0": (q5_0, 32, 22, [0]), "Q5_1": (q5_1, 32, 24, [0, 2]),
    "Q8_0": (q8_0, 32, 34, [0]), "Q2_K": (q2_k, QK_K, 84, [80, 82]),
    "Q3_K": (q3_k, QK_K, 110, [108]), "Q4_K": (q4_k, QK_K, 144, [0, 2]),
    "Q5_K": (q5_k, QK_K, 176, [0, 2]), "Q6_K": (q6_k, QK_K, 210, [208]),
    "IQ4_NL": (iq4_nl, 32, 18, [0]), "IQ4_XS": (iq4_xs, QK_K, 136, [0]),
    "TQ1_0": (tq1_0, QK_K, 54, [52]), "TQ2_0": (tq2_0, QK_K, 66, [64]),
    "MXFP4": (mxfp4, 32, 17, []), "NVFP4": (nvfp4, 64, 36, []),
    "Q1_0": (q1_0, 128, 18, [0]), "Q2_0": (q2_0, 64, 18, [0]),
}


def random_blocks(name, count, rng):
    """Blocks of random bytes whose f16 scales are finite and ordinary, as a
    quantiser writes them (every quant bit pattern, no NaN scales)."""
    _, _, size, scale_offsets = DEQUANT[name]
    b = rng.integers(0, 256, (count, size), dtype=np.uint8)
    for off in scale_offsets:
        s = (np.abs(rng.standard_normal(count)) * 0.02 + 1e-4).astype("<f2")
        b[:, off:off + 2] = s.view(np.uint8).reshape(count, 2)
    # The scale bytes' edge cases, whatever the draw: zero, subnormal, NaN
    # (UE4M3 0x7F reads as 0), bit 7 set, the largest.
    if name == "NVFP4":
        b[0, 0:4] = [0x00, 0x7F, 0xFF, 0x01]
        b[1, 0:4] = [0x80, 0x77, 0x08, 0xFE]
    if name == "MXFP4":
        b[0:4, 0] = [0, 1, 2, 255]
    return b


def quantize_like_ggml(name, weights, rng):
    """Blocks shaped as ggml's reference quantisers write them for
    `weights` (float32, a multiple of the block): for the legacy and
    4-bit non-linear types the same rule as quantize_row_*_ref (absmax or
    min/max scale, rounded indices); for the k-quants and ternary types,
    quants drawn from the weights with realistic super-block scales."""
    fn, block, size, scale_offsets = DEQUANT[name]
    w = weights.reshape(-1, block).astype(F32)
    n = w.shape[0]
    if name in ("Q4_0", "Q8_0", "IQ4_NL"):
        amax_idx = np.argmax(np.abs(w), axis=1)
        maxv = w[np.arange(n), amax_idx]
        div = {"Q4_0": -8.0, "Q8_0": 127.0, "IQ4_NL": -127.0}[name]
        d = (maxv / F32(div)).astype("<f2")
        b = np.zeros((n, size), np.uint8)
        b[:, 0:2] = d.view(np.uint8).reshape(n, 2)
        dd = d.astype(F32)
        idd = np.where(dd != 0, F32(1) / np.where(dd != 0, dd, 1), 0).astype(F32)
        if name == "Q8_0":
            b[:, 2:] = np.clip(np.round(w * idd[:, None]), -128, 127).astype(np.int8).view(np.uint8)
        elif name == "Q4_0":
            q = np.clip(np.floor(w * idd[:, None] + F32(8.5)), 0, 15).astype(np.uint8)
            b[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
        else:
            vals = KVALUES_IQ4NL.astype(F32)
            q = np.abs(w[:, :, None] * idd[:, None, None] - vals).argmin(axis=2).astype(np.uint8)
            b[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
        return b
    if name in ("Q1_0", "Q2_0"):  # quantize_row_q1_0_ref / q2_0_ref
        b = np.zeros((n, size), np.uint8)
        if name == "Q1_0":
            d = (np.abs(w).sum(axis=1) / F32(128)).astype("<f2")
            b[:, 2:] = np.packbits(w >= 0, axis=1, bitorder="little")
        else:
            d = np.abs(w).max(axis=1).astype("<f2")
            amax = np.abs(w).max(axis=1)
            inv = np.where(amax > 0, F32(1) / np.where(amax > 0, amax, 1), 0).astype(F32)
            q = np.clip(np.round(w * inv[:, None]) + 1, 0, 3).astype(np.uint8).reshape(n, 16, 4)
            b[:, 2:] = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
        b[:, 0:2] = d.view(np.uint8).reshape(n, 2)
        return b
    b = random_blocks(name, n, rng)
    if name == "NVFP4":  # scales near amax / 6 of each sub-block, as UE4M3
        amax = np.abs(w.reshape(n, 4, 16)).max(axis=2) / 6
        exp = np.clip(np.floor(np.log2(np.maximum(amax, 1e-30))) + 7, 1, 14).astype(np.uint8)
        b[:, 0:4] = (exp << 3) | (b[:, 0:4] & 7)
    if name == "MXFP4":
        amax = np.abs(w).max(axis=1)
        e = np.clip(np.floor(np.log2(np.maximum(amax, 1e-30))) - 2 + 127, 1, 254).astype(np.uint8)
        b[:, 0] = e
    return b
