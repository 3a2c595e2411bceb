#include "stfs/format/convert.hpp"

#include "stfs/format/dequant.hpp"
#include "stfs/format/gguf.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace stfs {
namespace {

float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// A small float with `exp_bits` exponent bits, `man_bits` mantissa bits and
// the given bias, with subnormals; `ieee_special` says whether the all-ones
// exponent means inf/NaN (E5M2) or is an ordinary binade (E4M3FN, the FNUZ
// formats, which handle NaN themselves).
float small_float(std::uint32_t v, int exp_bits, int man_bits, int bias, bool ieee_special) {
  const std::uint32_t sign = (v >> (exp_bits + man_bits)) & 1;
  const std::uint32_t exp = (v >> man_bits) & ((1u << exp_bits) - 1);
  const std::uint32_t man = v & ((1u << man_bits) - 1);
  float mag;
  if (ieee_special && exp == (1u << exp_bits) - 1) {
    mag = man ? kNaN : std::numeric_limits<float>::infinity();
  } else if (exp == 0) {
    mag = std::ldexp(static_cast<float>(man), 1 - bias - man_bits);
  } else {
    mag = std::ldexp(static_cast<float>(man | (1u << man_bits)),
                     static_cast<int>(exp) - bias - man_bits);
  }
  return sign ? -mag : mag;
}

}  // namespace

bool f32_convertible(Dtype d) {
  switch (d) {
    case Dtype::kBF16:
    case Dtype::kF16:
    case Dtype::kF8E5M2:
    case Dtype::kF8E4M3:
    case Dtype::kF8E8M0:
    case Dtype::kF8E4M3Fnuz:
    case Dtype::kF8E5M2Fnuz:
    case Dtype::kF64: return true;
    default: return false;
  }
}

float bf16_to_f32(std::uint16_t b) { return from_bits(static_cast<std::uint32_t>(b) << 16); }

float f16_to_f32(std::uint16_t h) { return small_float(h, 5, 10, 15, true); }

float f8_to_f32(Dtype d, std::uint8_t v) {
  switch (d) {
    case Dtype::kF8E5M2: return small_float(v, 5, 2, 15, true);
    case Dtype::kF8E4M3:
      // e4m3fn: no infinities; S.1111.111 is NaN.
      if ((v & 0x7f) == 0x7f) return kNaN;
      return small_float(v, 4, 3, 7, false);
    case Dtype::kF8E4M3Fnuz:
      // FNUZ: bias 8, one NaN (0x80, the would-be negative zero), no inf.
      if (v == 0x80) return kNaN;
      return small_float(v, 4, 3, 8, false);
    case Dtype::kF8E5M2Fnuz:
      if (v == 0x80) return kNaN;
      return small_float(v, 5, 2, 16, false);
    case Dtype::kF8E8M0:
      // A power of two, 2^(v-127); 0xff is NaN.
      if (v == 0xff) return kNaN;
      return std::ldexp(1.0f, static_cast<int>(v) - 127);
    default: return kNaN;
  }
}

float f64_to_f32(std::uint64_t bits) {
  double v;
  std::memcpy(&v, &bits, sizeof v);
  // The conversion rounds to nearest, ties to even (the default rounding
  // mode, which the daemon never changes); too large gives +-inf, NaN
  // stays NaN (quiet, payload cut to 22 bits), +-0 and infinities stay.
  return static_cast<float>(v);
}

std::optional<F32Decoder> f32_decoder(const TensorInfo& t) {
  if (t.ggml_type != kNoGgmlType && ggml_dequantizes(t.ggml_type)) {
    const GgmlType* g = ggml_type(t.ggml_type);
    if (!g) return std::nullopt;
    return F32Decoder{g->block, g->type_size, Dtype::kU8, static_cast<std::uint16_t>(t.ggml_type)};
  }
  if (!has_elements(t) || !f32_convertible(t.dtype)) return std::nullopt;
  return F32Decoder{1, dtype_bits(t.dtype) / 8, t.dtype};
}

void decode_f32(const F32Decoder& dec, const std::uint8_t* in, std::size_t blocks, float* out) {
  if (dec.ggml_type != kNoGgmlType) return dequantize_ggml(dec.ggml_type, in, blocks, out);
  to_f32(dec.dtype, in, blocks, out);
}

void to_f32(Dtype d, const std::uint8_t* in, std::size_t n, float* out) {
  switch (d) {
    case Dtype::kF64:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t bits = 0;
        for (int b = 7; b >= 0; --b) bits = bits << 8 | in[8 * i + static_cast<std::size_t>(b)];
        out[i] = f64_to_f32(bits);
      }
      return;
    case Dtype::kBF16:
    case Dtype::kF16:
      for (std::size_t i = 0; i < n; ++i) {
        auto v = static_cast<std::uint16_t>(in[2 * i] | (in[2 * i + 1] << 8));
        out[i] = d == Dtype::kBF16 ? bf16_to_f32(v) : f16_to_f32(v);
      }
      return;
    default: {
      // One table per call: 256 entries cost less than converting twice.
      float table[256];
      for (int v = 0; v < 256; ++v) table[v] = f8_to_f32(d, static_cast<std::uint8_t>(v));
      for (std::size_t i = 0; i < n; ++i) out[i] = table[in[i]];
    }
  }
}

}  // namespace stfs
