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

// Exact unsigned integer from a JSON number token (never through double).
bool parse_u64_token(std::string_view tok, std::uint64_t& out);
// The first duplicate of `keys` (sorted in place), if any.
std::optional<std::string> find_duplicate(std::vector<std::string>& keys);
// An unescaped string must be valid Unicode.
std::optional<ParseError> check_string(std::string_view s, std::string_view what);
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
