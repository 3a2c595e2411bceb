#include "stfs/format/npy.hpp"

namespace stfs {

std::optional<std::string_view> npy_descr(Dtype d) {
  switch (d) {
    case Dtype::kBool: return "|b1";
    case Dtype::kU8: return "|u1";
    case Dtype::kI8: return "|i1";
    case Dtype::kI16: return "<i2";
    case Dtype::kU16: return "<u2";
    case Dtype::kF16: return "<f2";
    case Dtype::kI32: return "<i4";
    case Dtype::kU32: return "<u4";
    case Dtype::kF32: return "<f4";
    case Dtype::kI64: return "<i8";
    case Dtype::kU64: return "<u8";
    case Dtype::kF64: return "<f8";
    case Dtype::kC64: return "<c8";
    // No numpy type: the raw bits, as unsigned integers of the same width.
    case Dtype::kBF16: return "<u2";
    case Dtype::kF8E5M2:
    case Dtype::kF8E4M3:
    case Dtype::kF8E8M0:
    case Dtype::kF8E4M3Fnuz:
    case Dtype::kF8E5M2Fnuz: return "|u1";
    case Dtype::kF6E2M3:
    case Dtype::kF6E3M2:
    case Dtype::kF4: return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> npy_header(const TensorInfo& t) {
  auto descr = npy_descr(t.dtype);
  if (!descr) return std::nullopt;
  std::string dict = "{'descr': '" + std::string(*descr) + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < t.shape.size(); ++i) {
    dict += std::to_string(t.shape[i]);
    dict += (t.shape.size() == 1 || i + 1 < t.shape.size()) ? "," : "";
    if (i + 1 < t.shape.size()) dict += ' ';
  }
  dict += "), }";
  // Version 1.0 has a 2-byte length; a dict past 64 KiB needs 2.0's 4 bytes.
  const bool v2 = dict.size() + 1 + 64 > 0xffff;
  const std::size_t prefix = v2 ? 12 : 10;
  std::size_t total = prefix + dict.size() + 1;  // + '\n'
  std::size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  const std::size_t len = dict.size();
  std::string out = "\x93NUMPY";
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  for (std::size_t i = 0; i < (v2 ? 4u : 2u); ++i)
    out += static_cast<char>((len >> (8 * i)) & 0xff);
  return out + dict;
}

}  // namespace stfs
