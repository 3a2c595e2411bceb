// Re-serialises a parsed header as the JSON files of a mount
// (SAFETENSORS.md §7.11): never the raw header bytes, which may carry
// padding or escapes.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "stfs/format/safetensors.hpp"

namespace stfs {

// Appends `s` as a JSON string literal. Control bytes become \uXXXX (or
// \n, \t...); everything else, UTF-8 included, stays as it is.
void append_json_string(std::string& out, std::string_view s);

// `[a,b,c]` with exact 64-bit integers.
std::string json_uint_array(std::span<const std::uint64_t> v);

// A string-to-string object, in the order given: {"k":"v",...}.
void append_string_map(std::string& out,
                       std::span<const std::pair<std::string, std::string>> kv);

// One tensor entry, `"name":{"dtype":..,"shape":[..],"data_offsets":[begin,end]}`.
void append_tensor_entry(std::string& out, const TensorInfo& t, std::uint64_t begin,
                         std::uint64_t end);

// __header__.json: every tensor in header order with dtype, shape and
// data_offsets, "__metadata__" first when present; newline at the end.
std::string header_json(const Header& h);

// __metadata__.json: the metadata object ({} when absent or null), keys
// sorted; newline at the end.
std::string metadata_json(const Header& h);

}  // namespace stfs
