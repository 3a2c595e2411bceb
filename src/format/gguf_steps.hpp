// The steps of the GGUF reader (gguf_parser.cpp), one job per file, each
// rule of docs/GGUF.md in one place:
//  - gguf_cursor.cpp: bounded little-endian reads, strings and their UTF-8;
//  - gguf_values.cpp: key/value pairs, every value type, to JSON;
//  - gguf_tensors.cpp: one tensor info (name, shape, type), then the data
//    section's layout;
//  - gguf_types.cpp: ggml's type table.
// Internal to the format layer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "stfs/format/gguf.hpp"

namespace stfs::gguf {

// Reads the bytes before the data section, never past them or the file:
// every count is checked against the bytes that remain before anything is
// reserved for it. A read past `bytes` but inside the file stops with
// `more` set, so the caller can read further and start again.
class Cursor {
 public:
  Cursor(std::string_view bytes, std::uint64_t file_size, const Limits& limits)
      : bytes_(bytes), file_size_(file_size), limits_(limits) {}

  std::uint64_t pos() const { return pos_; }
  // Bytes of the file after pos().
  std::uint64_t left() const { return file_size_ - pos_; }
  bool failed() const { return error_.has_value(); }
  const std::optional<ParseError>& error() const { return error_; }
  std::uint64_t more() const { return more_; }

  // Makes `n` bytes at pos() readable, or fails naming `what`.
  bool need(std::uint64_t n, std::string_view what);
  // Takes `n` bytes (after need()).
  const unsigned char* take(std::uint64_t n);

  bool u8(std::uint8_t& v, std::string_view what);
  bool u32(std::uint32_t& v, std::string_view what);
  bool u64(std::uint64_t& v, std::string_view what);
  bool i64(std::int64_t& v, std::string_view what);
  // A u64 length and that many bytes, valid UTF-8 (`what` names it).
  bool string(std::string_view& s, std::string_view what);

  // Records the first failure; returns false.
  bool fail(Rule r, std::string message);

 private:
  std::string_view bytes_;
  std::uint64_t file_size_;
  const Limits& limits_;
  std::uint64_t pos_ = 0;
  std::uint64_t more_ = 0;
  std::optional<ParseError> error_;
};

// Reads `count` key/value pairs into `json` as one object in file order.
// `alignment` gets general.alignment (checked), or the default.
bool read_metadata(Cursor& c, std::uint64_t count, std::string& json,
                   std::uint64_t& alignment);

// One tensor info as stored: its name, ne[] (innermost first) and type.
struct RawTensor {
  std::string_view name;
  std::uint32_t n_dims = 0;
  std::uint64_t ne[4] = {1, 1, 1, 1};
  std::uint32_t type = 0;
  std::uint64_t offset = 0;  // relative to the data section
  std::uint64_t bytes = 0;   // from the shape and the type's blocks
};

bool read_tensor_info(Cursor& c, std::unordered_set<std::string_view>& names, RawTensor& t);

// The data section's layout: each offset the padded end of the tensor
// before, every tensor inside the file.
bool check_data_layout(Cursor& c, const std::vector<RawTensor>& tensors,
                       std::uint64_t data_start, std::uint64_t alignment,
                       std::uint64_t file_size);

}  // namespace stfs::gguf
