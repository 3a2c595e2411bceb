#include "stfs/format/formats.hpp"

namespace stfs {

std::optional<std::string> foreign_format(std::string_view p) {
  constexpr std::string_view kOnly = "; stfs reads safetensors and GGUF only";
  constexpr std::string_view kNoPickles = " and never loads pickles";
  auto starts = [&](std::string_view magic) { return p.substr(0, magic.size()) == magic; };
  if (starts(std::string_view("PK\x03\x04", 4))) {
    return "looks like a PyTorch zip checkpoint (pickle inside)" + std::string(kOnly) +
           std::string(kNoPickles);
  }
  // Pickle protocols 2 to 5 open with PROTO (0x80) and the protocol number:
  // torch.save's legacy format, .pkl files.
  if (p.size() >= 2 && static_cast<unsigned char>(p[0]) == 0x80 && p[1] >= 2 && p[1] <= 5) {
    return "looks like a pickle (PyTorch's legacy checkpoint format)" + std::string(kOnly) +
           std::string(kNoPickles);
  }
  if (starts("\x93NUMPY")) return "looks like a NumPy .npy array" + std::string(kOnly);
  if (starts("\x89HDF\r\n\x1a\n")) {
    return "looks like an HDF5 file (Keras .h5)" + std::string(kOnly);
  }
  return std::nullopt;
}

}  // namespace stfs
