// The safetensors header parser: bytes in, a validated Header out, or an
// error naming the rule broken.
//
// It applies the reference crate's rules in the reference's order
// (SAFETENSORS.md §4, steps 1-7) and adds the careful-consumer rules of §7:
// duplicate keys are rejected everywhere (compared after unescaping), dtype
// must be a JSON string, nesting is bounded, every integer is parsed exactly
// from its digits (never through double) with checked 64-bit arithmetic, and
// nothing is allocated from a size the header claims.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stfs/format/dtype.hpp"
#include "stfs/base/result.hpp"

namespace stfs {

// The rule a file broke. Values 1-7 are the reference's steps; the rest
// are the stricter checks of SAFETENSORS.md §7 and stfs's own limits.
enum class Rule : std::uint8_t {
  kHeaderTooSmall = 1,        // step 1: file shorter than 8 bytes
  kHeaderTooLarge,            // step 2: N > 100,000,000 (or the configured cap)
  kInvalidHeaderLength,       // step 3: 8 + N past the end of the file
  kInvalidUtf8,               // step 4
  kInvalidJson,               // step 5: syntax, types, fields, depth, duplicates
  kInvalidOffset,             // step 6a: hole, overlap or end < begin
  kValidationOverflow,        // step 6b/6c: shape product or bit count overflows
  kMisalignedSlice,           // step 6d: bits not a multiple of 8
  kTensorInvalidInfo,         // step 6e: byte length does not match shape
  kMetadataIncompleteBuffer,  // step 7: data does not end exactly at EOF
  kTooManyTensors,            // stfs limit (-o max_tensors=)
  // GGUF (docs/GGUF.md): one rule per check, named as gguf.cpp would say it.
  kGgufVersion,      // not version 2 or 3 (1, 0, big-endian, newer)
  kGgufTruncated,    // a count, string or array runs past the end of the file
  kGgufUtf8,         // a key, string value or tensor name is not valid UTF-8
  kGgufKey,          // an empty or duplicate key
  kGgufValueType,    // an unknown value type, or a bool that is not 0 or 1
  kGgufNesting,      // arrays nested deeper than kGgufMaxDepth
  kGgufAlignment,    // general.alignment not a u32 power of two
  kGgufTensorName,   // a duplicate tensor name
  kGgufShape,        // more than 4 dimensions, one negative, or an overflowing product
  kGgufType,         // an unknown or removed ggml type
  kGgufBlockSize,    // the first dimension not a multiple of the type's block
  kGgufOffset,       // an offset that is not the padded end of the tensor before
  kGgufOutOfBounds,  // the data section or a tensor's bytes past the end of the file
};

// Stable short name of a rule ("InvalidOffset"), as the reference spells it.
std::string_view rule_name(Rule r);

struct ParseError {
  Rule rule;
  std::string message;  // starts with the reference's Display text
};

// The container a Header was read from.
enum class Format : std::uint8_t { kSafetensors, kGguf };

// Not a GGUF tensor (TensorInfo::ggml_type).
inline constexpr std::uint16_t kNoGgmlType = 0xffff;

// One tensor entry. The views point into the owning Header's storage.
struct TensorInfo {
  std::string_view name;  // exact, unescaped
  // safetensors: the dtype. GGUF: the element type when the ggml type has
  // one (F32, F16, BF16, F64, I8-I64), else kU8 over raw blocks
  // (has_elements() is false then).
  Dtype dtype = Dtype::kU8;
  std::uint16_t ggml_type = kNoGgmlType;  // GGUF: the ggml type id
  std::span<const std::uint64_t> shape;
  std::uint64_t begin = 0;  // relative to the start of the byte buffer
  std::uint64_t end = 0;

  std::uint64_t size() const { return end - begin; }
};

// The type as users see it: "BF16", or a ggml type's name ("Q4_K").
std::string_view type_name(const TensorInfo& t);
// Whether the bytes are elements of `dtype` (so the npy and f32 views may
// show them), rather than a quantised type's blocks.
bool has_elements(const TensorInfo& t);

// A validated header. Move-only: names and shapes live in two pooled
// buffers (two allocations in all instead of two per tensor), and moving a
// vector keeps its buffer, so the views stay valid.
struct Header {
  Header() = default;
  Header(Header&&) = default;
  Header& operator=(Header&&) = default;
  Header(const Header&) = delete;
  Header& operator=(const Header&) = delete;

  Format format = Format::kSafetensors;
  std::uint64_t header_len = 0;  // N (GGUF: the bytes before the data section)
  std::uint64_t file_size = 0;   // == data_start() + data length (GGUF: at least)
  // In header order; names are unique.
  std::vector<TensorInfo> tensors;
  // __metadata__ as parsed, sorted by key; has_metadata is false when the key
  // is absent or null.
  bool has_metadata = false;
  std::vector<std::pair<std::string, std::string>> metadata;

  std::uint64_t data_start() const {
    return format == Format::kGguf ? header_len : 8 + header_len;
  }

  // GGUF only: the version, the alignment of the data section, and every
  // key/value pair as one JSON object in file order (__metadata__.json).
  std::uint32_t gguf_version = 0;
  std::uint64_t gguf_alignment = 0;
  std::string gguf_metadata;

  // Backing store for TensorInfo::name and ::shape.
  std::vector<char> name_storage;
  std::vector<std::uint64_t> shape_storage;
};

struct Limits {
  // The reference's cap on N, inclusive.
  std::uint64_t max_header = 100'000'000;
  // 0 means no cap beyond what the header size allows.
  std::uint64_t max_tensors = 0;
};

// JSON nesting allowed: serde_json's default recursion limit of 128 counts
// the top-level object as one level and rejects the 128th.
inline constexpr int kMaxDepth = 127;

// Steps 1-3: the header length N from the first bytes of the file.
// `prefix` holds the first min(8, file_size) bytes.
Result<std::uint64_t, ParseError> parse_header_length(std::string_view prefix,
                                                      std::uint64_t file_size,
                                                      const Limits& limits = {});

// Steps 4-7 on the N header bytes, for a file of `file_size` bytes.
Result<Header, ParseError> parse_header_json(std::string_view json, std::uint64_t file_size,
                                             const Limits& limits = {});

// Readable bytes the JSON parser needs past the end of the header text.
inline constexpr std::size_t kJsonPadding = 64;

// As parse_header_json, without a copy: `json` must be followed by at least
// kJsonPadding readable bytes (their values do not matter).
Result<Header, ParseError> parse_header_json_padded(std::string_view json, std::uint64_t file_size,
                                                    const Limits& limits = {});

// A reusable parser: keeps the JSON parser's buffers between headers, which
// saves their allocation and page faults when many files are read (model
// folders). One per thread.
class HeaderParser {
 public:
  HeaderParser();
  ~HeaderParser();
  HeaderParser(HeaderParser&&) noexcept;
  HeaderParser& operator=(HeaderParser&&) noexcept;

  // As parse_header_json_padded.
  Result<Header, ParseError> parse_padded(std::string_view json, std::uint64_t file_size,
                                          const Limits& limits = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Steps 1-7. `file_start` holds at least the first min(file_size, 8 + N)
// bytes of the file (the whole file is fine); `file_size` is the real size.
Result<Header, ParseError> parse_header(std::string_view file_start, std::uint64_t file_size,
                                        const Limits& limits = {});

// Types present (type_name), sorted by spelling and joined by ',' ("BF16,F32").
std::string dtype_summary(const Header& h);

}  // namespace stfs
