#include "stfs/format/json_writer.hpp"

namespace stfs {

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  // Fast path: most names need no escape at all.
  bool plain = true;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) {
    out.append(s);
    out += '"';
    return;
  }
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string json_uint_array(std::span<const std::uint64_t> v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(v[i]);
  }
  out += ']';
  return out;
}

void append_string_map(std::string& out, std::span<const std::pair<std::string, std::string>> kv) {
  out += '{';
  bool first = true;
  for (const auto& [k, v] : kv) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, k);
    out += ':';
    append_json_string(out, v);
  }
  out += '}';
}

void append_tensor_entry(std::string& out, const TensorInfo& t, std::uint64_t begin,
                         std::uint64_t end) {
  append_json_string(out, t.name);
  out += ":{\"dtype\":\"";
  out += type_name(t);
  out += "\",\"shape\":";
  out += json_uint_array(t.shape);
  out += ",\"data_offsets\":[";
  out += std::to_string(begin);
  out += ',';
  out += std::to_string(end);
  out += "]}";
}

namespace {

// Every tensor entry in header order, comma-separated; `first` says
// whether nothing precedes them in the object.
void append_tensor_entries(std::string& out, const Header& h, bool first) {
  for (const TensorInfo& t : h.tensors) {
    if (!first) out += ',';
    first = false;
    append_tensor_entry(out, t, t.begin, t.end);
  }
}

// GGUF's __header__.json: the file's own fields, then the tensor infos in
// file order under "tensors" (a tensor may be called anything, so no name
// is reserved beside them).
std::string gguf_header_json(const Header& h) {
  std::string out = "{\"gguf_version\":" + std::to_string(h.gguf_version) +
                    ",\"alignment\":" + std::to_string(h.gguf_alignment) +
                    ",\"data_offset\":" + std::to_string(h.data_start()) + ",\"tensors\":{";
  append_tensor_entries(out, h, /*first=*/true);
  out += "}}\n";
  return out;
}

}  // namespace

std::string header_json(const Header& h) {
  if (h.format == Format::kGguf) return gguf_header_json(h);
  std::string out = "{";
  if (h.has_metadata) {
    out += "\"__metadata__\":";
    append_string_map(out, h.metadata);
  }
  append_tensor_entries(out, h, /*first=*/!h.has_metadata);
  out += "}\n";
  return out;
}

std::string metadata_json(const Header& h) {
  if (h.format == Format::kGguf) return h.gguf_metadata + "\n";
  std::string out;
  append_string_map(out, h.metadata);
  out += '\n';
  return out;
}

}  // namespace stfs
