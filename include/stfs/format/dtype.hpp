// The 22 safetensors element types and their sizes in bits.
//
// The list is the reference crate's (SAFETENSORS.md §3); sizes are in bits
// because F6 and F4 pack across the whole tensor, not per element.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace stfs {

enum class Dtype : std::uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kF8E8M0,
  kF8E4M3Fnuz,
  kF8E5M2Fnuz,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kI64,
  kU64,
  kF64,
  kC64,
  kF6E2M3,
  kF6E3M2,
  kF4,
};

inline constexpr int kDtypeCount = 22;

// The exact, case-sensitive spelling used in headers ("BF16").
std::string_view dtype_name(Dtype d);

// Element size in bits: 4, 6, 8, 16, 32 or 64.
unsigned dtype_bits(Dtype d);

// Parses an exact spelling; nullopt for anything else ("bf16", "F8_E4M3FN").
std::optional<Dtype> parse_dtype(std::string_view s);

}  // namespace stfs
