// Dtype table: one row per type, looked up linearly (22 rows, cheaper than a map).
#include "stfs/format/dtype.hpp"

#include <array>

namespace stfs {
namespace {

struct Row {
  Dtype dtype;
  std::string_view name;
  unsigned bits;
};

constexpr std::array<Row, kDtypeCount> kRows{{
    {Dtype::kBool, "BOOL", 8},
    {Dtype::kU8, "U8", 8},
    {Dtype::kI8, "I8", 8},
    {Dtype::kF8E5M2, "F8_E5M2", 8},
    {Dtype::kF8E4M3, "F8_E4M3", 8},
    {Dtype::kF8E8M0, "F8_E8M0", 8},
    {Dtype::kF8E4M3Fnuz, "F8_E4M3FNUZ", 8},
    {Dtype::kF8E5M2Fnuz, "F8_E5M2FNUZ", 8},
    {Dtype::kI16, "I16", 16},
    {Dtype::kU16, "U16", 16},
    {Dtype::kF16, "F16", 16},
    {Dtype::kBF16, "BF16", 16},
    {Dtype::kI32, "I32", 32},
    {Dtype::kU32, "U32", 32},
    {Dtype::kF32, "F32", 32},
    {Dtype::kI64, "I64", 64},
    {Dtype::kU64, "U64", 64},
    {Dtype::kF64, "F64", 64},
    {Dtype::kC64, "C64", 64},
    {Dtype::kF6E2M3, "F6_E2M3", 6},
    {Dtype::kF6E3M2, "F6_E3M2", 6},
    {Dtype::kF4, "F4", 4},
}};

// The table is indexed by the enum value; keep them in step.
constexpr bool table_in_enum_order() {
  for (std::size_t i = 0; i < kRows.size(); ++i) {
    if (static_cast<std::size_t>(kRows[i].dtype) != i) return false;
  }
  return true;
}
static_assert(table_in_enum_order());

}  // namespace

std::string_view dtype_name(Dtype d) { return kRows[static_cast<std::size_t>(d)].name; }

unsigned dtype_bits(Dtype d) { return kRows[static_cast<std::size_t>(d)].bits; }

std::optional<Dtype> parse_dtype(std::string_view s) {
  for (const Row& r : kRows) {
    if (r.name == s) return r.dtype;
  }
  return std::nullopt;
}

}  // namespace stfs
