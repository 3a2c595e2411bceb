// Header parser. See safetensors.hpp for the contract; SAFETENSORS.md for the
// rules. This file walks the header object (steps 4-5) and hands each part
// to its step (parse_steps.hpp); the rules live there.
#include <simdjson.h>

#include <algorithm>
#include <cstring>

#include "parse_steps.hpp"
#include "stfs/format/safetensors.hpp"

namespace stfs {
namespace {

using namespace parse;

class Parser {
 public:
  Parser(od::parser& json_parser, const Limits& limits)
      : json_parser_(json_parser), limits_(limits) {}

  // `json` is followed by kJsonPadding readable bytes.
  Result<Header, ParseError> run(std::string_view json, std::uint64_t file_size);

 private:
  std::vector<Slot> slots_;
  od::parser& json_parser_;
  const Limits& limits_;
};

Result<Header, ParseError> Parser::run(std::string_view json, std::uint64_t file_size) {
  Header h;
  h.header_len = json.size();
  h.file_size = file_size;

  // Step 4: every header byte, padding included, is UTF-8.
  if (!simdjson::validate_utf8(json.data(), json.size())) {
    return unexpected(fail(Rule::kInvalidUtf8, "invalid UTF-8 in header"));
  }
  // serde_json does not skip a byte-order mark; simdjson might.
  if (json.size() >= 3 && std::memcmp(json.data(), "\xEF\xBB\xBF", 3) == 0) {
    return unexpected(json_error("byte-order mark before the object"));
  }

  // Every entry takes at least 48 header bytes
  // (`"":{"dtype":"U8","shape":[],"data_offsets":[0,0]}`), so this bound
  // comes from the real header size, never from a number in it. Reserving
  // saves the copies and page faults of growing by doubling; untouched
  // reserved pages cost nothing.
  const std::size_t max_entries = json.size() / 48 + 1;
  h.tensors.reserve(max_entries);
  slots_.reserve(max_entries);
  h.name_storage.reserve(json.size());

  // Step 5: the JSON.
  od::document doc;
  if (auto e =
          json_parser_.iterate(json.data(), json.size(), json.size() + kJsonPadding).get(doc)) {
    return unexpected(json_error(e, "document"));
  }
  od::object root;
  if (doc.get_object().get(root)) {
    return unexpected(json_error("the header is not a JSON object"));
  }
  bool have_metadata_key = false;
  for (auto f : root) {
    od::field field;
    if (auto e = std::move(f).get(field)) return unexpected(json_error(e, "top-level member"));
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return unexpected(json_error(e, "tensor name"));
    if (auto err = check_string(key, "tensor name")) return unexpected(std::move(*err));
    if (key == "__metadata__") {
      if (have_metadata_key) return unexpected(json_error("duplicate field `__metadata__`"));
      have_metadata_key = true;
      if (auto err = parse_metadata(field.value(), h)) return unexpected(std::move(*err));
      continue;
    }
    if (limits_.max_tensors != 0 && h.tensors.size() >= limits_.max_tensors) {
      return unexpected(fail(Rule::kTooManyTensors, "too many tensors: more than max_tensors=" +
                                                        std::to_string(limits_.max_tensors)));
    }
    if (auto err = parse_entry(key, field.value(), h, slots_)) {
      return unexpected(std::move(*err));
    }
  }
  // Only whitespace may follow the object (no NUL padding, no second value).
  const char* loc = nullptr;
  if (doc.current_location().get(loc) != simdjson::OUT_OF_BOUNDS) {
    return unexpected(json_error("trailing characters after the object"));
  }
  set_views(h, slots_);
  if (auto err = check_layout(h, file_size)) return unexpected(std::move(*err));
  return h;
}

}  // namespace

std::string_view rule_name(Rule r) {
  switch (r) {
    case Rule::kHeaderTooSmall: return "HeaderTooSmall";
    case Rule::kHeaderTooLarge: return "HeaderTooLarge";
    case Rule::kInvalidHeaderLength: return "InvalidHeaderLength";
    case Rule::kInvalidUtf8: return "InvalidHeader";
    case Rule::kInvalidJson: return "InvalidHeaderDeserialization";
    case Rule::kInvalidOffset: return "InvalidOffset";
    case Rule::kValidationOverflow: return "ValidationOverflow";
    case Rule::kMisalignedSlice: return "MisalignedSlice";
    case Rule::kTensorInvalidInfo: return "TensorInvalidInfo";
    case Rule::kMetadataIncompleteBuffer: return "MetadataIncompleteBuffer";
    case Rule::kTooManyTensors: return "TooManyTensors";
    case Rule::kGgufVersion: return "GgufVersion";
    case Rule::kGgufTruncated: return "GgufTruncated";
    case Rule::kGgufUtf8: return "GgufInvalidUtf8";
    case Rule::kGgufKey: return "GgufKey";
    case Rule::kGgufValueType: return "GgufValueType";
    case Rule::kGgufNesting: return "GgufNesting";
    case Rule::kGgufAlignment: return "GgufAlignment";
    case Rule::kGgufTensorName: return "GgufTensorName";
    case Rule::kGgufShape: return "GgufShape";
    case Rule::kGgufType: return "GgufType";
    case Rule::kGgufBlockSize: return "GgufBlockSize";
    case Rule::kGgufOffset: return "GgufOffset";
    case Rule::kGgufOutOfBounds: return "GgufOutOfBounds";
  }
  return "Unknown";
}

static_assert(kJsonPadding >= simdjson::SIMDJSON_PADDING);

struct HeaderParser::Impl {
  od::parser json_parser;
};

HeaderParser::HeaderParser() : impl_(std::make_unique<Impl>()) {}
HeaderParser::~HeaderParser() = default;
HeaderParser::HeaderParser(HeaderParser&&) noexcept = default;
HeaderParser& HeaderParser::operator=(HeaderParser&&) noexcept = default;

Result<Header, ParseError> HeaderParser::parse_padded(std::string_view json,
                                                      std::uint64_t file_size,
                                                      const Limits& limits) {
  return Parser(impl_->json_parser, limits).run(json, file_size);
}

Result<Header, ParseError> parse_header_json_padded(std::string_view json, std::uint64_t file_size,
                                                    const Limits& limits) {
  return HeaderParser().parse_padded(json, file_size, limits);
}

Result<Header, ParseError> parse_header_json(std::string_view json, std::uint64_t file_size,
                                             const Limits& limits) {
  // simdjson reads up to SIMDJSON_PADDING bytes past the end; copy into a
  // padded buffer (its size is bounded by the real file size).
  simdjson::padded_string padded(json);
  return parse_header_json_padded(std::string_view(padded.data(), padded.size()), file_size,
                                  limits);
}

Result<Header, ParseError> parse_header(std::string_view file_start, std::uint64_t file_size,
                                        const Limits& limits) {
  auto n = parse_header_length(file_start.substr(0, 8), file_size, limits);
  if (!n) return unexpected(n.error());
  if (file_start.size() < 8 + *n) {
    return unexpected(fail(Rule::kInvalidHeaderLength, "invalid header length: truncated input"));
  }
  return parse_header_json(file_start.substr(8, *n), file_size, limits);
}

std::string dtype_summary(const Header& h) {
  std::vector<std::string_view> names;
  for (const TensorInfo& t : h.tensors) {
    const std::string_view n = type_name(t);
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (auto n : names) {
    if (!out.empty()) out += ',';
    out += n;
  }
  return out;
}

}  // namespace stfs
