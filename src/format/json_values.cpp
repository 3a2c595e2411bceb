// The JSON value rules of the header (SAFETENSORS.md §5, §7): simdjson
// On-Demand reads lazily, so every value is consumed here on purpose: a
// value that is skipped is never validated.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "parse_steps.hpp"

namespace stfs::parse {
namespace {

// JSON integer grammar: -?(0|[1-9][0-9]*).
bool is_json_integer(std::string_view t) {
  if (!t.empty() && t[0] == '-') t.remove_prefix(1);
  if (t.empty() || (t.size() > 1 && t[0] == '0')) return false;
  for (char c : t) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

ParseError fail(Rule r, std::string msg) { return ParseError{r, std::move(msg)}; }

// A name fit for an error line: control bytes escaped, long names cut.
std::string printable(std::string_view s) {
  constexpr std::size_t kMax = 120;
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kMax) out += "...";
  return out;
}

std::string tensor_ref(std::string_view name) { return "`" + printable(name) + "`"; }

ParseError json_error(std::string detail) {
  return fail(Rule::kInvalidJson, "invalid JSON in header: " + detail);
}

ParseError json_error(simdjson::error_code e, std::string_view where) {
  return json_error(std::string(simdjson::error_message(e)) + " (" + std::string(where) + ")");
}


// Returns an error if `keys` (sorted in place) holds a duplicate.
std::optional<std::string> find_duplicate(std::vector<std::string>& keys) {
  std::sort(keys.begin(), keys.end());
  auto it = std::adjacent_find(keys.begin(), keys.end());
  if (it != keys.end()) return *it;
  return std::nullopt;
}

std::optional<ParseError> consume_any(od::value v, int depth) {
  od::json_type t;
  if (auto e = v.type().get(t)) return json_error(e, "value");
  switch (t) {
    case od::json_type::object: {
      if (depth > kMaxDepth) return json_error("recursion limit exceeded");
      od::object obj;
      if (auto e = v.get_object().get(obj)) return json_error(e, "object");
      std::vector<std::string> keys;
      for (auto f : obj) {
        od::field field;
        if (auto e = std::move(f).get(field)) return json_error(e, "object member");
        std::string_view key;
        if (auto e = field.unescaped_key().get(key)) return json_error(e, "key");
        if (auto err = check_string(key, "key")) return err;
        keys.emplace_back(key);
        if (auto err = consume_any(field.value(), depth + 1)) return err;
      }
      if (auto dup = find_duplicate(keys)) {
        return json_error("duplicate key `" + printable(*dup) + "` in an object");
      }
      return std::nullopt;
    }
    case od::json_type::array: {
      if (depth > kMaxDepth) return json_error("recursion limit exceeded");
      od::array arr;
      if (auto e = v.get_array().get(arr)) return json_error(e, "array");
      for (auto el : arr) {
        od::value item;
        if (auto e = el.get(item)) return json_error(e, "array element");
        if (auto err = consume_any(item, depth + 1)) return err;
      }
      return std::nullopt;
    }
    case od::json_type::string: {
      std::string_view s;
      if (auto e = v.get_string().get(s)) return json_error(e, "string");
      return check_string(s, "string");
    }
    case od::json_type::number: {
      std::string_view tok = v.raw_json_token();
      while (!tok.empty() && is_json_space(tok.back())) tok.remove_suffix(1);
      od::number n;
      if (auto e = v.get_number().get(n)) {
        // serde_json reads an integer too large for 64 bits as a double, so
        // the reference accepts it (in an ignored field) while it is finite;
        // simdjson refuses it. Anything else simdjson refuses (1e400,
        // malformed numbers) the reference refuses too.
        if (is_json_integer(tok) && tok.size() < 400) {
          if (std::isfinite(std::strtod(std::string(tok).c_str(), nullptr))) return std::nullopt;
        }
        return json_error(e, "number");
      }
      return std::nullopt;
    }
    case od::json_type::boolean: {
      bool b;
      if (auto e = v.get_bool().get(b)) return json_error(e, "boolean");
      return std::nullopt;
    }
    case od::json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) return json_error(e, "null");
      if (!is_null) return json_error("invalid literal");
      return std::nullopt;
    }
  }
  return json_error("unknown value type");
}

}  // namespace stfs::parse
