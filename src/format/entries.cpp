// The entries of the header object: __metadata__, and each tensor's
// dtype, shape and data_offsets (SAFETENSORS.md §5, §7.2).
#include <algorithm>
#include <cstring>

#include "parse_steps.hpp"

namespace stfs::parse {
namespace {

// Calls sink(n) for each element of an array of exact u64 integers.
template <typename Sink>
std::optional<ParseError> parse_uint_array(od::value v, std::string_view field, Sink&& sink) {
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

}  // namespace

std::optional<ParseError> parse_metadata(od::value v, Header& h) {
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

std::optional<ParseError> parse_entry(std::string_view name, od::value v, Header& h,
                                      std::vector<Slot>& slots) {
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
  slots.push_back(slot);
  return std::nullopt;
}

void set_views(Header& h, const std::vector<Slot>& slots) {
  for (std::size_t i = 0; i < h.tensors.size(); ++i) {
    const Slot& sl = slots[i];
    h.tensors[i].name = std::string_view(h.name_storage.data() + sl.name_off, sl.name_len);
    h.tensors[i].shape =
        std::span<const std::uint64_t>(h.shape_storage.data() + sl.shape_off, sl.rank);
  }
}

}  // namespace stfs::parse
