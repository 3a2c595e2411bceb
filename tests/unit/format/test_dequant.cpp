// One block of each ggml type, worked by hand from ggml's reference
// dequantisers (dequant.hpp). tests/integration/test_gguf.py compares every
// type with a numpy reading of ggml's C, bit for bit, on many blocks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "stfs/format/dequant.hpp"
#include "stfs/format/gguf.hpp"

namespace stfs {
namespace {

constexpr std::uint16_t kOne = 0x3C00, kHalf = 0x3800, kTwo = 0x4000;

struct Block {
  explicit Block(std::uint32_t id) : type(id), bytes(ggml_type(id)->type_size, 0) {}
  void f16(std::size_t at, std::uint16_t v) {
    bytes[at] = static_cast<std::uint8_t>(v);
    bytes[at + 1] = static_cast<std::uint8_t>(v >> 8);
  }
  std::vector<float> decode() const {
    std::vector<float> out(ggml_type(type)->block, std::nanf(""));
    dequantize_ggml(type, bytes.data(), 1, out.data());
    return out;
  }
  std::uint32_t type;
  std::vector<std::uint8_t> bytes;
};

TEST(Dequant, Q4_1ScalesThenAddsTheMinimum) {
  Block b(3);
  b.f16(0, kOne);
  b.f16(2, kHalf);
  b.bytes[4] = 0x21;
  auto y = b.decode();
  EXPECT_EQ(y[0], 1.5f);   // 1 * 1 + 0.5
  EXPECT_EQ(y[16], 2.5f);  // 2 * 1 + 0.5
  EXPECT_EQ(y[1], 0.5f);
}

TEST(Dequant, Q5_0TakesTheFifthBitFromQh) {
  Block b(6);
  b.f16(0, kOne);
  b.bytes[2] = 0x01;  // qh bit 0: value 0 gets 16
  b.bytes[4] = 0x01;  // qh bit 16: value 16 gets 16
  auto y = b.decode();
  EXPECT_EQ(y[0], 0.0f);  // (0 | 16) - 16
  EXPECT_EQ(y[16], 0.0f);
  EXPECT_EQ(y[1], -16.0f);  // (0 | 0) - 16
}

TEST(Dequant, Q5_1) {
  Block b(7);
  b.f16(0, kTwo);
  b.f16(2, kHalf);
  b.bytes[8] = 0x03;
  b.bytes[4] = 0x02;  // qh bit 1: value 1 gets 16
  auto y = b.decode();
  EXPECT_EQ(y[0], 6.5f);   // 3 * 2 + 0.5
  EXPECT_EQ(y[1], 32.5f);  // 16 * 2 + 0.5
}

TEST(Dequant, Q8_0) {
  Block b(8);
  b.f16(0, kHalf);
  b.bytes[2] = 0xFC;  // -4
  EXPECT_EQ(b.decode()[0], -2.0f);
}

TEST(Dequant, Q2_KScaleAndMinPerSixteen) {
  Block b(10);
  b.bytes[0] = 0x12;  // scale 2, min 1
  b.bytes[16] = 0x03;
  b.f16(80, kOne);
  b.f16(82, kHalf);
  auto y = b.decode();
  EXPECT_EQ(y[0], 5.5f);   // 1*2*3 - 0.5*1
  EXPECT_EQ(y[1], -0.5f);  // 0 - 0.5
}

TEST(Dequant, Q3_KHighBitAndSignedScales) {
  Block b(11);
  b.bytes[0] = 0x01;  // hmask: value 0 has its high bit
  b.bytes[32] = 0x03;
  b.f16(108, kOne);
  auto y = b.decode();
  EXPECT_EQ(y[0], -96.0f);  // scale 0 - 32 = -32, times 3
  EXPECT_EQ(y[1], 128.0f);  // -32 * (0 - 4)
}

TEST(Dequant, Q4_KSixBitScalesAndMins) {
  Block b(12);
  b.f16(0, kOne);
  b.f16(2, kOne);
  b.bytes[4] = 3;  // scale of the first 32
  b.bytes[8] = 2;  // its min
  b.bytes[16] = 0x51;
  auto y = b.decode();
  EXPECT_EQ(y[0], 1.0f);   // 3 * 1 - 2
  EXPECT_EQ(y[32], 0.0f);  // scale and min 0
  EXPECT_EQ(y[1], -2.0f);
}

TEST(Dequant, Q5_K) {
  Block b(13);
  b.f16(0, kOne);
  b.bytes[4] = 1;
  b.bytes[16] = 0x01;  // qh: value 0 gets 16
  b.bytes[48] = 0x02;
  EXPECT_EQ(b.decode()[0], 18.0f);
}

TEST(Dequant, Q6_K) {
  Block b(14);
  b.bytes[0] = 0x05;
  b.bytes[128] = 0x02;  // high bits 2: (5 | 32) - 32 = 5
  b.bytes[192] = 3;
  b.bytes[194] = 3;  // the scale of values 32-47
  b.f16(208, kHalf);
  auto y = b.decode();
  EXPECT_EQ(y[0], 7.5f);     // 0.5 * 3 * 5
  EXPECT_EQ(y[32], -48.0f);  // 0.5 * 3 * (0 - 32)
}

TEST(Dequant, IQ4_NLLooksUpTheNonLinearTable) {
  Block b(20);
  b.f16(0, kOne);
  b.bytes[2] = 0xF0;
  auto y = b.decode();
  EXPECT_EQ(y[0], -127.0f);
  EXPECT_EQ(y[16], 113.0f);
}

TEST(Dequant, IQ4_XS) {
  Block b(23);
  b.f16(0, kOne);
  b.bytes[4] = 0x21;  // scales_l: sub-block 0 scale 1, sub-block 1 scale 2
  b.bytes[8] = 0x08;  // table index 8: 1
  auto y = b.decode();
  EXPECT_EQ(y[0], -31.0f);    // (1 - 32) * 1
  EXPECT_EQ(y[32], 3810.0f);  // (2 - 32) * -127
}

TEST(Dequant, TQ1_0TernaryDigits) {
  Block b(34);
  b.bytes[0] = 255;
  b.f16(52, kOne);
  auto y = b.decode();
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[32], 1.0f);
  EXPECT_EQ(y[1], -1.0f);
}

TEST(Dequant, TQ2_0) {
  Block b(35);
  b.bytes[0] = 0x1B;
  b.f16(64, kTwo);
  auto y = b.decode();
  EXPECT_EQ(y[0], 2.0f * 2);
  EXPECT_EQ(y[32], 1.0f * 2);
  EXPECT_EQ(y[64], 0.0f);
  EXPECT_EQ(y[96], -2.0f);
}

TEST(Dequant, MXFP4SharedExponentHalved) {
  Block b(39);
  b.bytes[0] = 128;  // 2^(128-128)
  b.bytes[1] = 0x9F;
  auto y = b.decode();
  EXPECT_EQ(y[0], -12.0f);
  EXPECT_EQ(y[16], -1.0f);
  b.bytes[0] = 0;  // 2^-128: a subnormal scale
  EXPECT_EQ(b.decode()[0], -12.0f * std::ldexp(1.0f, -128));
}

TEST(Dequant, NVFP4OneUe4m3ScalePerSixteen) {
  Block b(40);
  b.bytes[0] = 0x38;      // exp 7, man 0: 1.0, halved
  b.bytes[1] = 0x3C;      // exp 7, man 4: 1.5, halved
  b.bytes[2] = 0x7F;      // NaN: 0
  b.bytes[3] = 0x01;      // subnormal: 2^-9, halved
  b.bytes[4] = 0x9F;      // sub-block 0: -12 then (high nibble) 0... -1
  b.bytes[4 + 8] = 0x07;  // sub-block 1: 12, then 0
  b.bytes[4 + 16] = 0x77;
  b.bytes[4 + 24] = 0x07;
  auto y = b.decode();
  EXPECT_EQ(y[0], -12.0f * 0.5f);
  EXPECT_EQ(y[8], -1.0f * 0.5f);
  EXPECT_EQ(y[16], 12.0f * 0.75f);
  EXPECT_EQ(y[24], 0.0f);
  EXPECT_EQ(y[32], 0.0f);  // a NaN scale reads as 0
  EXPECT_EQ(y[48], 12.0f * std::ldexp(1.0f, -10));
}

TEST(Dequant, Q1_0SignBitsTimesD) {
  Block b(41);
  b.f16(0, kHalf);
  b.bytes[2] = 0x05;   // values 0 and 2 set
  b.bytes[17] = 0x80;  // value 127 set
  auto y = b.decode();
  EXPECT_EQ(y[0], 0.5f);
  EXPECT_EQ(y[1], -0.5f);
  EXPECT_EQ(y[2], 0.5f);
  EXPECT_EQ(y[126], -0.5f);
  EXPECT_EQ(y[127], 0.5f);
}

TEST(Dequant, Q2_0CodesMinusOne) {
  Block b(42);
  b.f16(0, kTwo);
  b.bytes[2] = 0xE4;  // codes 0, 1, 2, 3 (low bits first)
  auto y = b.decode();
  EXPECT_EQ(y[0], -2.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_EQ(y[3], 4.0f);
  EXPECT_EQ(y[4], -2.0f);  // byte 1 is 0: code 0
}

TEST(Dequant, EveryTypeWithAnF32ViewAndNoOther) {
  for (std::uint32_t t :
       {2u, 3u, 6u, 7u, 8u, 10u, 11u, 12u, 13u, 14u, 20u, 23u, 34u, 35u, 39u, 40u, 41u, 42u}) {
    EXPECT_TRUE(ggml_dequantizes(t)) << t;
  }
  for (std::uint32_t t : {0u, 1u, 9u, 15u, 16u, 17u, 18u, 19u, 21u, 22u, 29u, 43u}) {
    EXPECT_FALSE(ggml_dequantizes(t)) << t;
  }
}

TEST(GgmlTypes, BlockSizesAreGgmlsOwn) {
  EXPECT_EQ(ggml_type(9)->type_size, 36u);  // block_q8_1: two halves, 32 quants
  ASSERT_NE(ggml_type(42), nullptr);
  EXPECT_EQ(ggml_type(42)->name, "Q2_0");
  EXPECT_EQ(ggml_type(42)->block, 64u);
  EXPECT_EQ(ggml_type(42)->type_size, 18u);
  EXPECT_EQ(ggml_type(43), nullptr);
}

}  // namespace
}  // namespace stfs
