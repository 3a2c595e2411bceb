// Name mapping; the rules are in names.hpp.
#include "stfs/namespace/names.hpp"

#include <algorithm>
#include <cerrno>

namespace stfs {
namespace {

constexpr char kHexUpper[] = "0123456789ABCDEF";
constexpr char kHexLower[] = "0123456789abcdef";

bool needs_escape(unsigned char c) { return c == '%' || c == '/' || c < 0x20 || c == 0x7f; }

// Length of the unit starting at s[i] that step 4 must not cut: a %XX
// escape, a whole UTF-8 sequence, or one byte.
std::size_t unit_length(std::string_view s, std::size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = 1;
  if (c == '%') {
    n = 3;
  } else if (c >= 0xF0) {
    n = 4;
  } else if (c >= 0xE0) {
    n = 3;
  } else if (c >= 0xC0) {
    n = 2;
  }
  return std::min(n, s.size() - i);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower case never appears in an encoded name
}

}  // namespace

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

bool maps_to_itself(std::string_view name, const std::vector<std::string_view>& reserved) {
  if (name.empty() || name.size() > kNameMax || name == "." || name == "..") return false;
  for (char ch : name) {
    if (needs_escape(static_cast<unsigned char>(ch))) return false;
  }
  return std::find(reserved.begin(), reserved.end(), name) == reserved.end();
}

std::string encode_name(std::string_view name, const std::vector<std::string_view>& reserved) {
  return encode_name_with_suffix(name, reserved, {});
}

std::string encode_name_with_suffix(std::string_view name,
                                    const std::vector<std::string_view>& reserved,
                                    std::string_view suffix) {
  std::string out = encode_steps_1_to_3(name, reserved);
  // Step 4 against the room the suffix leaves, so the suffix survives.
  if (out.size() + suffix.size() > kNameMax) {
    std::size_t keep = 0;
    while (keep < out.size()) {
      std::size_t n = unit_length(out, keep);
      if (keep + n > kHashedPrefixMax) break;
      keep += n;
    }
    std::uint64_t h = fnv1a64(name);
    std::string tail = "%~";
    for (int shift = 60; shift >= 0; shift -= 4) tail += kHexLower[(h >> shift) & 15];
    out.resize(keep);
    out += tail;
  }
  out += suffix;
  return out;
}

std::string encode_steps_1_to_3(std::string_view name,
                                const std::vector<std::string_view>& reserved) {
  if (name.empty()) return "%";
  if (name == ".") return "%2E";
  if (name == "..") return "%2E%2E";
  std::string out;
  out.reserve(name.size());
  for (char ch : name) {
    auto c = static_cast<unsigned char>(ch);
    if (needs_escape(c)) {
      out += '%';
      out += kHexUpper[c >> 4];
      out += kHexUpper[c & 15];
    } else {
      out += ch;
    }
  }
  if (std::find(reserved.begin(), reserved.end(), out) != reserved.end()) {
    auto c = static_cast<unsigned char>(out[0]);
    std::string escaped = {'%', kHexUpper[c >> 4], kHexUpper[c & 15]};
    out = escaped + out.substr(1);
  }
  return out;
}

bool decode_name(std::string_view file_name, std::string& out) {
  out.clear();
  if (file_name == "%") return true;
  for (std::size_t i = 0; i < file_name.size(); ++i) {
    if (file_name[i] != '%') {
      out += file_name[i];
      continue;
    }
    if (i + 2 >= file_name.size()) return false;
    int hi = hex_value(file_name[i + 1]);
    int lo = hex_value(file_name[i + 2]);
    if (hi < 0 || lo < 0) return false;  // includes the "%~" of a hashed name
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

std::string shorten_for_message(std::string_view s) {
  return s.size() > 60 ? std::string(s.substr(0, 60)) + "..." : std::string(s);
}

Result<std::vector<std::string>> map_names(const std::vector<std::string_view>& names,
                                           const std::vector<std::string_view>& reserved) {
  std::vector<std::string> files;
  files.reserve(names.size());
  // Only hashed (step 4) names can collide, so only they are compared.
  std::vector<std::size_t> hashed;
  for (std::size_t i = 0; i < names.size(); ++i) {
    files.push_back(encode_name(names[i], reserved));
    if (files.back().find("%~") != std::string::npos) hashed.push_back(i);
  }
  std::sort(hashed.begin(), hashed.end(),
            [&](std::size_t a, std::size_t b) { return files[a] < files[b]; });
  for (std::size_t i = 1; i < hashed.size(); ++i) {
    const std::string& f = files[hashed[i]];
    if (f == files[hashed[i - 1]]) {
      const auto shorten = shorten_for_message;
      return unexpected(Error{EEXIST, "tensor names `" + shorten(names[hashed[i - 1]]) + "` and `" +
                                          shorten(names[hashed[i]]) +
                                          "` map to the same file name `" + shorten(f) + "`"});
    }
  }
  return files;
}

}  // namespace stfs
