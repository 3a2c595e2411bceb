// The GGUF reader's walk (docs/GGUF.md): magic and version, the counts,
// the key/value pairs, the tensor infos, then the data section.
#include <cstring>

#include "gguf_steps.hpp"

namespace stfs {

using gguf::Cursor;
using gguf::RawTensor;

namespace {

// The least bytes one key/value pair and one tensor info take, so a count
// is refused before anything is reserved for it.
constexpr std::uint64_t kLeastPair = 8 + 1 + 4 + 1;       // key length, key, type, u8
constexpr std::uint64_t kLeastTensor = 8 + 4 + 4 + 8;     // name length, dims, type, offset

bool read_counts(Cursor& c, std::uint64_t& n_tensors, std::uint64_t& n_kv, const Limits& limits) {
  std::int64_t t = 0, kv = 0;
  if (!c.i64(t, "the tensor count") || !c.i64(kv, "the key/value count")) return false;
  if (t < 0 || kv < 0) {
    return c.fail(Rule::kGgufTruncated, "negative count: " + std::to_string(t) + " tensors, " +
                                            std::to_string(kv) + " key/value pairs");
  }
  n_tensors = static_cast<std::uint64_t>(t);
  n_kv = static_cast<std::uint64_t>(kv);
  if (limits.max_tensors != 0 && n_tensors > limits.max_tensors) {
    return c.fail(Rule::kTooManyTensors, std::to_string(n_tensors) + " tensors, more than the "
                                             "limit of " + std::to_string(limits.max_tensors));
  }
  if (n_kv > c.left() / kLeastPair || n_tensors > (c.left() - n_kv * kLeastPair) / kLeastTensor) {
    return c.fail(Rule::kGgufTruncated, std::to_string(n_tensors) + " tensors and " +
                                            std::to_string(n_kv) +
                                            " key/value pairs cannot fit in the " +
                                            std::to_string(c.left()) + " bytes left");
  }
  return true;
}

bool read_version(Cursor& c, std::uint32_t& version) {
  if (!c.need(4, "the magic")) return false;
  if (std::memcmp(c.take(4), "GGUF", 4) != 0) {
    return c.fail(Rule::kGgufVersion, "not a GGUF file: no GGUF magic");
  }
  if (!c.u32(version, "the version")) return false;
  if (version == 2 || version == 3) return true;
  if (version != 0 && (version & 0xffff) == 0) {
    return c.fail(Rule::kGgufVersion, "GGUF version " + std::to_string(version) +
                                          " read as little-endian: a big-endian file, which "
                                          "stfs does not read");
  }
  if (version == 1) {
    return c.fail(Rule::kGgufVersion, "GGUF version 1 (32-bit counts) is not supported: "
                                      "convert it with a current llama.cpp");
  }
  return c.fail(Rule::kGgufVersion, "GGUF version " + std::to_string(version) +
                                        " is not supported (versions 2 and 3 are)");
}

Header build(const std::vector<RawTensor>& raw, std::uint64_t data_start) {
  Header h;
  h.format = Format::kGguf;
  h.header_len = data_start;
  std::size_t names = 0, dims = 0;
  for (const RawTensor& t : raw) {
    names += t.name.size();
    dims += t.n_dims;
  }
  h.name_storage.reserve(names);
  h.shape_storage.reserve(dims);
  h.tensors.reserve(raw.size());
  for (const RawTensor& t : raw) {
    h.name_storage.insert(h.name_storage.end(), t.name.begin(), t.name.end());
    // Row-major, as numpy and safetensors: ne[0] (the innermost) last.
    for (std::uint32_t d = t.n_dims; d-- > 0;) h.shape_storage.push_back(t.ne[d]);
    TensorInfo info;
    info.dtype = ggml_type(t.type)->dtype.value_or(Dtype::kU8);
    info.ggml_type = static_cast<std::uint16_t>(t.type);
    info.begin = t.offset;
    info.end = t.offset + t.bytes;
    h.tensors.push_back(info);
  }
  // The storage has stopped growing: point the views into it.
  std::size_t name_at = 0, shape_at = 0;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    h.tensors[i].name = std::string_view(h.name_storage.data() + name_at, raw[i].name.size());
    h.tensors[i].shape = std::span<const std::uint64_t>(h.shape_storage.data() + shape_at,
                                                        raw[i].n_dims);
    name_at += raw[i].name.size();
    shape_at += raw[i].n_dims;
  }
  return h;
}

}  // namespace

Result<Header, ParseError> parse_gguf(std::string_view bytes, std::uint64_t file_size,
                                      const Limits& limits, std::uint64_t* more) {
  if (more) *more = 0;
  Cursor c(bytes, file_size, limits);
  auto failed = [&]() {
    if (more) *more = c.more();
    return unexpected(*c.error());
  };
  std::uint32_t version = 0;
  std::uint64_t n_tensors = 0, n_kv = 0, alignment = 0;
  std::string metadata;
  if (!read_version(c, version) || !read_counts(c, n_tensors, n_kv, limits) ||
      !gguf::read_metadata(c, n_kv, metadata, alignment)) {
    return failed();
  }
  std::vector<RawTensor> raw;
  raw.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n_tensors, 1 << 16)));
  std::unordered_set<std::string_view> names;
  names.reserve(raw.capacity());
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    raw.emplace_back();
    if (!gguf::read_tensor_info(c, names, raw.back())) return failed();
  }
  // The data section starts at the next multiple of the alignment (right
  // after the infos when there are no tensors, as llama.cpp).
  const std::uint64_t end = c.pos();
  const std::uint64_t data_start =
      n_tensors ? (end + alignment - 1) / alignment * alignment : end;
  if (data_start > file_size) {
    c.fail(Rule::kGgufOutOfBounds, "the data section would start at byte " +
                                       std::to_string(data_start) + ", past the end of the file (" +
                                       std::to_string(file_size) + " bytes)");
    return failed();
  }
  // The padding is part of what a kept header serves (-o originals).
  if (!c.need(data_start - end, "the padding before the data section") ||
      !gguf::check_data_layout(c, raw, data_start, alignment, file_size)) {
    return failed();
  }
  Header h = build(raw, data_start);
  h.file_size = file_size;
  h.gguf_version = version;
  h.gguf_alignment = alignment;
  h.has_metadata = n_kv != 0;
  h.gguf_metadata = std::move(metadata);
  return h;
}

}  // namespace stfs
