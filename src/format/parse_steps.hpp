// The steps of the safetensors header parser (header_parser.cpp), one
// job per file, each rule of docs/PARSER.md in one place:
//  - header_length.cpp: steps 1-3, the length prefix and its limits;
//  - json_values.cpp: the JSON value rules (strings, exact integers,
//    duplicate keys, nesting) for every value, read or ignored;
//  - entries.cpp: __metadata__ and the per-tensor entry rules;
//  - layout.cpp: unique names, and steps 6-7, the byte layout.
// Internal to the format layer.
#pragma once

#include <simdjson.h>

#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stfs/format/safetensors.hpp"

namespace stfs::parse {

namespace od = simdjson::ondemand;

ParseError fail(Rule r, std::string msg);
// A name fit for an error line: control bytes escaped, long names cut.
std::string printable(std::string_view s);
std::string tensor_ref(std::string_view name);
ParseError json_error(std::string detail);
ParseError json_error(simdjson::error_code e, std::string_view where);

inline bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Exact unsigned integer from a JSON number token: "0" or [1-9][0-9]*, at
// most 2^64-1. Everything the reference refuses ("-0", "4.0", "4e0", "01",
// "18446744073709551616") fails here, and nothing goes through double.
// (Inline, as check_string: both run for every integer and key of a
// header, from other steps' files.)
inline bool parse_u64_token(std::string_view tok, std::uint64_t& out) {
  while (!tok.empty() && is_json_space(tok.back())) tok.remove_suffix(1);
  if (tok.empty()) return false;
  if (tok.size() > 1 && tok[0] == '0') return false;
  std::uint64_t v = 0;
  for (char c : tok) {
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(v, std::uint64_t{10}, &v)) return false;
    if (__builtin_add_overflow(v, static_cast<std::uint64_t>(c - '0'), &v)) {
      return false;
    }
  }
  out = v;
  return true;
}
// The first duplicate of `keys` (sorted in place), if any.
std::optional<std::string> find_duplicate(std::vector<std::string>& keys);
// An unescaped string must be valid Unicode. The raw header passed the
// UTF-8 check (step 4), so only a \u escape can make it invalid: simdjson
// lets a lone low surrogate through, encoded as ED B0..BF. Every encoded
// surrogate starts with 0xED, so the full check runs only when one is there.
inline std::optional<ParseError> check_string(std::string_view s, std::string_view what) {
  if (std::memchr(s.data(), 0xED, s.size()) != nullptr &&
      !simdjson::validate_utf8(s.data(), s.size())) {
    return json_error("invalid unicode in " + std::string(what));
  }
  return std::nullopt;
}
// Consumes and validates any JSON value at nesting `depth` (the value's
// own level if it is a container).
std::optional<ParseError> consume_any(od::value v, int depth);

// Where a tensor's name and shape sit in the Header's storage; the views
// are set once the storage has stopped growing (set_views).
struct Slot {
  std::size_t name_off, name_len, shape_off, rank;
};
// __metadata__: an object of strings, or null.
std::optional<ParseError> parse_metadata(od::value v, Header& h);
// One tensor entry: dtype, shape, data_offsets, and unknown fields.
std::optional<ParseError> parse_entry(std::string_view name, od::value v, Header& h,
                                      std::vector<Slot>& slots);
void set_views(Header& h, const std::vector<Slot>& slots);

// Unique names, then steps 6-7 over the tensors of `h`.
std::optional<ParseError> check_layout(const Header& h, std::uint64_t file_size);

}  // namespace stfs::parse
