// ggml's quantised block types as float32, bit for bit what ggml's
// reference dequantiser (`dequantize_row_*` in ggml-quants.c) gives: the
// same integer steps, the same float operations in the same order, one
// rounding each (this file is compiled without contraction into FMA).
// For the f32 view (convert.hpp) of GGUF tensors.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stfs {

// Whether `ggml_type` (a GGUF type id) has a dequantiser here: Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 and MXFP4.
bool ggml_dequantizes(std::uint32_t ggml_type);

// Decodes `blocks` whole blocks of `ggml_type` at `in` (ggml_type()'s
// block bytes each) into `blocks * block` floats at `out`.
void dequantize_ggml(std::uint32_t ggml_type, const std::uint8_t* in, std::size_t blocks,
                     float* out);

}  // namespace stfs
