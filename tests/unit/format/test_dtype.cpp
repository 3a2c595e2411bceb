#include <gtest/gtest.h>

#include "stfs/format/dtype.hpp"

namespace stfs {
namespace {

TEST(Dtype, AllTwentyTwoRoundTripWithTheirBitSizes) {
  const std::pair<const char*, unsigned> expected[] = {
      {"BOOL", 8},    {"U8", 8},          {"I8", 8},          {"F8_E5M2", 8}, {"F8_E4M3", 8},
      {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16},    {"U16", 16},
      {"F16", 16},    {"BF16", 16},       {"I32", 32},        {"U32", 32},    {"F32", 32},
      {"I64", 64},    {"U64", 64},        {"F64", 64},        {"C64", 64},    {"F6_E2M3", 6},
      {"F6_E3M2", 6}, {"F4", 4},
  };
  static_assert(std::size(expected) == kDtypeCount);
  for (auto [name, bits] : expected) {
    auto d = parse_dtype(name);
    ASSERT_TRUE(d.has_value()) << name;
    EXPECT_EQ(dtype_name(*d), name);
    EXPECT_EQ(dtype_bits(*d), bits) << name;
  }
}

TEST(Dtype, RejectsSpellingsTheReferenceDoesNotKnow) {
  for (const char* s : {"bf16", "f32", "F8_E4M3FN", "I4", "U4", "C128", "F128", "", "BOOL "}) {
    EXPECT_FALSE(parse_dtype(s).has_value()) << s;
  }
}

}  // namespace
}  // namespace stfs
