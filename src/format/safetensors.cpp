// Header parser. See safetensors.hpp for the contract; SAFETENSORS.md for the
// rules. simdjson On-Demand reads the JSON lazily, so every value is consumed
// here on purpose: a value that is skipped is never validated.
#include "stfs/format/safetensors.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>

namespace stfs {
namespace {

namespace od = simdjson::ondemand;

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

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Exact unsigned integer from a JSON number token: "0" or [1-9][0-9]*, at
// most 2^64-1. Everything the reference refuses ("-0", "4.0", "4e0", "01",
// "18446744073709551616") fails here, and nothing goes through double.
bool parse_u64_token(std::string_view tok, std::uint64_t& out) {
  while (!tok.empty() && is_json_space(tok.back())) tok.remove_suffix(1);
  if (tok.empty()) return false;
  if (tok.size() > 1 && tok[0] == '0') return false;
  std::uint64_t v = 0;
  for (char c : tok) {
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(v, std::uint64_t{10}, &v)) return false;
    if (__builtin_add_overflow(v, static_cast<std::uint64_t>(c - '0'), &v)) {
      return false;
    }
  }
  out = v;
  return true;
}

// JSON integer grammar: -?(0|[1-9][0-9]*).
bool is_json_integer(std::string_view t) {
  if (!t.empty() && t[0] == '-') t.remove_prefix(1);
  if (t.empty() || (t.size() > 1 && t[0] == '0')) return false;
  for (char c : t) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Returns an error if `keys` (sorted in place) holds a duplicate.
std::optional<std::string> find_duplicate(std::vector<std::string>& keys) {
  std::sort(keys.begin(), keys.end());
  auto it = std::adjacent_find(keys.begin(), keys.end());
  if (it != keys.end()) return *it;
  return std::nullopt;
}

// An unescaped string must be valid Unicode. The raw header passed the
// UTF-8 check (step 4), so only a \u escape can make it invalid: simdjson
// lets a lone low surrogate through, encoded as ED B0..BF. Every encoded
// surrogate starts with 0xED, so the full check runs only when one is there.
std::optional<ParseError> check_string(std::string_view s, std::string_view what) {
  if (std::memchr(s.data(), 0xED, s.size()) != nullptr &&
      !simdjson::validate_utf8(s.data(), s.size())) {
    return json_error("invalid unicode in " + std::string(what));
  }
  return std::nullopt;
}

// Duplicate names through an open-addressing table of (hash, index):
// linear time, and names are compared only when their hashes match.
std::optional<std::string_view> find_duplicate_name(const std::vector<TensorInfo>& tensors) {
  std::size_t cap = 16;
  while (cap < 2 * tensors.size()) cap *= 2;
  struct Cell {
    std::uint64_t hash;
    std::uint32_t idx_plus_one;  // 0: empty
  };
  std::vector<Cell> table(cap, Cell{0, 0});
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    std::uint64_t hv = std::hash<std::string_view>{}(tensors[i].name);
    for (std::size_t slot = hv & (cap - 1);; slot = (slot + 1) & (cap - 1)) {
      Cell& c = table[slot];
      if (c.idx_plus_one == 0) {
        c = Cell{hv, static_cast<std::uint32_t>(i + 1)};
        break;
      }
      if (c.hash == hv && tensors[c.idx_plus_one - 1].name == tensors[i].name) {
        return tensors[i].name;
      }
    }
  }
  return std::nullopt;
}

class Parser {
 public:
  Parser(od::parser& json_parser, const Limits& limits)
      : json_parser_(json_parser), limits_(limits) {}

  // `json` is followed by kJsonPadding readable bytes.
  Result<Header, ParseError> run(std::string_view json, std::uint64_t file_size);

 private:
  std::optional<ParseError> parse_metadata(od::value v, Header& h);
  std::optional<ParseError> parse_entry(std::string_view name, od::value v, Header& h);
  // Calls sink(n) for each element of an array of exact u64 integers.
  template <typename Sink>
  std::optional<ParseError> parse_uint_array(od::value v, std::string_view field, Sink&& sink);
  // Consumes and validates any JSON value at nesting `depth` (the value's
  // own level if it is a container).
  std::optional<ParseError> consume_any(od::value v, int depth);

  // Where each tensor's name and shape sit in the Header's storage; the
  // views are set once the storage has stopped growing.
  struct Slot {
    std::size_t name_off, name_len, shape_off, rank;
  };
  std::vector<Slot> slots_;
  od::parser& json_parser_;
  const Limits& limits_;
};

std::optional<ParseError> Parser::consume_any(od::value v, int depth) {
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

std::optional<ParseError> Parser::parse_metadata(od::value v, Header& h) {
  bool is_null = false;
  if (auto e = v.is_null().get(is_null)) return json_error(e, "__metadata__");
  if (is_null) return std::nullopt;  // the reference treats null as absent
  od::object obj;
  if (v.get_object().get(obj)) {
    return json_error("__metadata__ must be an object of strings or null");
  }
  h.has_metadata = true;
  for (auto f : obj) {
    od::field field;
    if (auto e = std::move(f).get(field)) return json_error(e, "__metadata__ member");
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return json_error(e, "__metadata__ key");
    if (auto err = check_string(key, "__metadata__ key")) return err;
    std::string k(key);
    std::string_view val;
    if (field.value().get_string().get(val)) {
      return json_error("__metadata__ value of `" + printable(k) + "` is not a string");
    }
    if (auto err = check_string(val, "__metadata__ value")) return err;
    h.metadata.emplace_back(std::move(k), std::string(val));
  }
  std::sort(h.metadata.begin(), h.metadata.end());
  for (std::size_t i = 1; i < h.metadata.size(); ++i) {
    if (h.metadata[i].first == h.metadata[i - 1].first) {
      return json_error("duplicate key `" + printable(h.metadata[i].first) + "` in __metadata__");
    }
  }
  return std::nullopt;
}

template <typename Sink>
std::optional<ParseError> Parser::parse_uint_array(od::value v, std::string_view field,
                                                   Sink&& sink) {
  od::array arr;
  if (v.get_array().get(arr)) {
    return json_error(std::string(field) + " must be an array of unsigned integers");
  }
  for (auto el : arr) {
    od::value item;
    if (auto e = el.get(item)) return json_error(e, field);
    std::string_view tok = item.raw_json_token();
    std::uint64_t n = 0;
    if (!parse_u64_token(tok, n)) {
      return json_error(std::string(field) + " holds `" +
                        printable(tok.substr(0, std::min<std::size_t>(tok.size(), 24))) +
                        "`, not an integer in [0, 2^64-1]");
    }
    sink(n);
  }
  return std::nullopt;
}

std::optional<ParseError> Parser::parse_entry(std::string_view name, od::value v, Header& h) {
  od::object obj;
  if (v.get_object().get(obj)) {
    return json_error("entry of tensor " + tensor_ref(name) + " is not an object");
  }
  TensorInfo info;
  Slot slot{h.name_storage.size(), name.size(), h.shape_storage.size(), 0};
  h.name_storage.insert(h.name_storage.end(), name.begin(), name.end());
  bool have_dtype = false, have_shape = false, have_offsets = false;
  std::vector<std::string> unknown;
  auto entry_error = [&](std::string what) {
    return json_error(what + " in tensor " + tensor_ref(name));
  };
  for (auto f : obj) {
    od::field field;
    if (auto e = std::move(f).get(field)) return json_error(e, "tensor entry");
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return json_error(e, "tensor entry key");
    if (key == "dtype") {
      if (have_dtype) return entry_error("duplicate field `dtype`");
      have_dtype = true;
      std::string_view s;
      // The reference also takes {"U8": null}; SAFETENSORS.md §7.2 says refuse it.
      if (field.value().get_string().get(s)) return entry_error("dtype is not a string");
      auto d = parse_dtype(s);
      if (!d) return entry_error("unknown dtype `" + printable(s) + "`");
      info.dtype = *d;
    } else if (key == "shape") {
      if (have_shape) return entry_error("duplicate field `shape`");
      have_shape = true;
      if (auto err = parse_uint_array(field.value(), "shape", [&](std::uint64_t n) {
            h.shape_storage.push_back(n);
            ++slot.rank;
          })) {
        return entry_error(err->message.substr(std::strlen("invalid JSON in header: ")));
      }
    } else if (key == "data_offsets") {
      if (have_offsets) return entry_error("duplicate field `data_offsets`");
      have_offsets = true;
      std::uint64_t offs[2] = {0, 0};
      std::size_t count = 0;
      if (auto err = parse_uint_array(field.value(), "data_offsets", [&](std::uint64_t n) {
            if (count < 2) offs[count] = n;
            ++count;
          })) {
        return entry_error(err->message.substr(std::strlen("invalid JSON in header: ")));
      }
      if (count != 2) return entry_error("data_offsets must hold exactly 2 integers");
      info.begin = offs[0];
      info.end = offs[1];
    } else {
      // Unknown fields are ignored by the reference, but must still be valid
      // JSON within the depth limit; duplicates are refused like any other.
      if (auto err = check_string(key, "key")) return err;
      unknown.emplace_back(key);
      if (auto err = consume_any(field.value(), 3)) return err;
    }
  }
  if (!have_dtype) return entry_error("missing field `dtype`");
  if (!have_shape) return entry_error("missing field `shape`");
  if (!have_offsets) return entry_error("missing field `data_offsets`");
  if (auto dup = find_duplicate(unknown)) {
    return entry_error("duplicate field `" + printable(*dup) + "`");
  }
  h.tensors.push_back(info);
  slots_.push_back(slot);
  return std::nullopt;
}

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
    if (auto err = parse_entry(key, field.value(), h)) return unexpected(std::move(*err));
  }
  // Only whitespace may follow the object (no NUL padding, no second value).
  const char* loc = nullptr;
  if (doc.current_location().get(loc) != simdjson::OUT_OF_BOUNDS) {
    return unexpected(json_error("trailing characters after the object"));
  }

  for (std::size_t i = 0; i < h.tensors.size(); ++i) {
    const Slot& sl = slots_[i];
    h.tensors[i].name = std::string_view(h.name_storage.data() + sl.name_off, sl.name_len);
    h.tensors[i].shape =
        std::span<const std::uint64_t>(h.shape_storage.data() + sl.shape_off, sl.rank);
  }

  if (auto dup = find_duplicate_name(h.tensors)) {
    // The reference silently keeps the last; other parsers keep the first.
    return unexpected(json_error("duplicate tensor name " + tensor_ref(*dup)));
  }

  // Step 6: walk the tensors in (begin, end) order; they must tile the
  // buffer from 0 with no hole and no overlap.
  struct Span {
    std::uint64_t begin, end;
    std::uint32_t idx;
    bool operator<(const Span& o) const {
      if (begin != o.begin) return begin < o.begin;
      if (end != o.end) return end < o.end;
      return idx < o.idx;
    }
  };
  std::vector<Span> order;
  order.reserve(h.tensors.size());
  for (std::size_t i = 0; i < h.tensors.size(); ++i) {
    order.push_back({h.tensors[i].begin, h.tensors[i].end, static_cast<std::uint32_t>(i)});
  }
  // Most writers emit entries in offset order already.
  if (!std::is_sorted(order.begin(), order.end())) std::sort(order.begin(), order.end());
  std::uint64_t cursor = 0;
  for (const Span& span : order) {
    const TensorInfo& t = h.tensors[span.idx];
    if (t.begin != cursor || t.end < t.begin) {
      return unexpected(
          fail(Rule::kInvalidOffset, "invalid offset for tensor " + tensor_ref(t.name) + ": [" +
                                         std::to_string(t.begin) + ", " + std::to_string(t.end) +
                                         ") does not start at " + std::to_string(cursor)));
    }
    cursor = t.end;
    // Left to right from 1, as the reference does: [2^64-1, 2^64-1, 0]
    // overflows although its true product is 0.
    std::uint64_t count = 1;
    for (std::uint64_t d : t.shape) {
      if (__builtin_mul_overflow(count, d, &count)) {
        return unexpected(fail(
            Rule::kValidationOverflow,
            "validation overflow: shape of tensor " + tensor_ref(t.name) + " overflows 64 bits"));
      }
    }
    std::uint64_t bits = 0;
    if (__builtin_mul_overflow(count, std::uint64_t{dtype_bits(t.dtype)}, &bits)) {
      return unexpected(fail(
          Rule::kValidationOverflow,
          "validation overflow: bit count of tensor " + tensor_ref(t.name) + " overflows 64 bits"));
    }
    if (bits % 8 != 0) {
      return unexpected(fail(Rule::kMisalignedSlice,
                             "misaligned slice: tensor " + tensor_ref(t.name) + " holds " +
                                 std::to_string(bits) + " bits, not whole bytes"));
    }
    if (t.end - t.begin != bits / 8) {
      return unexpected(fail(Rule::kTensorInvalidInfo,
                             "invalid shape, data type, or offset for tensor " +
                                 tensor_ref(t.name) + ": " + std::to_string(t.end - t.begin) +
                                 " bytes, expected " + std::to_string(bits / 8)));
    }
  }

  // Step 7: the data ends exactly at the end of the file. Checked, unlike
  // the reference, whose unchecked add wraps.
  std::uint64_t expected_end = 0;
  if (__builtin_add_overflow(cursor, h.data_start(), &expected_end) || expected_end != file_size) {
    return unexpected(fail(Rule::kMetadataIncompleteBuffer,
                           "incomplete metadata, file not fully covered: tensors end at byte " +
                               std::to_string(cursor) + " of the buffer, file has " +
                               std::to_string(file_size - h.data_start())));
  }
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
  }
  return "Unknown";
}

Result<std::uint64_t, ParseError> parse_header_length(std::string_view prefix,
                                                      std::uint64_t file_size,
                                                      const Limits& limits) {
  if (file_size < 8 || prefix.size() < 8) {
    return unexpected(
        fail(Rule::kHeaderTooSmall,
             "header too small: file has " + std::to_string(file_size) + " bytes, fewer than 8"));
  }
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(prefix[i]);
  if (n > limits.max_header) {
    return unexpected(fail(Rule::kHeaderTooLarge, "header too large: " + std::to_string(n) +
                                                      " bytes, limit " +
                                                      std::to_string(limits.max_header)));
  }
  if (n > file_size - 8) {
    return unexpected(fail(Rule::kInvalidHeaderLength,
                           "invalid header length: " + std::to_string(n) +
                               " bytes claimed, file has " + std::to_string(file_size)));
  }
  return n;
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
  bool seen[kDtypeCount] = {};
  for (const TensorInfo& t : h.tensors) seen[static_cast<int>(t.dtype)] = true;
  std::vector<std::string_view> names;
  for (int i = 0; i < kDtypeCount; ++i) {
    if (seen[i]) names.push_back(dtype_name(static_cast<Dtype>(i)));
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
