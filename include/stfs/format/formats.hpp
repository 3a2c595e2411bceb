// Other model formats people hand stfs by mistake, told apart by their
// first bytes, so an invalid file gets "looks like a PyTorch zip checkpoint"
// rather than only "header too large: 18390232448239719873 bytes".
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace stfs {

// What `prefix` (a file's first bytes, up to 8) looks like, as a sentence
// ending "; stfs reads safetensors and GGUF only ...", or nullopt.
std::optional<std::string> foreign_format(std::string_view prefix);

}  // namespace stfs
