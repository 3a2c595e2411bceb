// The byte layout (SAFETENSORS.md §4 steps 6-7): unique names, tensors
// that tile the buffer from 0, sizes that match shapes and dtypes, and
// data that ends exactly at the end of the file.
#include <algorithm>
#include <functional>

#include "parse_steps.hpp"

namespace stfs::parse {
namespace {

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

}  // namespace

std::optional<ParseError> check_layout(const Header& h, std::uint64_t file_size) {
  if (auto dup = find_duplicate_name(h.tensors)) {
    // The reference silently keeps the last; other parsers keep the first.
    return json_error("duplicate tensor name " + tensor_ref(*dup));
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
      return fail(Rule::kInvalidOffset, "invalid offset for tensor " + tensor_ref(t.name) + ": [" +
                                            std::to_string(t.begin) + ", " + std::to_string(t.end) +
                                            ") does not start at " + std::to_string(cursor));
    }
    cursor = t.end;
    // Left to right from 1, as the reference does: [2^64-1, 2^64-1, 0]
    // overflows although its true product is 0.
    std::uint64_t count = 1;
    for (std::uint64_t d : t.shape) {
      if (__builtin_mul_overflow(count, d, &count)) {
        return fail(Rule::kValidationOverflow, "validation overflow: shape of tensor " +
                                                   tensor_ref(t.name) + " overflows 64 bits");
      }
    }
    std::uint64_t bits = 0;
    if (__builtin_mul_overflow(count, std::uint64_t{dtype_bits(t.dtype)}, &bits)) {
      return fail(Rule::kValidationOverflow, "validation overflow: bit count of tensor " +
                                                 tensor_ref(t.name) + " overflows 64 bits");
    }
    if (bits % 8 != 0) {
      return fail(Rule::kMisalignedSlice, "misaligned slice: tensor " + tensor_ref(t.name) +
                                              " holds " + std::to_string(bits) +
                                              " bits, not whole bytes");
    }
    if (t.end - t.begin != bits / 8) {
      return fail(Rule::kTensorInvalidInfo, "invalid shape, data type, or offset for tensor " +
                                                tensor_ref(t.name) + ": " +
                                                std::to_string(t.end - t.begin) +
                                                " bytes, expected " + std::to_string(bits / 8));
    }
  }

  // Step 7: the data ends exactly at the end of the file. Checked, unlike
  // the reference, whose unchecked add wraps.
  std::uint64_t expected_end = 0;
  if (__builtin_add_overflow(cursor, h.data_start(), &expected_end) || expected_end != file_size) {
    return fail(Rule::kMetadataIncompleteBuffer,
                "incomplete metadata, file not fully covered: tensors end at byte " +
                    std::to_string(cursor) + " of the buffer, file has " +
                    std::to_string(file_size - h.data_start()));
  }
  return std::nullopt;
}

}  // namespace stfs::parse
