// GGUF reader rules, one test per rule of docs/GGUF.md: a file that breaks
// the rule, refused with that rule, and a near neighbour accepted. Every
// file is written here, byte by byte, by a writer that shares nothing with
// the reader.
#include <gtest/gtest.h>

#include <bit>

#include "parse_checks.hpp"
#include "stfs/format/gguf.hpp"
#include "stfs/format/json_writer.hpp"

namespace stfs {
namespace {

// A GGUF file, field by field.
struct G {
  std::string b;
  G& raw(std::string_view s) { b.append(s); return *this; }
  G& u8(std::uint8_t v) { b.push_back(static_cast<char>(v)); return *this; }
  G& u32(std::uint32_t v) { for (int i = 0; i < 4; ++i) u8(static_cast<std::uint8_t>(v >> (8 * i))); return *this; }
  G& u64(std::uint64_t v) { for (int i = 0; i < 8; ++i) u8(static_cast<std::uint8_t>(v >> (8 * i))); return *this; }
  G& str(std::string_view s) { u64(s.size()); return raw(s); }
  G& f32(float f) { return u32(std::bit_cast<std::uint32_t>(f)); }
  G& f64(double d) { return u64(std::bit_cast<std::uint64_t>(d)); }
  // Magic, version, counts.
  G& head(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
    return raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  }
  G& kv_u32(std::string_view k, std::uint32_t v) { return str(k).u32(4).u32(v); }
  G& kv_str(std::string_view k, std::string_view v) { return str(k).u32(8).str(v); }
  // A tensor info: ne innermost first.
  G& info(std::string_view name, std::vector<std::uint64_t> ne, std::uint32_t type,
          std::uint64_t offset) {
    str(name).u32(static_cast<std::uint32_t>(ne.size()));
    for (auto n : ne) u64(n);
    return u32(type).u64(offset);
  }
  G& pad(std::size_t align = 32) {
    while (b.size() % align) u8(0);
    return *this;
  }
  G& zeros(std::size_t n) { b.append(n, '\0'); return *this; }
};

Result<Header, ParseError> parse(const std::string& bytes, const Limits& limits = {}) {
  test::maybe_dump_seed(bytes, "STFS_GGUF_SEED_DIR");
  return parse_gguf(bytes, bytes.size(), limits);
}

::testing::AssertionResult Rejects(const std::string& bytes, Rule rule, std::string_view needle = "") {
  return test::refused_with(parse(bytes), rule, needle);
}

::testing::AssertionResult Accepts(const std::string& bytes) {
  auto r = parse(bytes);
  if (!r) return ::testing::AssertionFailure() << rule_name(r.error().rule) << ": " << r.error().message;
  return ::testing::AssertionSuccess();
}

// One F32 tensor of 4 elements (16 bytes) after `kv` pairs already written.
std::string one_tensor(G g) {
  g.info("w", {4}, 0, 0).pad();
  return g.zeros(16).b;
}

TEST(Gguf, AMinimalFileReadsWithItsLayout) {
  G g;
  g.head(2, 2).kv_str("general.architecture", "llama").kv_u32("llama.context_length", 4096);
  g.info("tok_embd.weight", {64, 3}, 2, 0);  // Q4_0: 3 rows of 2 blocks of 18 bytes
  g.info("norm", {5}, 0, 128);               // 108 bytes padded to 128
  g.pad();
  const std::size_t data = g.b.size();
  g.zeros(128 + 20);
  auto h = parse(g.b);
  ASSERT_TRUE(h) << h.error().message;
  EXPECT_EQ(h->format, Format::kGguf);
  EXPECT_EQ(h->gguf_version, 3u);
  EXPECT_EQ(h->gguf_alignment, 32u);
  EXPECT_EQ(h->data_start(), data);
  ASSERT_EQ(h->tensors.size(), 2u);
  const TensorInfo& q = h->tensors[0];
  EXPECT_EQ(q.name, "tok_embd.weight");
  EXPECT_EQ(type_name(q), "Q4_0");
  EXPECT_FALSE(has_elements(q));
  EXPECT_EQ(std::vector<std::uint64_t>(q.shape.begin(), q.shape.end()),
            (std::vector<std::uint64_t>{3, 64}));  // row-major
  EXPECT_EQ(q.begin, 0u);
  EXPECT_EQ(q.end, 108u);
  EXPECT_EQ(type_name(h->tensors[1]), "F32");
  EXPECT_TRUE(has_elements(h->tensors[1]));
  EXPECT_EQ(h->tensors[1].dtype, Dtype::kF32);
  EXPECT_EQ(h->tensors[1].begin, 128u);
  EXPECT_EQ(h->tensors[1].end, 148u);
  EXPECT_EQ(metadata_json(*h),
            "{\"general.architecture\":\"llama\",\"llama.context_length\":4096}\n");
  EXPECT_EQ(dtype_summary(*h), "F32,Q4_0");
}

TEST(Gguf, EveryValueTypeIsTypedFaithfully) {
  G g;
  g.head(0, 13);
  g.str("u8").u32(0).u8(255);
  g.str("i8").u32(1).u8(0x80);
  g.str("u16").u32(2).u8(0xff).u8(0xff);
  g.str("i16").u32(3).u8(0).u8(0x80);
  g.str("u32").u32(4).u32(4294967295u);
  g.str("i32").u32(5).u32(0x80000000u);
  g.str("f32").u32(6).f32(0.1f);
  g.str("bool").u32(7).u8(1);
  g.str("str").u32(8).str("h\xc3\xa9\"\n");
  g.str("u64").u32(10).u64(18446744073709551615ULL);
  g.str("i64").u32(11).u64(0x8000000000000000ULL);
  g.str("f64").u32(12).f64(1e300);
  // An array of two arrays of strings, and nothing else.
  g.str("nested").u32(9).u32(9).u64(2);
  g.u32(8).u64(2).str("a").str("b");
  g.u32(8).u64(0);
  auto h = parse(g.b);
  ASSERT_TRUE(h) << h.error().message;
  EXPECT_EQ(metadata_json(*h),
            "{\"u8\":255,\"i8\":-128,\"u16\":65535,\"i16\":-32768,\"u32\":4294967295,"
            "\"i32\":-2147483648,\"f32\":0.10000000149011612,\"bool\":true,"
            "\"str\":\"h\xc3\xa9\\\"\\n\",\"u64\":18446744073709551615,"
            "\"i64\":-9223372036854775808,\"f64\":1e+300,\"nested\":[[\"a\",\"b\"],[]]}\n");
}

TEST(Gguf, WholeFloatsStayFloats) {
  G g;
  g.head(0, 1).str("rope.freq_base").u32(6).f32(10000.0f);
  auto h = parse(g.b);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->gguf_metadata, "{\"rope.freq_base\":10000.0}");
}

TEST(Gguf, Version) {
  EXPECT_TRUE(Accepts(G().head(0, 0, 2).b));
  EXPECT_TRUE(Accepts(G().head(0, 0, 3).b));
  EXPECT_TRUE(Rejects(G().head(0, 0, 1).b, Rule::kGgufVersion, "version 1"));
  EXPECT_TRUE(Rejects(G().head(0, 0, 4).b, Rule::kGgufVersion, "version 4"));
  EXPECT_TRUE(Rejects(G().head(0, 0, 0).b, Rule::kGgufVersion));
  EXPECT_TRUE(Rejects(G().head(0, 0, 0x03000000).b, Rule::kGgufVersion, "big-endian"));
  EXPECT_TRUE(Rejects(G().raw("GGUX").u32(3).u64(0).u64(0).b, Rule::kGgufVersion, "magic"));
}

TEST(Gguf, CountsAreBoundedByTheBytesLeft) {
  EXPECT_TRUE(Rejects(G().raw("GGUF").u32(3).b, Rule::kGgufTruncated, "tensor count"));
  EXPECT_TRUE(Rejects(G().head(1000000000000ULL, 0).b, Rule::kGgufTruncated, "cannot fit"));
  EXPECT_TRUE(Rejects(G().head(0, 1ULL << 62).b, Rule::kGgufTruncated, "cannot fit"));
  EXPECT_TRUE(Rejects(G().head(0x8000000000000000ULL, 0).b, Rule::kGgufTruncated, "negative"));
  EXPECT_TRUE(Rejects(G().head(0, 0xffffffffffffffffULL).b, Rule::kGgufTruncated, "negative"));
  // A string, an array, a key longer than the file.
  EXPECT_TRUE(Rejects(G().head(0, 1).str("k").u32(8).u64(1ULL << 40).b, Rule::kGgufTruncated,
                      "string value"));
  EXPECT_TRUE(Rejects(G().head(0, 1).str("k").u32(9).u32(10).u64(1ULL << 61).zeros(16).b,
                      Rule::kGgufTruncated, "array of"));
  EXPECT_TRUE(Rejects(G().head(0, 1).str("k").u32(9).u32(8).u64(1ULL << 61).zeros(16).b,
                      Rule::kGgufTruncated, "array of"));
  EXPECT_TRUE(Rejects(G().head(0, 1).u64(~0ULL).zeros(16).b, Rule::kGgufTruncated, "key"));
  // Every prefix of a valid file is refused, none crashes.
  G ok;
  ok.head(1, 1).kv_str("a", "b");
  const std::string full = one_tensor(ok);
  ASSERT_TRUE(Accepts(full));
  for (std::size_t n = 0; n + 16 < full.size(); ++n) {
    auto r = parse_gguf(full.substr(0, n), n);
    EXPECT_FALSE(r) << n;
  }
}

TEST(Gguf, TheHeaderCapHolds) {
  G g;
  g.head(0, 1).kv_str("k", std::string(2000, 'x'));
  Limits small;
  small.max_header = 1000;
  EXPECT_TRUE(Accepts(g.b));
  auto r = parse(g.b, small);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().rule, Rule::kHeaderTooLarge);
}

TEST(Gguf, ReadingInSlicesAsksForMore) {
  G g;
  g.head(1, 1).kv_str("k", std::string(5000, 'x'));
  const std::string full = one_tensor(g);
  std::uint64_t more = 0;
  auto r = parse_gguf(std::string_view(full).substr(0, 100), full.size(), {}, &more);
  ASSERT_FALSE(r);
  EXPECT_GT(more, 100u);
  EXPECT_LE(more, full.size());
  std::uint64_t again = 0;
  auto whole = parse_gguf(full, full.size(), {}, &again);
  EXPECT_TRUE(whole);
  EXPECT_EQ(again, 0u);
}

TEST(Gguf, StringsMustBeUtf8) {
  EXPECT_TRUE(Accepts(G().head(0, 1).kv_str("k", "\xe2\x82\xac").b));
  EXPECT_TRUE(Rejects(G().head(0, 1).kv_str("k", "\xc3").b, Rule::kGgufUtf8, "string value"));
  EXPECT_TRUE(Rejects(G().head(0, 1).kv_str("k", "\xed\xa0\x80").b, Rule::kGgufUtf8));  // surrogate
  EXPECT_TRUE(Rejects(G().head(0, 1).kv_str("\xff", "v").b, Rule::kGgufUtf8, "key"));
  EXPECT_TRUE(Rejects(one_tensor(G().head(1, 0)).replace(24 + 8, 1, "\xc0"), Rule::kGgufUtf8,
                      "tensor name"));
}

TEST(Gguf, KeysAreNonEmptyAndUnique) {
  EXPECT_TRUE(Accepts(G().head(0, 2).kv_u32("a", 1).kv_u32("b", 1).b));
  EXPECT_TRUE(Rejects(G().head(0, 2).kv_u32("a", 1).kv_u32("a", 2).b, Rule::kGgufKey, "duplicate key `a`"));
  EXPECT_TRUE(Rejects(G().head(0, 1).kv_u32("", 1).b, Rule::kGgufKey, "empty"));
}

TEST(Gguf, ValueTypes) {
  EXPECT_TRUE(Rejects(G().head(0, 1).str("k").u32(13).u32(0).b, Rule::kGgufValueType, "unknown value type 13"));
  EXPECT_TRUE(Rejects(G().head(0, 1).str("k").u32(9).u32(13).u64(0).b, Rule::kGgufValueType, "element type"));
  EXPECT_TRUE(Rejects(G().head(0, 1).str("k").u32(7).u8(2).b, Rule::kGgufValueType, "bool"));
  EXPECT_TRUE(Accepts(G().head(0, 1).str("k").u32(7).u8(0).b));
}

TEST(Gguf, NestingIsBounded) {
  auto nested = [](int depth) {
    G g;
    g.head(0, 1).str("k").u32(9);
    for (int i = 1; i < depth; ++i) g.u32(9).u64(1);
    g.u32(0).u64(0);
    return g.b;
  };
  EXPECT_TRUE(Accepts(nested(kGgufMaxDepth)));
  EXPECT_TRUE(Rejects(nested(kGgufMaxDepth + 1), Rule::kGgufNesting));
  EXPECT_TRUE(Rejects(nested(100000), Rule::kGgufNesting));
}

TEST(Gguf, Alignment) {
  auto with = [](G g) { return one_tensor(std::move(g)); };
  {
    G g;
    g.head(1, 1).kv_u32("general.alignment", 64);
    g.info("w", {4}, 0, 0).pad(64);
    auto h = parse(g.zeros(16).b);
    ASSERT_TRUE(h) << h.error().message;
    EXPECT_EQ(h->data_start() % 64, 0u);
    EXPECT_EQ(h->gguf_alignment, 64u);
  }
  EXPECT_TRUE(Rejects(with(G().head(1, 1).kv_u32("general.alignment", 0)), Rule::kGgufAlignment));
  EXPECT_TRUE(Rejects(with(G().head(1, 1).kv_u32("general.alignment", 48)), Rule::kGgufAlignment));
  EXPECT_TRUE(Rejects(with(G().head(1, 1).str("general.alignment").u32(10).u64(32)),
                      Rule::kGgufAlignment, "type"));
}

TEST(Gguf, TensorNamesAreUnique) {
  G g;
  g.head(2, 0).info("w", {4}, 0, 0).info("w", {4}, 0, 32).pad();
  EXPECT_TRUE(Rejects(g.zeros(64).b, Rule::kGgufTensorName, "duplicate tensor name `w`"));
  G ok;
  ok.head(2, 0).info("w", {4}, 0, 0).info("W", {4}, 0, 32).pad();
  EXPECT_TRUE(Accepts(ok.zeros(64).b));
}

TEST(Gguf, Shapes) {
  auto file = [](std::vector<std::uint64_t> ne, std::uint32_t type = 0, std::size_t data = 0) {
    G g;
    g.head(1, 0).info("w", std::move(ne), type, 0).pad();
    return g.zeros(data).b;
  };
  EXPECT_TRUE(Accepts(file({2, 3, 4, 5}, 0, 480)));
  EXPECT_TRUE(Rejects(file({1, 1, 1, 1, 1}, 0, 4), Rule::kGgufShape, "5 dimensions"));
  EXPECT_TRUE(Rejects(file({1ULL << 63}, 0, 0), Rule::kGgufShape, "negative"));
  EXPECT_TRUE(Rejects(file({1ULL << 32, 1ULL << 32}, 0, 0), Rule::kGgufShape, "2^63"));
  EXPECT_TRUE(Rejects(file({1ULL << 62}, 0, 0), Rule::kGgufShape, "2^64 bytes"));
  // A zero dimension is an empty tensor, as ggml allows; no dimensions is a scalar.
  EXPECT_TRUE(Accepts(file({0, 7})));
  auto scalar = parse(file({}, 0, 4));
  ASSERT_TRUE(scalar);
  EXPECT_TRUE(scalar->tensors[0].shape.empty());
  EXPECT_EQ(scalar->tensors[0].size(), 4u);
}

TEST(Gguf, TypesAndBlocks) {
  auto file = [](std::uint32_t type, std::uint64_t ne0, std::size_t data) {
    G g;
    g.head(1, 0).info("w", {ne0}, type, 0).pad();
    return g.zeros(data).b;
  };
  EXPECT_TRUE(Rejects(file(4, 32, 64), Rule::kGgufType, "unknown ggml type 4"));
  EXPECT_TRUE(Rejects(file(31, 32, 64), Rule::kGgufType));
  EXPECT_TRUE(Rejects(file(kGgmlTypeCount, 32, 64), Rule::kGgufType));
  EXPECT_TRUE(Rejects(file(0xffffffffu, 32, 64), Rule::kGgufType));
  EXPECT_TRUE(Rejects(file(2, 33, 64), Rule::kGgufBlockSize, "multiple of its block of 32"));
  EXPECT_TRUE(Accepts(file(2, 64, 36)));
  // Every type the table has: one block row, its size from the table.
  int known = 0;
  for (std::uint32_t id = 0; id < kGgmlTypeCount; ++id) {
    const GgmlType* t = ggml_type(id);
    if (!t) continue;
    ++known;
    auto h = parse(file(id, t->block * 2, 2 * t->type_size));
    ASSERT_TRUE(h) << t->name << ": " << h.error().message;
    EXPECT_EQ(h->tensors[0].size(), 2u * t->type_size) << t->name;
    EXPECT_EQ(type_name(h->tensors[0]), t->name);
  }
  EXPECT_EQ(known, 35);  // ids 0-42 less the eight removed
}

TEST(Gguf, OffsetsFollowLlamaCpp) {
  auto two = [](std::uint64_t second) {
    G g;
    g.head(2, 0).info("a", {5}, 0, 0).info("b", {4}, 0, second).pad();
    return g.zeros(96).b;
  };
  EXPECT_TRUE(Accepts(two(32)));  // 20 bytes padded to 32
  EXPECT_TRUE(Rejects(two(16), Rule::kGgufOffset, "expected 32"));   // overlaps
  EXPECT_TRUE(Rejects(two(20), Rule::kGgufOffset, "expected 32"));   // misaligned
  EXPECT_TRUE(Rejects(two(64), Rule::kGgufOffset, "expected 32"));   // a hole
  G first;
  first.head(1, 0).info("a", {4}, 0, 32).pad();
  EXPECT_TRUE(Rejects(first.zeros(64).b, Rule::kGgufOffset, "expected 0"));
}

TEST(Gguf, TensorsLieInsideTheFile) {
  G g;
  g.head(1, 0).info("w", {4}, 0, 0).pad();
  EXPECT_TRUE(Accepts(g.b + std::string(16, '\0')));
  EXPECT_TRUE(Accepts(g.b + std::string(100, '\0')));  // trailing bytes, as llama.cpp
  EXPECT_TRUE(Rejects(g.b + std::string(15, '\0'), Rule::kGgufOutOfBounds, "ends past the end"));
  // The data section itself past the end: the padding is missing.
  G h;
  h.head(1, 0).info("w", {0}, 0, 0);
  EXPECT_TRUE(Rejects(h.b, Rule::kGgufOutOfBounds, "data section"));
}

TEST(Gguf, TheTensorLimitHolds) {
  G g;
  g.head(2, 0).info("a", {4}, 0, 0).info("b", {4}, 0, 32).pad();
  Limits one;
  one.max_tensors = 1;
  auto r = parse(g.zeros(64).b, one);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().rule, Rule::kTooManyTensors);
}

TEST(Gguf, HeaderJsonNamesTheInfos) {
  G g;
  g.head(1, 0).info("a\"b", {8, 2}, 1, 0).pad();
  auto h = parse(g.zeros(32).b);
  ASSERT_TRUE(h);
  EXPECT_EQ(header_json(*h),
            "{\"gguf_version\":3,\"alignment\":32,\"data_offset\":" +
                std::to_string(h->data_start()) +
                ",\"tensors\":{\"a\\\"b\":{\"dtype\":\"F16\",\"shape\":[2,8],"
                "\"data_offsets\":[0,32]}}}\n");
  EXPECT_EQ(metadata_json(*h), "{}\n");
}

}  // namespace
}  // namespace stfs
