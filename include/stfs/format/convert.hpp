// Element conversions for the float32 view (-o f32): BF16, F16 and the
// 8-bit float formats to little-endian IEEE float32, exactly (every value
// of these formats is a float32 value; NaN stays NaN, infinities stay), and
// F64 rounded to nearest, ties to even (past float32's range: +-inf). F32
// tensors are in the view too, served as they are (no conversion).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "stfs/format/dtype.hpp"
#include "stfs/format/safetensors.hpp"

namespace stfs {

// The reserved directory of the view.
inline constexpr std::string_view kF32Dir = "__f32__";

// True for the dtypes the f32 view converts (F32 is served as it is).
bool f32_convertible(Dtype d);

// How a tensor's bytes become the f32 view's: `block` values from each
// `block_bytes` bytes (1 and the element's size for a plain dtype; 32 and
// 34 for GGUF's Q8_0, 32 and 18 for Q4_0).
struct F32Decoder {
  std::uint32_t block = 1;
  std::uint32_t block_bytes = 0;
  Dtype dtype = Dtype::kF32;          // a plain dtype
  std::uint16_t ggml_type = kNoGgmlType;  // else a GGUF block type
};

// The decoder for tensor `t`, if the view converts it: F16, BF16, F64 and
// the 8-bit floats, and GGUF's Q8_0 and Q4_0 blocks (dequantised as ggml
// does). nullopt for F32 (served as it is) and everything else.
std::optional<F32Decoder> f32_decoder(const TensorInfo& t);

// Decodes `blocks` whole blocks at `in` into `blocks * dec.block` floats.
void decode_f32(const F32Decoder& dec, const std::uint8_t* in, std::size_t blocks, float* out);

// Converts `n` elements of `d` starting at `in` to float32 at `out`.
void to_f32(Dtype d, const std::uint8_t* in, std::size_t n, float* out);

// One element, for tests and tables.
float f16_to_f32(std::uint16_t h);
float bf16_to_f32(std::uint16_t b);
float f8_to_f32(Dtype d, std::uint8_t v);
float f64_to_f32(std::uint64_t bits);

}  // namespace stfs
