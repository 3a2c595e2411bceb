// Parser rules, one test per rule of SAFETENSORS.md §4 and §7: a file that
// breaks the rule, rejected with that rule, and a near neighbour accepted.
// Every file is written here, byte by byte.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "parse_checks.hpp"
#include "st_writer.hpp"
#include "stfs/namespace/names.hpp"
#include "stfs/format/safetensors.hpp"

namespace stfs {
namespace {

using test::pattern_bytes;
using test::Spec;
using test::st_bytes;
using test::st_bytes_with_len;
using test::st_file;

constexpr std::uint64_t kMaxU64 = 18446744073709551615ULL;

std::vector<std::uint64_t> vec(std::span<const std::uint64_t> s) { return {s.begin(), s.end()}; }

Result<Header, ParseError> parse(const std::string& bytes, const Limits& limits = {}) {
  test::maybe_dump_seed(bytes, "STFS_SEED_DIR");
  return parse_header(bytes, bytes.size(), limits);
}

::testing::AssertionResult Rejects(const std::string& bytes, Rule rule,
                                   std::string_view needle = "") {
  return test::refused_with(parse(bytes), rule, needle);
}

::testing::AssertionResult Accepts(const std::string& bytes) {
  auto r = parse(bytes);
  if (!r) {
    return ::testing::AssertionFailure()
           << "rejected: " << r.error().message << " [" << rule_name(r.error().rule) << "]";
  }
  return ::testing::AssertionSuccess();
}

// A header whose one tensor "t" holds `data`, with the given entry JSON.
std::string one(std::string_view entry, std::string_view data) {
  return st_bytes(std::string(R"({"t":)") + std::string(entry) + "}", data);
}

std::string nested(int levels) {
  return std::string(static_cast<std::size_t>(levels), '[') +
         std::string(static_cast<std::size_t>(levels), ']');
}

// ---- step 1: at least 8 bytes ----
TEST(Step1HeaderTooSmall, FilesShorterThanEightBytes) {
  for (std::size_t n = 0; n < 8; ++n) {
    EXPECT_TRUE(Rejects(std::string(n, '\0'), Rule::kHeaderTooSmall, "header too small")) << n;
  }
}

TEST(Step1HeaderTooSmall, EightBytesWithLengthZeroPassesToJson) {
  // N = 0: steps 1-4 pass, the empty header is not JSON.
  EXPECT_TRUE(Rejects(st_bytes(""), Rule::kInvalidJson));
  EXPECT_TRUE(Accepts(st_bytes("{}")));
}

TEST(Step1HeaderTooSmall, HeaderLengthOne) {
  EXPECT_TRUE(Rejects(st_bytes("{"), Rule::kInvalidJson));
  EXPECT_TRUE(Rejects(st_bytes(" "), Rule::kInvalidJson));
}

// ---- step 2: N <= 100,000,000, before the file size ----
TEST(Step2HeaderTooLarge, JustOverTheLimitIsRejectedBeforeTheFileSize) {
  EXPECT_TRUE(
      Rejects(st_bytes_with_len(100'000'001, "{}", ""), Rule::kHeaderTooLarge, "header too large"));
  EXPECT_TRUE(Rejects(st_bytes_with_len(kMaxU64, "{}", ""), Rule::kHeaderTooLarge));
  // Exactly the limit passes step 2 and fails step 3 on this small file.
  EXPECT_TRUE(Rejects(st_bytes_with_len(100'000'000, "{}", ""), Rule::kInvalidHeaderLength));
}

TEST(Step2HeaderTooLarge, ConfigurableCap) {
  Limits l;
  l.max_header = 4;
  auto r = parse(st_bytes("{}      "), l);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().rule, Rule::kHeaderTooLarge);
  EXPECT_TRUE(parse(st_bytes("{}  "), l));
}

// ---- step 3: 8 + N <= file length ----
TEST(Step3InvalidHeaderLength, PastTheEndOfFile) {
  EXPECT_TRUE(
      Rejects(st_bytes_with_len(3, "{}", ""), Rule::kInvalidHeaderLength, "invalid header length"));
  EXPECT_TRUE(Rejects(st_bytes_with_len(1000, "{}", ""), Rule::kInvalidHeaderLength));
  EXPECT_TRUE(Accepts(st_bytes_with_len(2, "{}", "")));
}

// ---- step 4: UTF-8, padding included ----
TEST(Step4InvalidUtf8, BadBytesAnywhereInTheHeader) {
  for (const char* bad : {"\xff", "\xC0\xAF", "\xED\xA0\x80", "\xE2\x82", "\x80"}) {
    EXPECT_TRUE(
        Rejects(st_bytes(std::string("{}") + bad), Rule::kInvalidUtf8, "invalid UTF-8 in header"));
    EXPECT_TRUE(Rejects(st_bytes(std::string(R"({"__metadata__":{"a":")") + bad + "\"}}"),
                        Rule::kInvalidUtf8));
  }
  // UTF-8 is checked before JSON: an invalid byte inside an invalid JSON text
  // still reports UTF-8.
  EXPECT_TRUE(Rejects(st_bytes("\xff{"), Rule::kInvalidUtf8));
}

TEST(Step4InvalidUtf8, MultibyteNamesAreFine) {
  auto f = st_file({{"caf\xC3\xA9.\xE2\x82\xAC.\xF0\x9F\x98\x80", "U8", {1}, "x"}});
  auto r = parse(f);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->tensors[0].name, "caf\xC3\xA9.\xE2\x82\xAC.\xF0\x9F\x98\x80");
}

// ---- step 5: JSON ----
TEST(Step5InvalidJson, SyntaxAndShape) {
  for (const char* h : {R"({"a":})", R"({"a")", R"([])", R"("s")", "null", "1",
                        R"({"t":{"dtype":"U8","shape":[],"data_offsets":[0,1]},})", "{} {}", "{}x",
                        "{}]", "{,}", "{'a':1}"}) {
    EXPECT_TRUE(Rejects(st_bytes(h, "x"), Rule::kInvalidJson, "invalid JSON in header")) << h;
  }
}

TEST(Step5InvalidJson, WhitespaceAroundTheObjectIsAccepted) {
  EXPECT_TRUE(Accepts(st_bytes(" \t\r\n{}")));
  EXPECT_TRUE(Accepts(st_bytes("{}   \n\t")));
  EXPECT_TRUE(
      Accepts(st_bytes("\n  {\"t\":{\"dtype\":\"U8\",\"shape\":[1],"
                       "\"data_offsets\":[0,1]}}  ",
                       "x")));
}

TEST(Step5InvalidJson, NulPaddingAndByteOrderMarkAreRejected) {
  EXPECT_TRUE(Rejects(st_bytes(std::string("{}\0\0\0\0\0\0", 8)), Rule::kInvalidJson));
  EXPECT_TRUE(Rejects(st_bytes("\xEF\xBB\xBF{}"), Rule::kInvalidJson));
  EXPECT_TRUE(Rejects(st_bytes(std::string("\0{}", 3)), Rule::kInvalidJson));
}

TEST(Step5InvalidJson, MissingFields) {
  EXPECT_TRUE(Rejects(one(R"({"shape":[1],"data_offsets":[0,1]})", "x"), Rule::kInvalidJson,
                      "missing field `dtype`"));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"U8","data_offsets":[0,1]})", "x"), Rule::kInvalidJson,
                      "missing field `shape`"));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"U8","shape":[1]})", "x"), Rule::kInvalidJson,
                      "missing field `data_offsets`"));
  EXPECT_TRUE(Accepts(one(R"({"data_offsets":[0,1],"shape":[1],"dtype":"U8"})", "x")));
}

TEST(Step5InvalidJson, WrongTypes) {
  for (const char* e :
       {R"("x")", "[]", "null", "1", R"({"dtype":5,"shape":[1],"data_offsets":[0,1]})",
        R"({"dtype":"U8","shape":"1","data_offsets":[0,1]})",
        R"({"dtype":"U8","shape":{"a":1},"data_offsets":[0,1]})",
        R"({"dtype":"U8","shape":[1],"data_offsets":"0,1"})",
        R"({"dtype":"U8","shape":[[1]],"data_offsets":[0,1]})",
        R"({"dtype":"U8","shape":[true],"data_offsets":[0,1]})",
        R"({"dtype":"U8","shape":[null],"data_offsets":[0,1]})",
        R"({"dtype":"U8","shape":[1],"data_offsets":[0]})",
        R"({"dtype":"U8","shape":[1],"data_offsets":[0,1,1]})",
        R"({"dtype":"U8","shape":[1],"data_offsets":[]})"}) {
    EXPECT_TRUE(Rejects(one(e, "x"), Rule::kInvalidJson)) << e;
  }
}

TEST(Step5InvalidJson, IntegersMustBeExactUnsigned64) {
  for (const char* n : {"-1", "-0", "4.0", "4e0", "4E0", "0.5", "01", "00", "1.", "+1",
                        "18446744073709551616", "99999999999999999999", "\"1\"", "0x1"}) {
    std::string e = std::string(R"({"dtype":"U8","shape":[)") + n + R"(],"data_offsets":[0,0]})";
    EXPECT_TRUE(Rejects(one(e, ""), Rule::kInvalidJson)) << n;
    std::string o = std::string(R"({"dtype":"U8","shape":[0],"data_offsets":[0,)") + n + "]}";
    EXPECT_TRUE(Rejects(one(o, ""), Rule::kInvalidJson)) << n;
  }
  // Neighbours: the largest value, exactly, with a zero dimension.
  auto r =
      parse(one(R"({"dtype":"U8","shape":[0,18446744073709551615],"data_offsets":[0,0]})", ""));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(vec(r->tensors[0].shape), (std::vector<std::uint64_t>{0, kMaxU64}));
  // 2^53 + 1 would lose its last digit through double.
  r = parse(one(R"({"dtype":"U8","shape":[0, 9007199254740993 ],"data_offsets":[0,0]})", ""));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->tensors[0].shape[1], 9007199254740993ULL);
}

TEST(Step5InvalidJson, UnknownDtypes) {
  for (const char* d : {"bf16", "F8_E4M3FN", "I4", "C128", "", "F32 "}) {
    std::string e = std::string(R"({"dtype":")") + d + R"(","shape":[1],"data_offsets":[0,1]})";
    EXPECT_TRUE(Rejects(one(e, "x"), Rule::kInvalidJson, "unknown dtype")) << d;
  }
}

TEST(Section7DtypeString, MapFormIsRefused) {
  // The reference takes {"U8": null} through serde's enum-as-map form.
  EXPECT_TRUE(Rejects(one(R"({"dtype":{"U8":null},"shape":[1],"data_offsets":[0,1]})", "x"),
                      Rule::kInvalidJson, "dtype is not a string"));
  EXPECT_TRUE(Accepts(one(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})", "x")));
  // An escaped spelling is the same string once unescaped.
  EXPECT_TRUE(Accepts(one(R"({"dtype":"\u0055\u0038","shape":[1],"data_offsets":[0,1]})", "x")));
}

TEST(Step5InvalidJson, StringsMustBeValidUnicode) {
  EXPECT_TRUE(Rejects(st_bytes(R"({"\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})"),
                      Rule::kInvalidJson));
  EXPECT_TRUE(Rejects(st_bytes(R"({"\udc00":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})"),
                      Rule::kInvalidJson));
  EXPECT_TRUE(Rejects(st_bytes(R"({"__metadata__":{"a":"\ud800x"}})"), Rule::kInvalidJson));
  EXPECT_TRUE(Rejects(st_bytes(R"({"a\q":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})"),
                      Rule::kInvalidJson));
  // Raw control characters must be escaped.
  EXPECT_TRUE(Rejects(st_bytes("{\"a\x01\":{\"dtype\":\"U8\",\"shape\":[0],"
                               "\"data_offsets\":[0,0]}}"),
                      Rule::kInvalidJson));
  auto r = parse(
      st_bytes(R"({"\ud83d\ude00\u0001\"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->tensors[0].name, "\xF0\x9F\x98\x80\x01\"");
}

TEST(Step5InvalidJson, DepthLimitAppliesInsideUnknownFields) {
  // Top-level object and entry are levels 1 and 2; serde_json refuses level 128.
  auto with_extra = [](const std::string& v) {
    return one(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":)" + v + "}", "x");
  };
  EXPECT_TRUE(Accepts(with_extra(nested(125))));
  EXPECT_TRUE(Rejects(with_extra(nested(126)), Rule::kInvalidJson, "recursion limit"));
  std::string objs;
  for (int i = 0; i < 125; ++i) objs += R"({"k":)";
  objs += "1" + std::string(125, '}');
  EXPECT_TRUE(Accepts(with_extra(objs)));
  EXPECT_TRUE(Rejects(with_extra("[" + objs + "]"), Rule::kInvalidJson));
}

TEST(Step5InvalidJson, DepthBombsAreRefusedWithoutCrashing) {
  for (int n : {1000, 100000, 2000000}) {
    auto with_extra = one(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":)" +
                              std::string(static_cast<std::size_t>(n), '[') + "}",
                          "x");
    EXPECT_TRUE(Rejects(with_extra, Rule::kInvalidJson)) << n;
    EXPECT_TRUE(
        Rejects(st_bytes(std::string(static_cast<std::size_t>(n), '{')), Rule::kInvalidJson));
    EXPECT_TRUE(Rejects(st_bytes(nested(n)), Rule::kInvalidJson));
  }
}

TEST(Step5InvalidJson, UnknownFieldsAreValidatedAndIgnored) {
  EXPECT_TRUE(Accepts(one(
      R"({"dtype":"U8","extra":{"a":[1,-2.5e3,true,false,null,"s\n"],"b":{}},"shape":[1],"data_offsets":[0,1],"z":[]})",
      "x")));
  for (const char* bad : {"NaN", "Infinity", "-", "1.e", "tru", "nul", "\"\\x\"", "[1,]", "{\"a\"}",
                          "01", "1e400", "'s'"}) {
    EXPECT_TRUE(Rejects(
        one(std::string(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":)") + bad + "}", "x"),
        Rule::kInvalidJson))
        << bad;
  }
}

TEST(Step5InvalidJson, HugeIntegersInUnknownFieldsAreAcceptedAsTheReferenceDoes) {
  // serde_json reads integers past 64 bits as doubles while they are finite.
  for (const char* n : {"18446744073709551616", "-9223372036854775809",
                        "123456789012345678901234567890", "1e308", "-1.5e-320"}) {
    EXPECT_TRUE(Accepts(
        one(std::string(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":)") + n + "}", "x")))
        << n;
  }
  // ...but not when they overflow a double, nor in shape or data_offsets.
  EXPECT_TRUE(Rejects(one(std::string(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1)") +
                              std::string(400, '0') + "}",
                          "x"),
                      Rule::kInvalidJson));
  EXPECT_TRUE(
      Rejects(one(R"({"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,1]})", "x"),
              Rule::kInvalidJson));
}

TEST(Step5InvalidJson, MetadataMustBeStringsOrNull) {
  auto r = parse(st_bytes(R"({"__metadata__":null})"));
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->has_metadata);
  r = parse(st_bytes(R"({"__metadata__":{}})"));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->has_metadata);
  EXPECT_TRUE(r->metadata.empty());
  r = parse(st_bytes(R"({"__metadata__":{"":"","format":"pt","b":"\u00e9\"x"}})"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->metadata.size(), 3u);
  EXPECT_EQ(r->metadata[0], (std::pair<std::string, std::string>{"", ""}));
  EXPECT_EQ(r->metadata[1], (std::pair<std::string, std::string>{"b", "\xC3\xA9\"x"}));
  EXPECT_EQ(r->metadata[2], (std::pair<std::string, std::string>{"format", "pt"}));
  for (const char* m : {R"({"a":1})", R"({"a":null})", R"({"a":["x"]})", R"({"a":{}})", R"(["a"])",
                        R"("pt")", "1", "true"}) {
    EXPECT_TRUE(Rejects(st_bytes(std::string(R"({"__metadata__":)") + m + "}"), Rule::kInvalidJson))
        << m;
  }
}

TEST(Step5InvalidJson, TensorNamedMetadataCannotExist) {
  EXPECT_TRUE(
      Rejects(st_bytes(R"({"__metadata__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"),
              Rule::kInvalidJson));
  // Not the exact key: an ordinary tensor.
  EXPECT_TRUE(Accepts(
      st_bytes(R"({"__Metadata__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x")));
}

// ---- §7.1: duplicate keys everywhere ----
TEST(Section7Duplicates, DuplicateMetadataKeyAndEntryFields) {
  EXPECT_TRUE(Rejects(st_bytes(R"({"__metadata__":{},"__metadata__":{}})"), Rule::kInvalidJson,
                      "duplicate"));
  EXPECT_TRUE(
      Rejects(st_bytes(R"({"__metadata__":null,"__metadata__":null})"), Rule::kInvalidJson));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]})", "x"),
                      Rule::kInvalidJson, "duplicate field `dtype`"));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"U8","shape":[1],"shape":[1],"data_offsets":[0,1]})", "x"),
                      Rule::kInvalidJson, "duplicate"));
  EXPECT_TRUE(
      Rejects(one(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"data_offsets":[0,1]})", "x"),
              Rule::kInvalidJson, "duplicate"));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1,"x":2})", "x"),
                      Rule::kInvalidJson, "duplicate"));
  EXPECT_TRUE(
      Rejects(one(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":{"a":1,"a":1}})", "x"),
              Rule::kInvalidJson, "duplicate"));
  EXPECT_TRUE(
      Rejects(one(R"({"dtype":"U8","\u0064type":"U8","shape":[1],"data_offsets":[0,1]})", "x"),
              Rule::kInvalidJson, "duplicate"));
  EXPECT_TRUE(
      Accepts(one(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":{"a":1,"b":1}})", "x")));
}

TEST(Section7Duplicates, DuplicateTensorNamesAfterUnescaping) {
  const char* entry = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  // The reference keeps the last of two identical entries; we refuse.
  EXPECT_TRUE(Rejects(st_bytes(std::string(R"({"w":)") + entry + R"(,"w":)" + entry + "}", "x"),
                      Rule::kInvalidJson, "duplicate tensor name `w`"));
  EXPECT_TRUE(
      Rejects(st_bytes(std::string(R"({"w":)") + entry + R"(,"\u0077":)" + entry + "}", "x"),
              Rule::kInvalidJson, "duplicate tensor name"));
  EXPECT_TRUE(Accepts(st_bytes(
      std::string(R"({"w":)") + entry + R"(,"W":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
      "xy")));
}

TEST(Section7Duplicates, DuplicateKeysInMetadata) {
  EXPECT_TRUE(Rejects(st_bytes(R"({"__metadata__":{"a":"1","a":"2"}})"), Rule::kInvalidJson,
                      "duplicate key `a` in __metadata__"));
  EXPECT_TRUE(Rejects(st_bytes(R"({"__metadata__":{"a":"1","\u0061":"1"}})"), Rule::kInvalidJson));
  EXPECT_TRUE(Accepts(st_bytes(R"({"__metadata__":{"a":"1","A":"2"}})")));
}

TEST(Section7Limits, TensorCountCap) {
  auto f = st_file({{"a", "U8", {1}, "1"}, {"b", "U8", {1}, "2"}, {"c", "U8", {1}, "3"}});
  Limits l;
  l.max_tensors = 2;
  auto r = parse(f, l);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().rule, Rule::kTooManyTensors);
  l.max_tensors = 3;
  EXPECT_TRUE(parse(f, l));
}

// ---- step 6: offsets, shapes, sizes ----
TEST(Step6InvalidOffset, HolesOverlapsAndAliasing) {
  auto two = [](const char* a, const char* b, std::string_view data) {
    return st_bytes(std::string(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":)") + a +
                        R"(},"b":{"dtype":"U8","shape":[2],"data_offsets":)" + b + "}}",
                    data);
  };
  EXPECT_TRUE(Accepts(two("[0,2]", "[2,4]", "abcd")));
  EXPECT_TRUE(Accepts(two("[2,4]", "[0,2]", "abcd")));  // out of JSON order, contiguous
  EXPECT_TRUE(Rejects(two("[1,3]", "[3,5]", "abcde"), Rule::kInvalidOffset,
                      "invalid offset for tensor `a`"));  // does not start at 0
  EXPECT_TRUE(Rejects(two("[0,2]", "[3,5]", "abcde"), Rule::kInvalidOffset, "`b`"));  // hole
  EXPECT_TRUE(Rejects(two("[0,2]", "[1,3]", "abc"), Rule::kInvalidOffset, "`b`"));    // overlap
  EXPECT_TRUE(Rejects(two("[0,2]", "[0,2]", "ab"), Rule::kInvalidOffset));            // alias
  EXPECT_TRUE(Rejects(one(R"({"dtype":"U8","shape":[0],"data_offsets":[1,0]})", "x"),
                      Rule::kInvalidOffset));  // end<begin
}

TEST(Step6InvalidOffset, EmptyTensorsAtAnyBoundary) {
  auto f = st_bytes(R"({"e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                    R"("e1":{"dtype":"F32","shape":[3,0],"data_offsets":[0,0]},)"
                    R"("a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                    R"("e2":{"dtype":"BF16","shape":[0,5],"data_offsets":[2,2]},)"
                    R"("e3":{"dtype":"F4","shape":[0],"data_offsets":[2,2]}})",
                    "ab");
  auto r = parse(f);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->tensors.size(), 5u);
  // An empty tensor off the chain is refused.
  EXPECT_TRUE(Rejects(st_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                               R"("e":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}})",
                               "ab"),
                      Rule::kInvalidOffset, "`e`"));
  EXPECT_TRUE(Rejects(st_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                               R"("e":{"dtype":"U8","shape":[0],"data_offsets":[3,3]}})",
                               "ab"),
                      Rule::kInvalidOffset));
}

TEST(Step6ValidationOverflow, LeftToRightProduct) {
  EXPECT_TRUE(Rejects(
      one(R"({"dtype":"U8","shape":[18446744073709551615,18446744073709551615,0],"data_offsets":[0,0]})",
          ""),
      Rule::kValidationOverflow));
  EXPECT_TRUE(Accepts(one(
      R"({"dtype":"U8","shape":[0,18446744073709551615,18446744073709551615],"data_offsets":[0,0]})",
      "")));
  EXPECT_TRUE(
      Rejects(one(R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]})", ""),
              Rule::kValidationOverflow));
}

TEST(Step6ValidationOverflow, CountedInBits) {
  // 2^61 bytes fit in 64 bits; 2^64 bits do not.
  EXPECT_TRUE(
      Rejects(one(R"({"dtype":"U8","shape":[2305843009213693952],"data_offsets":[0,0]})", ""),
              Rule::kValidationOverflow, "bit count"));
  // 2^61 - 1 bytes: bits fit, the size does not match this small file.
  EXPECT_TRUE(
      Rejects(one(R"({"dtype":"U8","shape":[2305843009213693951],"data_offsets":[0,1]})", "x"),
              Rule::kTensorInvalidInfo));
}

TEST(Step6MisalignedSlice, SubByteTypesCountBits) {
  // F4 [3] = 12 bits: refused even with 2 bytes of data.
  EXPECT_TRUE(Rejects(one(R"({"dtype":"F4","shape":[3],"data_offsets":[0,2]})", "ab"),
                      Rule::kMisalignedSlice));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"F4","shape":[],"data_offsets":[0,1]})", "a"),
                      Rule::kMisalignedSlice));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"F6_E2M3","shape":[3],"data_offsets":[0,3]})", "abc"),
                      Rule::kMisalignedSlice));
  EXPECT_TRUE(Accepts(one(R"({"dtype":"F4","shape":[2,3],"data_offsets":[0,3]})", "abc")));
  EXPECT_TRUE(Accepts(one(R"({"dtype":"F4","shape":[2],"data_offsets":[0,1]})", "a")));
  EXPECT_TRUE(Accepts(one(R"({"dtype":"F6_E2M3","shape":[4],"data_offsets":[0,3]})", "abc")));
  EXPECT_TRUE(
      Accepts(one(R"({"dtype":"F6_E3M2","shape":[2,2,2],"data_offsets":[0,6]})", "abcdef")));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"F6_E3M2","shape":[4],"data_offsets":[0,4]})", "abcd"),
                      Rule::kTensorInvalidInfo));
}

TEST(Step6TensorInvalidInfo, EveryDtypeWithRightAndWrongSizes) {
  const std::pair<const char*, unsigned> dtypes[] = {
      {"BOOL", 8},    {"U8", 8},          {"I8", 8},          {"F8_E5M2", 8}, {"F8_E4M3", 8},
      {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16},    {"U16", 16},
      {"F16", 16},    {"BF16", 16},       {"I32", 32},        {"U32", 32},    {"F32", 32},
      {"I64", 64},    {"U64", 64},        {"F64", 64},        {"C64", 64},    {"F6_E2M3", 6},
      {"F6_E3M2", 6}, {"F4", 4},
  };
  for (auto [d, bits] : dtypes) {
    std::size_t bytes = 8 * bits / 8;  // shape [2,4]: 8 elements
    auto good = st_file({{"t", d, {2, 4}, pattern_bytes(bytes, bits)}});
    auto r = parse(good);
    ASSERT_TRUE(r) << d << ": " << r.error().message;
    EXPECT_EQ(dtype_name(r->tensors[0].dtype), d);
    EXPECT_EQ(r->tensors[0].size(), bytes);
    auto bad = st_file({{"t", d, {2, 4}, pattern_bytes(bytes + 1, bits)}});
    EXPECT_TRUE(Rejects(bad, Rule::kTensorInvalidInfo,
                        "invalid shape, data type, or offset for tensor `t`"))
        << d;
  }
}

TEST(Step6TensorInvalidInfo, Scalars) {
  EXPECT_TRUE(Accepts(one(R"({"dtype":"F32","shape":[],"data_offsets":[0,4]})", "abcd")));
  EXPECT_TRUE(Accepts(one(R"({"dtype":"BOOL","shape":[],"data_offsets":[0,1]})", "\x01")));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"F32","shape":[],"data_offsets":[0,0]})", ""),
                      Rule::kTensorInvalidInfo));
  EXPECT_TRUE(Rejects(one(R"({"dtype":"F64","shape":[],"data_offsets":[0,4]})", "abcd"),
                      Rule::kTensorInvalidInfo));
}

// ---- step 7: the file ends where the last tensor ends ----
TEST(Step7MetadataIncompleteBuffer, TrailingBytesAndTruncation) {
  auto good = st_file({{"t", "F16", {2}, "abcd"}});
  EXPECT_TRUE(Accepts(good));
  EXPECT_TRUE(Rejects(good + "x", Rule::kMetadataIncompleteBuffer,
                      "incomplete metadata, file not fully covered"));
  EXPECT_TRUE(Rejects(good.substr(0, good.size() - 1), Rule::kMetadataIncompleteBuffer));
  EXPECT_TRUE(Rejects(st_bytes("{}", "x"), Rule::kMetadataIncompleteBuffer));
  // Trailing bytes on a file whose header was claimed short: the rest of the
  // header counts as data.
  EXPECT_TRUE(Rejects(st_bytes_with_len(2, "{}  ", ""), Rule::kMetadataIncompleteBuffer));
}

TEST(Step7MetadataIncompleteBuffer, ChainEndNearTwoToThe64DoesNotWrap) {
  // Eight tensors of 2^61-1 bytes tile [0, 2^64-8): adding 8 + N wraps in
  // the reference's release build; here the checked add reports step 7.
  std::string h = "{";
  std::uint64_t step = (1ULL << 61) - 1;
  for (int i = 0; i < 8; ++i) {
    if (i) h += ",";
    h += "\"t" + std::to_string(i) + R"(":{"dtype":"U8","shape":[)" + std::to_string(step) +
         R"(],"data_offsets":[)" + std::to_string(step * i) + "," + std::to_string(step * (i + 1)) +
         "]}";
  }
  h += "}";
  EXPECT_TRUE(Rejects(st_bytes(h), Rule::kMetadataIncompleteBuffer));
}

// ---- the result itself ----
TEST(ParseResult, EntriesInHeaderOrderWithExactValues) {
  auto f = st_file({{"z.weight", "BF16", {2, 2}, pattern_bytes(8, 1)},
                    {"a.bias", "F32", {3}, pattern_bytes(12, 2)},
                    {"m", "I64", {}, pattern_bytes(8, 3)}},
                   R"({"format":"pt"})");
  auto r = parse(f);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->tensors.size(), 3u);
  EXPECT_EQ(r->tensors[0].name, "z.weight");
  EXPECT_EQ(r->tensors[0].dtype, Dtype::kBF16);
  EXPECT_EQ(vec(r->tensors[0].shape), (std::vector<std::uint64_t>{2, 2}));
  EXPECT_EQ(r->tensors[0].begin, 0u);
  EXPECT_EQ(r->tensors[0].end, 8u);
  EXPECT_EQ(r->tensors[1].name, "a.bias");
  EXPECT_EQ(r->tensors[1].begin, 8u);
  EXPECT_EQ(r->tensors[1].end, 20u);
  EXPECT_EQ(r->tensors[2].name, "m");
  EXPECT_TRUE(r->tensors[2].shape.empty());
  EXPECT_EQ(r->tensors[2].begin, 20u);
  EXPECT_EQ(r->data_start() + 28, f.size());
  EXPECT_EQ(dtype_summary(*r), "BF16,F32,I64");
  ASSERT_EQ(r->metadata.size(), 1u);
  EXPECT_EQ(r->metadata[0].second, "pt");
}

TEST(ParseResult, EmptyHeaderAndMetadataOnly) {
  auto r = parse(st_bytes("{}      "));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->tensors.empty());
  EXPECT_FALSE(r->has_metadata);
  r = parse(st_bytes(R"({"__metadata__":{"a":"b"}})"));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->tensors.empty());
  EXPECT_EQ(dtype_summary(*r), "");
}

}  // namespace
}  // namespace stfs
