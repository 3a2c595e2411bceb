// Tensor names to file names (DESIGN.md §3).
//
// Tensor names are arbitrary UTF-8: "", ".", "..", "a/b", NUL, 4,000 bytes.
// The mapping is injective and decodable:
//   1. percent-encode (%XX, upper-case hex) '%', '/', bytes < 0x20 and 0x7F;
//   2. "" -> "%", "." -> "%2E", ".." -> "%2E%2E";
//   3. a result equal to a reserved name gets its first byte encoded
//      ("__header__.json" -> "%5F_header__.json");
//   4. a result over 255 bytes keeps its longest prefix of at most 200 bytes
//      that cuts neither a %XX nor a UTF-8 sequence, then "%~", then the
//      16 lower-case hex digits of the FNV-1a 64-bit hash of the original.
// Steps 1-3 are injective, and their results never contain "%~", so only
// two step-4 names can collide; map_names() reports that.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stfs/base/result.hpp"

namespace stfs {

inline constexpr std::size_t kNameMax = 255;
inline constexpr std::size_t kHashedPrefixMax = 200;

// The names every directory of a model reserves for itself.
inline constexpr std::string_view kHeaderFile = "__header__.json";
inline constexpr std::string_view kMetadataFile = "__metadata__.json";

std::uint64_t fnv1a64(std::string_view bytes);

// Steps 1-4 for one name; `reserved` lists the names to avoid (step 3).
std::string encode_name(std::string_view name, const std::vector<std::string_view>& reserved);

// encode_name, then `suffix` (".npy"): step 4 applies whenever the name
// and the suffix together would pass 255 bytes, so the suffix is kept and
// the result always fits: "...%~<hash>.npy".
std::string encode_name_with_suffix(std::string_view name,
                                    const std::vector<std::string_view>& reserved,
                                    std::string_view suffix);

// Steps 1-3 only.
std::string encode_steps_1_to_3(std::string_view name,
                                const std::vector<std::string_view>& reserved);

// True when encode_name(name) == name: the common case, which needs no copy.
bool maps_to_itself(std::string_view name, const std::vector<std::string_view>& reserved);

// Inverse of steps 1-3. Returns false for a hashed (step 4) name, which
// cannot be decoded (the exact name is in user.stfs.name), or for text that
// no tensor name maps to.
bool decode_name(std::string_view file_name, std::string& out);

// `s` cut to 60 bytes plus "..." for error messages about long names.
std::string shorten_for_message(std::string_view s);

// File names for `names`, index for index. Fails with EEXIST and a message
// naming both tensors if two map to the same file name.
Result<std::vector<std::string>> map_names(const std::vector<std::string_view>& names,
                                           const std::vector<std::string_view>& reserved);

}  // namespace stfs
