// Test fixtures: safetensors files written by the tests themselves, and
// temporary directories that clean up after themselves.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stfs::test {

// 8-byte little-endian length, then `header`, then `data`.
std::string st_bytes(std::string_view header, std::string_view data = {});
// As above but with an explicit (possibly lying) length prefix.
std::string st_bytes_with_len(std::uint64_t n, std::string_view header, std::string_view data);

struct Spec {
  std::string name;  // raw bytes; escaped into JSON by the writer
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::string data;  // the tensor's bytes
};

// A valid file: tensors laid out back to back in the given order, header
// padded with spaces to a multiple of 8 like the reference writer.
std::string st_file(const std::vector<Spec>& tensors, std::string_view metadata_json = "");

// JSON string literal for arbitrary bytes (control bytes as \u00XX).
std::string json_string(std::string_view s);

// Deterministic pseudo-random bytes.
std::string pattern_bytes(std::size_t n, std::uint32_t seed);

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Writes `bytes` to path()/name and returns the full path.
  std::string write(const std::string& name, std::string_view bytes) const;

 private:
  std::string path_;
};

}  // namespace stfs::test
