// Name mapping, DESIGN.md §3, checked against the rules spelled out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "stfs/namespace/names.hpp"

namespace stfs {
namespace {

const std::vector<std::string_view> kReserved = {kHeaderFile, kMetadataFile};

std::string enc(std::string_view s) { return encode_name(s, kReserved); }

TEST(Names, OrdinaryNamesAreUnchanged) {
  EXPECT_EQ(enc("model.layers.0.self_attn.q_proj.weight"),
            "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(enc("-rf"), "-rf");
  EXPECT_EQ(enc("caf\xC3\xA9 \\ :*?\"<>|"), "caf\xC3\xA9 \\ :*?\"<>|");
  EXPECT_EQ(enc("..."), "...");
  EXPECT_EQ(enc(".hidden"), ".hidden");
}

TEST(Names, SpecialNames) {
  EXPECT_EQ(enc(""), "%");
  EXPECT_EQ(enc("."), "%2E");
  EXPECT_EQ(enc(".."), "%2E%2E");
}

TEST(Names, EscapedBytes) {
  EXPECT_EQ(enc("/"), "%2F");
  EXPECT_EQ(enc("a/b"), "a%2Fb");
  EXPECT_EQ(enc("%"), "%25");
  EXPECT_EQ(enc("a%2Fb"), "a%252Fb");
  EXPECT_EQ(enc(std::string("a\0b", 3)), "a%00b");
  EXPECT_EQ(enc("\x01\x1f\x7f\x20"), "%01%1F%7F ");
  EXPECT_EQ(enc("\n\t"), "%0A%09");
  EXPECT_EQ(enc("../etc/passwd"), "..%2Fetc%2Fpasswd");
}

TEST(Names, ReservedNamesGetTheirFirstByteEncoded) {
  EXPECT_EQ(enc("__header__.json"), "%5F_header__.json");
  EXPECT_EQ(enc("__metadata__.json"), "%5F_metadata__.json");
  EXPECT_EQ(enc("__header__.json2"), "__header__.json2");
  EXPECT_EQ(encode_name("x.npy", {"x.npy"}), "%78.npy");
}

TEST(Names, NamesThatCollideAfterNaiveEscapingStayDistinct) {
  std::vector<std::string_view> names = {"a/b", "a_b", "a%2Fb", "a%2fb", "A/B"};
  auto files = map_names(names, kReserved);
  ASSERT_TRUE(files) << files.error().message;
  EXPECT_EQ(*files, (std::vector<std::string>{"a%2Fb", "a_b", "a%252Fb", "a%252fb", "A%2FB"}));
}

TEST(Names, Fnv1a64KnownValues) {
  // Published FNV-1a 64 test vectors.
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
}

std::string hex16(std::uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

TEST(Names, ExactlyTwoHundredFiftyFiveBytesIsKept) {
  std::string n(255, 'x');
  EXPECT_EQ(enc(n), n);
  std::string m(85, '/');  // 255 bytes once encoded
  EXPECT_EQ(enc(m).size(), 255u);
}

TEST(Names, LongNamesGetAPrefixAndAHash) {
  std::string n300(300, 'w');
  std::string f = enc(n300);
  EXPECT_EQ(f, std::string(200, 'w') + "%~" + hex16(fnv1a64(n300)));
  EXPECT_EQ(f.size(), 218u);

  std::string n4200;
  for (int i = 0; n4200.size() < 4200; ++i) n4200 += "layer." + std::to_string(i) + ".";
  n4200.resize(4200);
  f = enc(n4200);
  EXPECT_EQ(f, n4200.substr(0, 200) + "%~" + hex16(fnv1a64(n4200)));
}

TEST(Names, PrefixNeverCutsAnEscapeOrAUtf8Sequence) {
  // 199 plain bytes then '/': the escape would end at byte 202, so it goes.
  std::string a = std::string(199, 'a') + "/" + std::string(100, 'b');
  EXPECT_EQ(enc(a), std::string(199, 'a') + "%~" + hex16(fnv1a64(a)));
  // 198 bytes then a 3-byte euro sign: 201 > 200, so it goes.
  std::string b = std::string(198, 'a') + "\xE2\x82\xAC" + std::string(100, 'b');
  EXPECT_EQ(enc(b), std::string(198, 'a') + "%~" + hex16(fnv1a64(b)));
  // 197 + 3 = 200 fits exactly.
  std::string c = std::string(197, 'a') + "\xE2\x82\xAC" + std::string(100, 'b');
  EXPECT_EQ(enc(c), std::string(197, 'a') + "\xE2\x82\xAC" + "%~" + hex16(fnv1a64(c)));
  // 4-byte sequences and escapes mixed.
  std::string d;
  for (int i = 0; i < 80; ++i) d += "\xF0\x9F\x98\x80/";
  // 28 units of 7 bytes (196), one more emoji (200), and the "%2F" would
  // pass 200.
  std::string want;
  for (int i = 0; i < 28; ++i) want += "\xF0\x9F\x98\x80%2F";
  want += "\xF0\x9F\x98\x80";
  EXPECT_EQ(enc(d), want + "%~" + hex16(fnv1a64(d)));
}

TEST(Names, HashedNamesThatCollideFailTheMapping) {
  // Hash collisions cannot be forged cheaply; identical names are the same
  // collision seen from map_names.
  std::string n(300, 'q');
  auto r = map_names({n, n}, kReserved);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, EEXIST);
  EXPECT_NE(r.error().message.find("map to the same file name"), std::string::npos);
  // Different long names with the same prefix do not collide.
  std::string m = n;
  m.back() = 'r';
  EXPECT_TRUE(map_names({n, m}, kReserved));
}

TEST(Names, DecodeInvertsTheMapping) {
  for (std::string_view s : {std::string_view(""), std::string_view("."), std::string_view(".."),
                             std::string_view("a/b%c"), std::string_view("__header__.json"),
                             std::string_view("\x01x\x7f"), std::string_view("plain")}) {
    std::string back;
    ASSERT_TRUE(decode_name(enc(s), back)) << s;
    EXPECT_EQ(back, s);
  }
  std::string back;
  EXPECT_FALSE(decode_name(enc(std::string(300, 'z')), back));
  EXPECT_FALSE(decode_name("%4", back));
  EXPECT_FALSE(decode_name("%zz", back));
}

TEST(Names, AllFileNamesAreSafe) {
  // Every byte value alone and in pairs: never '/', NUL, "." or "..", never
  // over 255 bytes, and all distinct.
  std::vector<std::string> owned;
  for (int a = 0; a < 256; ++a) {
    owned.emplace_back(1, static_cast<char>(a));
    for (int b : {0, int{'.'}, int{'/'}, int{'%'}, int{'a'}, 0x7f}) {
      owned.push_back(std::string(1, static_cast<char>(a)) + static_cast<char>(b));
    }
  }
  std::sort(owned.begin(), owned.end());
  owned.erase(std::unique(owned.begin(), owned.end()), owned.end());
  std::vector<std::string_view> names(owned.begin(), owned.end());
  auto files = map_names(names, kReserved);
  ASSERT_TRUE(files) << files.error().message;
  for (const std::string& f : *files) {
    EXPECT_EQ(f.find('/'), std::string::npos);
    EXPECT_EQ(f.find('\0'), std::string::npos);
    EXPECT_NE(f, ".");
    EXPECT_NE(f, "..");
    EXPECT_FALSE(f.empty());
  }
}

}  // namespace
}  // namespace stfs

namespace stfs {
namespace {

TEST(NamesWithSuffix, ShortenedAfterTheSuffixSoTheSuffixSurvives) {
  for (std::size_t n = 240; n <= 260; ++n) {
    const std::string name(n, 'a');
    const std::string f = encode_name_with_suffix(name, {}, ".npy");
    EXPECT_LE(f.size(), kNameMax) << n;
    EXPECT_TRUE(f.ends_with(".npy")) << n;
    if (n + 4 <= kNameMax) {
      EXPECT_EQ(f, name + ".npy");
    } else {
      EXPECT_NE(f.find("%~"), std::string::npos) << n;
    }
  }
  // Escapes count: 85 '%' become 255 bytes, too long once ".npy" follows.
  const std::string pct(85, '%');
  EXPECT_EQ(encode_name(pct, {}).size(), 255u);
  EXPECT_LE(encode_name_with_suffix(pct, {}, ".npy").size(), kNameMax);
  // Without a suffix it is encode_name.
  EXPECT_EQ(encode_name_with_suffix(std::string(300, 'b'), {}, {}),
            encode_name(std::string(300, 'b'), {}));
}

}  // namespace
}  // namespace stfs
