// Bounded reads of a GGUF header: every length is checked against the
// bytes left in the file before it is used, and the header against the cap.
#include <simdjson.h>

#include "gguf_steps.hpp"

namespace stfs::gguf {

bool Cursor::fail(Rule r, std::string message) {
  if (!error_) error_ = ParseError{r, std::move(message)};
  return false;
}

bool Cursor::need(std::uint64_t n, std::string_view what) {
  if (failed()) return false;
  if (n > left()) {
    return fail(Rule::kGgufTruncated,
                "GGUF file ends inside " + std::string(what) + " at byte " +
                    std::to_string(pos_) + ": it needs " + std::to_string(n) + " bytes, " +
                    std::to_string(left()) + " remain");
  }
  const std::uint64_t end = pos_ + n;
  if (end > limits_.max_header) {
    return fail(Rule::kHeaderTooLarge, "GGUF header (key/value pairs and tensor infos) longer "
                                       "than " + std::to_string(limits_.max_header) +
                                           " bytes, at " + std::string(what));
  }
  if (end > bytes_.size()) {
    more_ = end;
    return fail(Rule::kGgufTruncated, "GGUF header read stopped short (internal)");
  }
  return true;
}

const unsigned char* Cursor::take(std::uint64_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes_.data()) + pos_;
  pos_ += n;
  return p;
}

namespace {
template <typename T>
T little_endian(const unsigned char* p) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(p[i]) << (8 * i);
  return v;
}
}  // namespace

bool Cursor::u8(std::uint8_t& v, std::string_view what) {
  if (!need(1, what)) return false;
  v = *take(1);
  return true;
}

bool Cursor::u32(std::uint32_t& v, std::string_view what) {
  if (!need(4, what)) return false;
  v = little_endian<std::uint32_t>(take(4));
  return true;
}

bool Cursor::u64(std::uint64_t& v, std::string_view what) {
  if (!need(8, what)) return false;
  v = little_endian<std::uint64_t>(take(8));
  return true;
}

bool Cursor::i64(std::int64_t& v, std::string_view what) {
  std::uint64_t u = 0;
  if (!u64(u, what)) return false;
  v = static_cast<std::int64_t>(u);
  return true;
}

bool Cursor::string(std::string_view& s, std::string_view what) {
  std::uint64_t len = 0;
  if (!u64(len, what)) return false;
  if (!need(len, what)) return false;
  const std::uint64_t at = pos_;
  s = std::string_view(reinterpret_cast<const char*>(take(len)), static_cast<std::size_t>(len));
  // GGUF's strings are UTF-8 by its spec; they become JSON and file names.
  if (!simdjson::validate_utf8(s.data(), s.size())) {
    return fail(Rule::kGgufUtf8,
                std::string(what) + " at byte " + std::to_string(at) + " is not valid UTF-8");
  }
  return true;
}

}  // namespace stfs::gguf
