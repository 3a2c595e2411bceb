// GGUF tensor infos and the data section's layout, as llama.cpp's
// gguf_init_from_file_impl checks them, plus: every tensor inside the file.
#include "gguf_steps.hpp"
#include "parse_steps.hpp"

namespace stfs::gguf {

bool read_tensor_info(Cursor& c, std::unordered_set<std::string_view>& names, RawTensor& t) {
  if (!c.string(t.name, "a tensor name")) return false;
  const std::string ref = parse::tensor_ref(t.name);
  if (!names.insert(t.name).second) {
    return c.fail(Rule::kGgufTensorName, "duplicate tensor name " + ref);
  }
  if (!c.u32(t.n_dims, "a tensor's dimension count")) return false;
  if (t.n_dims > 4) {
    return c.fail(Rule::kGgufShape, "tensor " + ref + " has " + std::to_string(t.n_dims) +
                                        " dimensions; GGUF allows at most 4");
  }
  for (std::uint32_t d = 0; d < t.n_dims; ++d) {
    std::int64_t ne = 0;
    if (!c.i64(ne, "a tensor's shape")) return false;
    if (ne < 0) {
      return c.fail(Rule::kGgufShape, "tensor " + ref + " dimension " + std::to_string(d) +
                                          " is negative: " + std::to_string(ne));
    }
    t.ne[d] = static_cast<std::uint64_t>(ne);
  }
  // The element count must fit in int64_t, as ggml counts it.
  std::uint64_t elements = 1;
  for (std::uint64_t ne : t.ne) {
    if (__builtin_mul_overflow(elements, ne, &elements) ||
        elements > static_cast<std::uint64_t>(INT64_MAX)) {
      return c.fail(Rule::kGgufShape, "tensor " + ref + " has more elements than 2^63-1");
    }
  }
  std::uint32_t type = 0;
  if (!c.u32(type, "a tensor's type")) return false;
  const GgmlType* g = ggml_type(type);
  if (!g) {
    return c.fail(Rule::kGgufType, "tensor " + ref + " has unknown ggml type " +
                                       std::to_string(type));
  }
  t.type = type;
  if (t.ne[0] % g->block != 0) {
    return c.fail(Rule::kGgufBlockSize,
                  "tensor " + ref + " of type " + std::string(g->name) + " has " +
                      std::to_string(t.ne[0]) + " elements per row, not a multiple of its block of " +
                      std::to_string(g->block));
  }
  // elements / block blocks of type_size bytes; a zero dimension is 0 bytes.
  if (__builtin_mul_overflow(elements / g->block, std::uint64_t{g->type_size}, &t.bytes)) {
    return c.fail(Rule::kGgufShape, "tensor " + ref + " is larger than 2^64 bytes");
  }
  return c.u64(t.offset, "a tensor's offset");
}

bool check_data_layout(Cursor& c, const std::vector<RawTensor>& tensors, std::uint64_t data_start,
                       std::uint64_t alignment, std::uint64_t file_size) {
  // As llama.cpp: tensors lie in header order, each at the padded end of
  // the one before (so aligned, never overlapping, no gaps).
  std::uint64_t expected = 0;
  for (const RawTensor& t : tensors) {
    const std::string ref = parse::tensor_ref(t.name);
    if (t.offset != expected) {
      return c.fail(Rule::kGgufOffset,
                    "tensor " + ref + " has offset " + std::to_string(t.offset) + ", expected " +
                        std::to_string(expected) +
                        " (the end of the tensor before, padded to the alignment of " +
                        std::to_string(alignment) + ")");
    }
    std::uint64_t end = 0, abs_end = 0;
    if (__builtin_add_overflow(t.offset, t.bytes, &end) ||
        __builtin_add_overflow(data_start, end, &abs_end) || abs_end > file_size) {
      return c.fail(Rule::kGgufOutOfBounds,
                    "tensor " + ref + " (" + std::to_string(t.bytes) + " bytes at data offset " +
                        std::to_string(t.offset) + ") ends past the end of the file (" +
                        std::to_string(file_size) + " bytes, data from byte " +
                        std::to_string(data_start) + ")");
    }
    // Padded to the alignment; cannot overflow: end <= file_size.
    expected = (end + alignment - 1) / alignment * alignment;
  }
  return true;
}

}  // namespace stfs::gguf
