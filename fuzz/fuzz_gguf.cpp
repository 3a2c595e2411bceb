// libFuzzer target: the GGUF reader.
//
// The input is a whole file. Beyond "no crash, no leak, no UB", it checks
// invariants: every tensor lies inside the file, after the header; both
// JSON files are valid JSON; every name maps to a safe file name; and a
// read in slices (the way Model reads a file) asks only for bytes that
// exist and ends with the same answer as a read of the whole.
#include <simdjson.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "stfs/format/gguf.hpp"
#include "stfs/format/json_writer.hpp"
#include "stfs/namespace/names.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void check_json(const std::string& text) {
  static simdjson::dom::parser parser;
  simdjson::padded_string p(text);
  simdjson::dom::element e;
  check(parser.parse(p).get(e) == simdjson::SUCCESS);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto h = stfs::parse_gguf(bytes, size);
  // The same file read in slices of 64 bytes more each time.
  std::uint64_t more = 0;
  std::size_t have = size < 64 ? size : 64;
  while (true) {
    auto s = stfs::parse_gguf(bytes.substr(0, have), size, {}, &more);
    if (more == 0) {
      check(s.has_value() == h.has_value());
      if (!s) check(s.error().rule == h.error().rule);
      break;
    }
    check(more > have && more <= size);
    have = static_cast<std::size_t>(more) + 64 < size ? static_cast<std::size_t>(more) + 64 : size;
  }
  if (!h) {
    check(!h.error().message.empty());
    return 0;
  }
  check(h->data_start() <= size && h->file_size == size);
  for (const auto& t : h->tensors) {
    check(t.begin <= t.end && h->data_start() + t.end <= size);
    check(t.shape.size() <= 4);
  }
  check_json(stfs::header_json(*h));
  check_json(stfs::metadata_json(*h));
  std::vector<std::string_view> names;
  for (const auto& t : h->tensors) names.push_back(t.name);
  const std::vector<std::string_view> reserved = {stfs::kHeaderFile, stfs::kMetadataFile};
  if (auto files = stfs::map_names(names, reserved)) {
    for (const std::string& f : *files) {
      check(!f.empty() && f.size() <= stfs::kNameMax && f.find('/') == std::string::npos);
    }
  }
  return 0;
}
