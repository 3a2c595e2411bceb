// The dequantisers of ggml's block types (dequant.hpp). Each follows ggml's
// reference `dequantize_row_*` step for step; block layouts are ggml's
// structs (ggml-common.h), little-endian, f16 scales converted exactly.
#include "stfs/format/dequant.hpp"

#include <cmath>
#include <cstring>

#include "stfs/format/convert.hpp"

namespace stfs {
namespace {

enum : std::uint32_t {
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kNVFP4 = 40,
  kQ1_0 = 41,
  kQ2_0 = 42,
};

constexpr int kQK = 256;  // QK_K

// ggml's kvalues_iq4nl and kvalues_mxfp4 (e2m1 values, doubled).
constexpr std::int8_t kIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};
constexpr std::int8_t kMxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

float f16(const std::uint8_t* p) {
  return f16_to_f32(static_cast<std::uint16_t>(p[0] | p[1] << 8));
}

void q4_0(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  const std::uint8_t* qs = x + 2;
  for (int j = 0; j < 16; ++j) {
    const int x0 = (qs[j] & 0x0F) - 8;
    const int x1 = (qs[j] >> 4) - 8;
    y[j] = static_cast<float>(x0) * d;
    y[j + 16] = static_cast<float>(x1) * d;
  }
}

void q4_1(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  const float m = f16(x + 2);
  const std::uint8_t* qs = x + 4;
  for (int j = 0; j < 16; ++j) {
    const int x0 = qs[j] & 0x0F;
    const int x1 = qs[j] >> 4;
    y[j] = static_cast<float>(x0) * d + m;
    y[j + 16] = static_cast<float>(x1) * d + m;
  }
}

std::uint32_t le32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void q5_0(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  const std::uint32_t qh = le32(x + 2);
  const std::uint8_t* qs = x + 6;
  for (int j = 0; j < 16; ++j) {
    const std::uint8_t xh0 = static_cast<std::uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
    const std::uint8_t xh1 = static_cast<std::uint8_t>((qh >> (j + 12)) & 0x10);
    const int x0 = ((qs[j] & 0x0F) | xh0) - 16;
    const int x1 = ((qs[j] >> 4) | xh1) - 16;
    y[j] = static_cast<float>(x0) * d;
    y[j + 16] = static_cast<float>(x1) * d;
  }
}

void q5_1(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  const float m = f16(x + 2);
  const std::uint32_t qh = le32(x + 4);
  const std::uint8_t* qs = x + 8;
  for (int j = 0; j < 16; ++j) {
    const std::uint8_t xh0 = static_cast<std::uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
    const std::uint8_t xh1 = static_cast<std::uint8_t>((qh >> (j + 12)) & 0x10);
    const int x0 = (qs[j] & 0x0F) | xh0;
    const int x1 = (qs[j] >> 4) | xh1;
    y[j] = static_cast<float>(x0) * d + m;
    y[j + 16] = static_cast<float>(x1) * d + m;
  }
}

void q8_0(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(x[2 + j])) * d;
}

// block_q2_K: scales[16], qs[64], d, dmin.
void q2_k(const std::uint8_t* x, float* y) {
  const std::uint8_t* scales = x;
  const std::uint8_t* q = x + 16;
  const float d = f16(x + 80);
  const float min = f16(x + 82);
  int is = 0;
  for (int n = 0; n < kQK; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      std::uint8_t sc = scales[is++];
      float dl = d * static_cast<float>(sc & 0xF);
      float ml = min * static_cast<float>(sc >> 4);
      for (int l = 0; l < 16; ++l) {
        *y++ = dl * static_cast<float>(static_cast<std::int8_t>((q[l] >> shift) & 3)) - ml;
      }
      sc = scales[is++];
      dl = d * static_cast<float>(sc & 0xF);
      ml = min * static_cast<float>(sc >> 4);
      for (int l = 0; l < 16; ++l) {
        *y++ = dl * static_cast<float>(static_cast<std::int8_t>((q[l + 16] >> shift) & 3)) - ml;
      }
      shift += 2;
    }
    q += 32;
  }
}

// block_q3_K: hmask[32], qs[64], scales[12] (6-bit, packed), d.
void q3_k(const std::uint8_t* x, float* y) {
  constexpr std::uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
  const std::uint8_t* hm = x;
  const std::uint8_t* q = x + 32;
  const float d_all = f16(x + 108);
  std::uint32_t aux[4];
  std::memcpy(aux, x + 96, 12);
  const std::uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  std::int8_t scales[16];
  std::memcpy(scales, aux, 16);
  int is = 0;
  std::uint8_t m = 1;
  for (int n = 0; n < kQK; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      float dl = d_all * static_cast<float>(scales[is++] - 32);
      for (int l = 0; l < 16; ++l) {
        const int v = static_cast<std::int8_t>((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
        *y++ = dl * static_cast<float>(v);
      }
      dl = d_all * static_cast<float>(scales[is++] - 32);
      for (int l = 0; l < 16; ++l) {
        const int v =
            static_cast<std::int8_t>((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4);
        *y++ = dl * static_cast<float>(v);
      }
      shift += 2;
      m = static_cast<std::uint8_t>(m << 1);
    }
    q += 32;
  }
}

// ggml's get_scale_min_k4: 8 six-bit scales and mins in 12 bytes.
void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& d, std::uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// The scales and mins of the K-quants' sub-blocks `is` and `is + 1`, each
// times the super-block's d and dmin (one rounding each, as ggml).
struct ScaleMins {
  float d1, m1, d2, m2;
};
ScaleMins scale_mins(int is, const std::uint8_t* scales, float d, float min) {
  std::uint8_t sc, m;
  ScaleMins r;
  scale_min_k4(is + 0, scales, sc, m);
  r.d1 = d * static_cast<float>(sc);
  r.m1 = min * static_cast<float>(m);
  scale_min_k4(is + 1, scales, sc, m);
  r.d2 = d * static_cast<float>(sc);
  r.m2 = min * static_cast<float>(m);
  return r;
}

// block_q4_K: d, dmin, scales[12], qs[128].
void q4_k(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  const float min = f16(x + 2);
  const std::uint8_t* scales = x + 4;
  const std::uint8_t* q = x + 16;
  int is = 0;
  for (int j = 0; j < kQK; j += 64) {
    const ScaleMins s = scale_mins(is, scales, d, min);
    for (int l = 0; l < 32; ++l) *y++ = s.d1 * static_cast<float>(q[l] & 0xF) - s.m1;
    for (int l = 0; l < 32; ++l) *y++ = s.d2 * static_cast<float>(q[l] >> 4) - s.m2;
    q += 32;
    is += 2;
  }
}

// block_q5_K: d, dmin, scales[12], qh[32], qs[128].
void q5_k(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  const float min = f16(x + 2);
  const std::uint8_t* scales = x + 4;
  const std::uint8_t* qh = x + 16;
  const std::uint8_t* ql = x + 48;
  int is = 0;
  std::uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < kQK; j += 64) {
    const ScaleMins s = scale_mins(is, scales, d, min);
    for (int l = 0; l < 32; ++l) {
      *y++ = s.d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - s.m1;
    }
    for (int l = 0; l < 32; ++l) {
      *y++ = s.d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - s.m2;
    }
    ql += 32;
    is += 2;
    u1 = static_cast<std::uint8_t>(u1 << 2);
    u2 = static_cast<std::uint8_t>(u2 << 2);
  }
}

// block_q6_K: ql[128], qh[64], scales[16] (int8), d.
void q6_k(const std::uint8_t* x, float* y) {
  const std::uint8_t* ql = x;
  const std::uint8_t* qh = x + 128;
  const auto* sc = reinterpret_cast<const std::int8_t*>(x + 192);
  const float d = f16(x + 208);
  for (int n = 0; n < kQK; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const auto q1 =
          static_cast<std::int8_t>(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
      const auto q2 =
          static_cast<std::int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      const auto q3 = static_cast<std::int8_t>(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      const auto q4 =
          static_cast<std::int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// block_iq4_nl: d, qs[16].
void iq4_nl(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  const std::uint8_t* qs = x + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kIq4nl[qs[j] & 0xf]);
    y[j + 16] = d * static_cast<float>(kIq4nl[qs[j] >> 4]);
  }
}

// block_iq4_xs: d, scales_h (u16), scales_l[4], qs[128].
void iq4_xs(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  const unsigned scales_h = static_cast<unsigned>(x[2] | x[3] << 8);
  const std::uint8_t* scales_l = x + 4;
  const std::uint8_t* qs = x + 8;
  for (int ib = 0; ib < kQK / 32; ++ib) {
    const int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((scales_h >> 2 * ib) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j + 0] = dl * static_cast<float>(kIq4nl[qs[j] & 0xf]);
      y[j + 16] = dl * static_cast<float>(kIq4nl[qs[j] >> 4]);
    }
    y += 32;
    qs += 16;
  }
}

// ggml's ternary digit: the n-th base-3 digit of a byte scaled by 256/243.
float trit(std::uint8_t byte, std::uint8_t pow3, float d) {
  const auto q = static_cast<std::uint8_t>(byte * pow3);
  const auto xi = static_cast<std::int16_t>((static_cast<std::uint16_t>(q) * 3) >> 8);
  return static_cast<float>(xi - 1) * d;
}

// block_tq1_0: qs[48], qh[4], d.
void tq1_0(const std::uint8_t* x, float* y) {
  constexpr std::uint8_t pow3[6] = {1, 3, 9, 27, 81, 243};
  const std::uint8_t* qs = x;
  const std::uint8_t* qh = x + 48;
  const float d = f16(x + 52);
  for (int j = 0; j < 32; j += 32) {
    for (int n = 0; n < 5; ++n) {
      for (int m = 0; m < 32; ++m) *y++ = trit(qs[j + m], pow3[n], d);
    }
  }
  for (int j = 32; j < 48; j += 16) {
    for (int n = 0; n < 5; ++n) {
      for (int m = 0; m < 16; ++m) *y++ = trit(qs[j + m], pow3[n], d);
    }
  }
  for (int n = 0; n < 4; ++n) {
    for (int j = 0; j < 4; ++j) *y++ = trit(qh[j], pow3[n], d);
  }
}

// block_tq2_0: qs[64], d.
void tq2_0(const std::uint8_t* x, float* y) {
  const float d = f16(x + 64);
  for (int j = 0; j < 64; j += 32) {
    for (int l = 0; l < 4; ++l) {
      for (int m = 0; m < 32; ++m) {
        const auto q = static_cast<std::int8_t>((x[j + m] >> (l * 2)) & 3);
        *y++ = static_cast<float>(q - 1) * d;
      }
    }
  }
}

// ggml's GGML_E8M0_TO_FP32_HALF: 2^(e-128), the subnormals for e < 2.
float e8m0_half(std::uint8_t e) {
  const std::uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<std::uint32_t>(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// block_mxfp4: e (E8M0), qs[16].
void mxfp4(const std::uint8_t* x, float* y) {
  const float d = e8m0_half(x[0]);
  const std::uint8_t* qs = x + 1;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(kMxfp4[qs[j] & 0x0F]) * d;
    y[j + 16] = static_cast<float>(kMxfp4[qs[j] >> 4]) * d;
  }
}

// ggml's ggml_ue4m3_to_fp32: an unsigned E4M3 scale (bias 7), halved as
// kvalues_mxfp4 is doubled; 0 and 0x7F (NaN) give 0, bit 7 is not read.
float ue4m3_half(std::uint8_t x) {
  if (x == 0 || x == 0x7F) return 0.0f;
  const int exp = (x >> 3) & 0xF;
  const int man = x & 0x7;
  const float raw = exp == 0 ? std::ldexp(static_cast<float>(man), -9)
                             : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return raw * 0.5f;
}

// block_nvfp4: d[4] (UE4M3, one a 16-value sub-block), qs[32].
void nvfp4(const std::uint8_t* x, float* y) {
  for (int s = 0; s < 4; ++s) {
    const float d = ue4m3_half(x[s]);
    const std::uint8_t* qs = x + 4 + s * 8;
    for (int j = 0; j < 8; ++j) {
      y[s * 16 + j] = static_cast<float>(kMxfp4[qs[j] & 0x0F]) * d;
      y[s * 16 + j + 8] = static_cast<float>(kMxfp4[qs[j] >> 4]) * d;
    }
  }
}

// block_q1_0: d, qs[16]: one bit a value, set for +d, clear for -d.
void q1_0(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  const float neg_d = -d;
  for (int j = 0; j < 128; ++j) y[j] = ((x[2 + j / 8] >> (j % 8)) & 1) ? d : neg_d;
}

// block_q2_0: d, qs[16]: two bits a value, codes 0..3 for -1..2 times d.
void q2_0(const std::uint8_t* x, float* y) {
  const float d = f16(x);
  for (int j = 0; j < 64; ++j) {
    const int q = (x[2 + j / 4] >> ((j % 4) * 2)) & 0x03;
    y[j] = static_cast<float>(q - 1) * d;
  }
}

struct Kind {
  std::uint32_t id;
  int values;  // per block
  int bytes;
  void (*decode)(const std::uint8_t*, float*);
};

constexpr Kind kKinds[] = {
    {kQ4_0, 32, 18, q4_0},    {kQ4_1, 32, 20, q4_1},     {kQ5_0, 32, 22, q5_0},
    {kQ5_1, 32, 24, q5_1},    {kQ8_0, 32, 34, q8_0},     {kQ2_K, kQK, 84, q2_k},
    {kQ3_K, kQK, 110, q3_k},  {kQ4_K, kQK, 144, q4_k},   {kQ5_K, kQK, 176, q5_k},
    {kQ6_K, kQK, 210, q6_k},  {kIQ4_NL, 32, 18, iq4_nl}, {kIQ4_XS, kQK, 136, iq4_xs},
    {kTQ1_0, kQK, 54, tq1_0}, {kTQ2_0, kQK, 66, tq2_0},  {kMXFP4, 32, 17, mxfp4},
    {kNVFP4, 64, 36, nvfp4},  {kQ1_0, 128, 18, q1_0},    {kQ2_0, 64, 18, q2_0},
};

const Kind* kind(std::uint32_t id) {
  for (const Kind& k : kKinds) {
    if (k.id == id) return &k;
  }
  return nullptr;
}

}  // namespace

bool ggml_dequantizes(std::uint32_t ggml_type) { return kind(ggml_type) != nullptr; }

void dequantize_ggml(std::uint32_t ggml_type, const std::uint8_t* in, std::size_t blocks,
                     float* out) {
  const Kind* k = kind(ggml_type);
  if (!k) return;
  for (std::size_t b = 0; b < blocks; ++b, in += k->bytes, out += k->values) k->decode(in, out);
}

}  // namespace stfs
