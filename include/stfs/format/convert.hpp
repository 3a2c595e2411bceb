// Element conversions for the float32 view (-o f32): BF16, F16 and the
// 8-bit float formats to little-endian IEEE float32, exactly (every value
// of these formats is a float32 value; NaN stays NaN, infinities stay), and
// F64 rounded to nearest, ties to even (past float32's range: +-inf). F32
// tensors are in the view too, served as they are (no conversion).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "stfs/format/dtype.hpp"

namespace stfs {

// The reserved directory of the view.
inline constexpr std::string_view kF32Dir = "__f32__";

// True for the dtypes the f32 view converts (F32 is served as it is).
bool f32_convertible(Dtype d);

// Converts `n` elements of `d` starting at `in` to float32 at `out`.
void to_f32(Dtype d, const std::uint8_t* in, std::size_t n, float* out);

// One element, for tests and tables.
float f16_to_f32(std::uint16_t h);
float bf16_to_f32(std::uint16_t b);
float f8_to_f32(Dtype d, std::uint8_t v);
float f64_to_f32(std::uint64_t bits);

}  // namespace stfs
