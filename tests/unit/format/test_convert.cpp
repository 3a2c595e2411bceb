// Float conversions of the f32 view and the NPY header, on values worked
// out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "stfs/format/convert.hpp"
#include "stfs/format/npy.hpp"

namespace stfs {
namespace {

TEST(Convert, HalfAndBfloat) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xc040), -3.0f);
}

TEST(Convert, EightBitFloats) {
  EXPECT_EQ(f8_to_f32(Dtype::kF8E4M3, 0x7e), 448.0f);  // largest e4m3fn
  EXPECT_TRUE(std::isnan(f8_to_f32(Dtype::kF8E4M3, 0x7f)));
  EXPECT_EQ(f8_to_f32(Dtype::kF8E4M3, 0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(f8_to_f32(Dtype::kF8E5M2, 0x7b), 57344.0f);
  EXPECT_TRUE(std::isinf(f8_to_f32(Dtype::kF8E5M2, 0x7c)));
  EXPECT_EQ(f8_to_f32(Dtype::kF8E4M3Fnuz, 0x7f), 240.0f);
  EXPECT_TRUE(std::isnan(f8_to_f32(Dtype::kF8E4M3Fnuz, 0x80)));
  EXPECT_EQ(f8_to_f32(Dtype::kF8E5M2Fnuz, 0x7f), 57344.0f);
  EXPECT_EQ(f8_to_f32(Dtype::kF8E8M0, 127), 1.0f);
  EXPECT_TRUE(std::isnan(f8_to_f32(Dtype::kF8E8M0, 255)));
  EXPECT_TRUE(f32_convertible(Dtype::kBF16));
  EXPECT_FALSE(f32_convertible(Dtype::kF32));
  EXPECT_FALSE(f32_convertible(Dtype::kF4));
}

TEST(Npy, HeaderLayout) {
  std::uint64_t dims[] = {2, 3};
  TensorInfo t;
  t.dtype = Dtype::kF32;
  t.shape = dims;
  auto h = npy_header(t);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->size() % 64, 0u);
  EXPECT_EQ(h->substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(h->find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
            std::string::npos);
  EXPECT_EQ(h->back(), '\n');
  std::uint64_t one[] = {7};
  t.shape = one;
  EXPECT_NE(npy_header(t)->find("'shape': (7,)"), std::string::npos);
  t.shape = {};
  EXPECT_NE(npy_header(t)->find("'shape': ()"), std::string::npos);
  t.dtype = Dtype::kF4;
  EXPECT_FALSE(npy_header(t));
}

}  // namespace
}  // namespace stfs

namespace stfs {
namespace {

TEST(F64ToF32, RoundsToNearestEvenAndKeepsSpecials) {
  auto bits = [](double d) {
    std::uint64_t b;
    std::memcpy(&b, &d, sizeof b);
    return b;
  };
  EXPECT_EQ(f64_to_f32(bits(1.0)), 1.0f);
  EXPECT_EQ(f64_to_f32(bits(1.0 + std::ldexp(1.0, -24))), 1.0f);  // tie: to even
  EXPECT_EQ(f64_to_f32(bits(1.0 + 3 * std::ldexp(1.0, -24))), 1.0f + std::ldexp(1.0f, -22));
  EXPECT_EQ(f64_to_f32(bits(1e300)), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f64_to_f32(bits(-1e300)), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f64_to_f32(bits(std::nan("")))));
  EXPECT_TRUE(std::signbit(f64_to_f32(bits(-0.0))));
  EXPECT_EQ(f64_to_f32(bits(1e-50)), 0.0f);
  EXPECT_TRUE(f32_convertible(Dtype::kF64));
  EXPECT_FALSE(f32_convertible(Dtype::kF32));  // served as it is
  EXPECT_FALSE(f32_convertible(Dtype::kI32));
}

}  // namespace
}  // namespace stfs

namespace stfs {
namespace {

// GGUF's Q8_0 and Q4_0 blocks, written by hand: the scale 0.5 (f16 0x3800),
// then the quants; the values are worked out here, not by the decoder.
TEST(Dequantise, Q8_0AndQ4_0AsGgmlDoes) {
  TensorInfo q8;
  q8.ggml_type = 8;
  auto dec8 = f32_decoder(q8);
  ASSERT_TRUE(dec8);
  EXPECT_EQ(dec8->block, 32u);
  EXPECT_EQ(dec8->block_bytes, 34u);
  std::uint8_t b8[34] = {0x00, 0x38};
  for (int j = 0; j < 32; ++j) b8[2 + j] = static_cast<std::uint8_t>(j * 9 - 128);
  float out[32];
  decode_f32(*dec8, b8, 1, out);
  for (int j = 0; j < 32; ++j) {
    const auto q = static_cast<std::int8_t>(static_cast<std::uint8_t>(j * 9 - 128));  // wraps
    EXPECT_EQ(out[j], static_cast<float>(q) * 0.5f) << j;
  }

  TensorInfo q4;
  q4.ggml_type = 2;
  auto dec4 = f32_decoder(q4);
  ASSERT_TRUE(dec4);
  EXPECT_EQ(dec4->block_bytes, 18u);
  std::uint8_t b4[18] = {0x00, 0x38};
  for (int j = 0; j < 16; ++j) b4[2 + j] = static_cast<std::uint8_t>(j | (15 - j) << 4);
  decode_f32(*dec4, b4, 1, out);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], static_cast<float>(j - 8) * 0.5f) << j;            // low nibbles first
    EXPECT_EQ(out[j + 16], static_cast<float>(7 - j) * 0.5f) << j;       // then the high ones
  }
  // The K-quants decode in their 256-value super-blocks; the IQ1-IQ3
  // grids and Q8_K have no float32 rendering; F32 is served as it is.
  TensorInfo q4k;
  q4k.ggml_type = 12;
  ASSERT_TRUE(f32_decoder(q4k));
  EXPECT_EQ(f32_decoder(q4k)->block, 256u);
  EXPECT_EQ(f32_decoder(q4k)->block_bytes, 144u);
  TensorInfo iq2;
  iq2.ggml_type = 16;
  EXPECT_FALSE(f32_decoder(iq2));
  TensorInfo f32;
  f32.dtype = Dtype::kF32;
  EXPECT_FALSE(f32_decoder(f32));
  TensorInfo f16;
  f16.dtype = Dtype::kF16;
  ASSERT_TRUE(f32_decoder(f16));
  EXPECT_EQ(f32_decoder(f16)->block_bytes, 2u);
}

}  // namespace
}  // namespace stfs
