// libFuzzer target: the header parser and the name mapping.
//
// The input is a whole file. Beyond "no crash, no leak, no UB", it checks
// invariants: a parsed header re-serialised (__header__.json) parses again
// to the same entries, and every mapped file name is a safe, decodable
// name of at most 255 bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "stfs/format/json_writer.hpp"
#include "stfs/namespace/names.hpp"
#include "stfs/format/safetensors.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void check_names(const stfs::Header& h) {
  const std::vector<std::string_view> reserved = {stfs::kHeaderFile, stfs::kMetadataFile};
  std::vector<std::string_view> names;
  for (const auto& t : h.tensors) names.push_back(t.name);
  auto files = stfs::map_names(names, reserved);
  if (!files) return;  // a (vanishingly rare) hash collision is reported, not served
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& f = (*files)[i];
    check(!f.empty() && f.size() <= stfs::kNameMax);
    check(f.find('/') == std::string::npos && f.find('\0') == std::string::npos);
    check(f != "." && f != "..");
    check(f != stfs::kHeaderFile && f != stfs::kMetadataFile);
    std::string back;
    if (stfs::decode_name(f, back)) check(back == names[i]);
  }
}

void check_roundtrip(const stfs::Header& h) {
  std::string json = stfs::header_json(h);
  const std::uint64_t data_len = h.file_size - h.data_start();
  const std::uint64_t size = 8 + json.size() + data_len;
  auto again = stfs::parse_header_json(json, size);
  check(again.has_value());
  check(again->tensors.size() == h.tensors.size());
  for (std::size_t i = 0; i < h.tensors.size(); ++i) {
    const auto& a = h.tensors[i];
    const auto& b = again->tensors[i];
    check(a.name == b.name && a.dtype == b.dtype && a.begin == b.begin && a.end == b.end);
    check(std::equal(a.shape.begin(), a.shape.end(), b.shape.begin(), b.shape.end()));
  }
  check(again->has_metadata == h.has_metadata && again->metadata == h.metadata);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto h = stfs::parse_header(bytes, size);
  if (!h) return 0;
  check(h->data_start() <= size && h->file_size == size);
  for (const auto& t : h->tensors) check(t.begin <= t.end && h->data_start() + t.end <= size);
  check_names(*h);
  check_roundtrip(*h);
  return 0;
}
