// The GGUF reader (docs/GGUF.md): llama.cpp's format, versions 2 and 3,
// read as strictly as the safetensors header. Bytes in, a validated Header
// out (format kGguf), or an error naming the rule broken.
//
// The rules are llama.cpp's gguf.cpp (gguf_init_from_file_impl) and ggml's
// type traits, plus the stricter ones GGUF.md lists: strings must be UTF-8,
// bools 0 or 1, nesting bounded, every tensor inside the file. Nothing is
// allocated from a count before the bytes it claims are known to exist.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "stfs/base/result.hpp"
#include "stfs/format/dtype.hpp"
#include "stfs/format/safetensors.hpp"

namespace stfs {

// A ggml tensor type: its name as gguf-py spells it, and its block layout
// (`block` elements stored in `type_size` bytes).
struct GgmlType {
  std::string_view name;  // "Q4_K"; empty for ids that were removed
  std::uint32_t block = 0;
  std::uint32_t type_size = 0;
  // The element type for the types numpy or float32 can hold.
  std::optional<Dtype> dtype;
};

// The type with id `id`, or nullptr for an unknown or removed id.
const GgmlType* ggml_type(std::uint32_t id);
// One past the highest id the table knows.
inline constexpr std::uint32_t kGgmlTypeCount = 43;

inline constexpr std::uint32_t kGgufDefaultAlignment = 32;
// Arrays of arrays deeper than this are refused (llama.cpp refuses any).
inline constexpr int kGgufMaxDepth = 32;

// Whether a file's first bytes are GGUF's magic.
inline bool is_gguf(std::string_view prefix) { return prefix.substr(0, 4) == "GGUF"; }

// Reads the GGUF file whose first bytes are `bytes`, `file_size` bytes in
// all. The reader needs every byte before the data section; when `bytes`
// stops short of that, the result is an error and `*more` (if given) is
// set to the number of bytes it needs at least: read that many and call
// again. Limits: max_header caps the bytes before the data section,
// max_tensors the tensor count.
Result<Header, ParseError> parse_gguf(std::string_view bytes, std::uint64_t file_size,
                                      const Limits& limits = {},
                                      std::uint64_t* more = nullptr);

}  // namespace stfs
