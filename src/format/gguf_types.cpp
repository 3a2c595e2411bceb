// ggml's tensor types as GGUF files carry them: ids, names and block
// layouts from ggml's own C definitions (the block structs of
// ggml-common.h, through ggml.c's type traits): what llama.cpp computes
// when it loads. gguf-py's GGML_QUANT_SIZES differs for Q8_1 (40 bytes,
// an older layout; ggml's block_q8_1 is two halves and 32 quants: 36).
// Ids 4, 5, 31-33 and 36-38 were removed from ggml and are refused.
#include <array>

#include "gguf_steps.hpp"

namespace stfs {
namespace {

constexpr std::uint32_t kQK = 256;  // QK_K: the k-quants' super-block

constexpr std::array<GgmlType, kGgmlTypeCount> kTypes = {{
    {"F32", 1, 4, Dtype::kF32},
    {"F16", 1, 2, Dtype::kF16},
    {"Q4_0", 32, 2 + 16, std::nullopt},
    {"Q4_1", 32, 2 + 2 + 16, std::nullopt},
    {},  // 4: Q4_2, removed
    {},  // 5: Q4_3, removed
    {"Q5_0", 32, 2 + 4 + 16, std::nullopt},
    {"Q5_1", 32, 2 + 2 + 4 + 16, std::nullopt},
    {"Q8_0", 32, 2 + 32, std::nullopt},
    {"Q8_1", 32, 2 + 2 + 32, std::nullopt},
    {"Q2_K", kQK, 2 + 2 + kQK / 16 + kQK / 4, std::nullopt},
    {"Q3_K", kQK, 2 + kQK / 4 + kQK / 8 + 12, std::nullopt},
    {"Q4_K", kQK, 2 + 2 + kQK / 2 + 12, std::nullopt},
    {"Q5_K", kQK, 2 + 2 + kQK / 2 + kQK / 8 + 12, std::nullopt},
    {"Q6_K", kQK, 2 + kQK / 2 + kQK / 4 + kQK / 16, std::nullopt},
    {"Q8_K", kQK, 4 + kQK + kQK / 8, std::nullopt},
    {"IQ2_XXS", kQK, 2 + kQK / 4, std::nullopt},
    {"IQ2_XS", kQK, 2 + kQK / 4 + kQK / 32, std::nullopt},
    {"IQ3_XXS", kQK, 2 + kQK / 4 + kQK / 8, std::nullopt},
    {"IQ1_S", kQK, 2 + kQK / 8 + kQK / 16, std::nullopt},
    {"IQ4_NL", 32, 2 + 16, std::nullopt},
    {"IQ3_S", kQK, 2 + kQK / 4 + kQK / 8 + kQK / 32 + 4, std::nullopt},
    {"IQ2_S", kQK, 2 + kQK / 4 + kQK / 16, std::nullopt},
    {"IQ4_XS", kQK, 2 + 2 + kQK / 2 + kQK / 64, std::nullopt},
    {"I8", 1, 1, Dtype::kI8},
    {"I16", 1, 2, Dtype::kI16},
    {"I32", 1, 4, Dtype::kI32},
    {"I64", 1, 8, Dtype::kI64},
    {"F64", 1, 8, Dtype::kF64},
    {"IQ1_M", kQK, kQK / 8 + kQK / 16 + kQK / 32, std::nullopt},
    {"BF16", 1, 2, Dtype::kBF16},
    {},  // 31: Q4_0_4_4, removed (runtime repacking)
    {},  // 32: Q4_0_4_8, removed
    {},  // 33: Q4_0_8_8, removed
    {"TQ1_0", kQK, 2 + 4 * 13, std::nullopt},
    {"TQ2_0", kQK, 2 + 64, std::nullopt},
    {},  // 36: IQ4_NL_4_4, removed
    {},  // 37: IQ4_NL_4_8, removed
    {},  // 38: IQ4_NL_8_8, removed
    {"MXFP4", 32, 1 + 16, std::nullopt},
    {"NVFP4", 64, 4 + 32, std::nullopt},
    {"Q1_0", 128, 2 + 16, std::nullopt},
    {"Q2_0", 64, 2 + 16, std::nullopt},
}};

}  // namespace

const GgmlType* ggml_type(std::uint32_t id) {
  if (id >= kTypes.size() || kTypes[id].block == 0) return nullptr;
  return &kTypes[id];
}

std::string_view type_name(const TensorInfo& t) {
  if (t.ggml_type == kNoGgmlType) return dtype_name(t.dtype);
  const GgmlType* g = ggml_type(t.ggml_type);
  return g ? g->name : "?";
}

bool has_elements(const TensorInfo& t) {
  if (t.ggml_type == kNoGgmlType) return true;
  const GgmlType* g = ggml_type(t.ggml_type);
  return g && g->dtype.has_value();
}

}  // namespace stfs
