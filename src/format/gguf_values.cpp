// GGUF key/value pairs to one JSON object (__metadata__.json), typed
// faithfully: integers stay exact integers, floats are written as the exact
// double of their value (a float32 widened, never re-rounded), bools 0/1 as
// false/true, strings as JSON strings, arrays (of arrays too) as arrays.
#include <charconv>
#include <cmath>
#include <cstring>

#include "gguf_steps.hpp"
#include "parse_steps.hpp"
#include "stfs/format/json_writer.hpp"

namespace stfs::gguf {
namespace {

enum ValueType : std::uint32_t {
  kU8, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64, kTypeCount
};
// Bytes of one value of each fixed-size type (0: string and array).
constexpr std::uint32_t kSize[kTypeCount] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

void append_double(std::string& json, double v) {
  // JSON has no NaN or infinity: they are written as strings.
  if (std::isnan(v)) {
    json += "\"NaN\"";
    return;
  }
  if (std::isinf(v)) {
    json += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
  json += s;
  // 1.0 stays a float for a JSON reader: "1" would read as an integer.
  if (s.find_first_of(".e") == std::string_view::npos) json += ".0";
}

bool read_scalar(Cursor& c, std::uint32_t type, std::string& json) {
  const char* what = "a value";
  if (!c.need(kSize[type], what)) return false;
  const unsigned char* p = c.take(kSize[type]);
  std::uint64_t u = 0;
  for (std::uint32_t i = 0; i < kSize[type]; ++i) u |= std::uint64_t{p[i]} << (8 * i);
  switch (type) {
    case kU8:
    case kU16:
    case kU32:
    case kU64: json += std::to_string(u); break;
    case kI8: json += std::to_string(static_cast<std::int8_t>(u)); break;
    case kI16: json += std::to_string(static_cast<std::int16_t>(u)); break;
    case kI32: json += std::to_string(static_cast<std::int32_t>(u)); break;
    case kI64: json += std::to_string(static_cast<std::int64_t>(u)); break;
    case kF32: {
      float f;
      auto bits = static_cast<std::uint32_t>(u);
      std::memcpy(&f, &bits, 4);
      append_double(json, static_cast<double>(f));
      break;
    }
    case kF64: {
      double d;
      std::memcpy(&d, &u, 8);
      append_double(json, d);
      break;
    }
    case kBool:
      if (u > 1) {
        return c.fail(Rule::kGgufValueType, "bool value " + std::to_string(u) + " at byte " +
                                                std::to_string(c.pos() - 1) +
                                                " is neither 0 nor 1");
      }
      json += u ? "true" : "false";
      break;
    default: break;
  }
  return true;
}

bool read_value(Cursor& c, std::uint32_t type, std::string& json, int depth) {
  if (type == kString) {
    std::string_view s;
    if (!c.string(s, "a string value")) return false;
    append_json_string(json, s);
    return true;
  }
  if (type != kArray) return read_scalar(c, type, json);
  if (depth >= kGgufMaxDepth) {
    return c.fail(Rule::kGgufNesting, "arrays nested deeper than " +
                                          std::to_string(kGgufMaxDepth) + " levels at byte " +
                                          std::to_string(c.pos()));
  }
  std::uint32_t elem = 0;
  std::uint64_t n = 0;
  if (!c.u32(elem, "an array's element type")) return false;
  if (elem >= kTypeCount) {
    return c.fail(Rule::kGgufValueType, "unknown array element type " + std::to_string(elem) +
                                            " at byte " + std::to_string(c.pos() - 4));
  }
  if (!c.u64(n, "an array's length")) return false;
  // The least each element takes: its bytes, a string's length, or a
  // nested array's type and length. Checked before anything is read.
  const std::uint64_t least = kSize[elem] ? kSize[elem] : elem == kString ? 8 : 12;
  if (n > c.left() / least) {
    return c.fail(Rule::kGgufTruncated, "array of " + std::to_string(n) + " elements at byte " +
                                            std::to_string(c.pos()) + " needs more bytes than the " +
                                            std::to_string(c.left()) + " the file has left");
  }
  json += '[';
  for (std::uint64_t i = 0; i < n; ++i) {
    if (i) json += ',';
    if (!read_value(c, elem, json, depth + 1)) return false;
  }
  json += ']';
  return true;
}

}  // namespace

bool read_metadata(Cursor& c, std::uint64_t count, std::string& json, std::uint64_t& alignment) {
  std::unordered_set<std::string_view> keys;
  keys.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(count, 4096)));
  alignment = kGgufDefaultAlignment;
  json = "{";
  for (std::uint64_t i = 0; i < count; ++i) {
    std::string_view key;
    const std::uint64_t at = c.pos();
    if (!c.string(key, "a key")) return false;
    if (key.empty()) {
      return c.fail(Rule::kGgufKey, "key " + std::to_string(i) + " at byte " +
                                        std::to_string(at) + " is empty");
    }
    if (!keys.insert(key).second) {
      return c.fail(Rule::kGgufKey, "duplicate key `" + parse::printable(key) + "`");
    }
    std::uint32_t type = 0;
    if (!c.u32(type, "a value type")) return false;
    if (type >= kTypeCount) {
      return c.fail(Rule::kGgufValueType, "key `" + parse::printable(key) +
                                              "` has unknown value type " + std::to_string(type));
    }
    if (i) json += ',';
    append_json_string(json, key);
    json += ':';
    const std::size_t value_at = json.size();
    if (!read_value(c, type, json, 0)) return false;
    if (key == "general.alignment") {
      // As llama.cpp: a u32, a power of two.
      std::uint64_t a = 0;
      const std::string_view v = std::string_view(json).substr(value_at);
      if (type != kU32 || !parse::parse_u64_token(v, a) || a == 0 || (a & (a - 1)) != 0) {
        return c.fail(Rule::kGgufAlignment,
                      "general.alignment must be a u32 power of two, not " +
                          (type == kU32 ? std::string(v) : "a value of type " + std::to_string(type)));
      }
      alignment = a;
    }
  }
  json += "}";
  return true;
}

}  // namespace stfs::gguf
