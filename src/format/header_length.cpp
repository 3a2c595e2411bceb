// Steps 1-3 of the header (SAFETENSORS.md §4): the 8-byte length prefix,
// the cap on N, and N inside the real file.
#include "parse_steps.hpp"

namespace stfs {

using parse::fail;

Result<std::uint64_t, ParseError> parse_header_length(std::string_view prefix,
                                                      std::uint64_t file_size,
                                                      const Limits& limits) {
  if (file_size < 8 || prefix.size() < 8) {
    return unexpected(
        fail(Rule::kHeaderTooSmall,
             "header too small: file has " + std::to_string(file_size) + " bytes, fewer than 8"));
  }
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(prefix[i]);
  if (n > limits.max_header) {
    return unexpected(fail(Rule::kHeaderTooLarge, "header too large: " + std::to_string(n) +
                                                      " bytes, limit " +
                                                      std::to_string(limits.max_header)));
  }
  if (n > file_size - 8) {
    return unexpected(fail(Rule::kInvalidHeaderLength,
                           "invalid header length: " + std::to_string(n) +
                               " bytes claimed, file has " + std::to_string(file_size)));
  }
  return n;
}

}  // namespace stfs
