#include "gguf_splits.hpp"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <unordered_map>

#include "stfs/format/json_writer.hpp"

namespace stfs {
namespace {

// Per split, this many left-out tensors are named in the log.
constexpr std::size_t kMaxNamedWarnings = 5;
// gguf-split writes at most 99999 parts (five digits).
constexpr unsigned kMaxParts = 99999;

struct SplitKeys {
  bool present = false;
  std::uint64_t no = 0, count = 0, tensors = 0;
};

// split.no, split.count and split.tensors.count of a part's metadata.
SplitKeys split_keys(const Header& h) {
  SplitKeys k;
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(h.gguf_metadata).get(root)) return k;
  std::int64_t no, count, tensors;
  if (root["split.no"].get_int64().get(no) || root["split.count"].get_int64().get(count) ||
      root["split.tensors.count"].get_int64().get(tensors) || no < 0 || count < 0 ||
      tensors < 0) {
    return k;
  }
  k.present = true;
  k.no = static_cast<std::uint64_t>(no);
  k.count = static_cast<std::uint64_t>(count);
  k.tensors = static_cast<std::uint64_t>(tensors);
  return k;
}

std::string part_name(const std::string& prefix, unsigned no, unsigned count) {
  char tail[32];
  std::snprintf(tail, sizeof tail, "-%05u-of-%05u.gguf", no, count);
  return prefix + tail;
}

void add_split(TreeBuilder& b, TreeBuilder::Id dir, const std::string& path,
               const std::string& prefix, unsigned count,
               const std::vector<std::string>& siblings,
               const std::map<std::string, std::uint32_t>& models) {
  const std::string first = part_name(prefix, 1, count);
  const std::string full = path + "/" + prefix + "-*-of-" + first.substr(first.size() - 10, 5) +
                           ".gguf";
  std::size_t missing = 0;
  auto left_out = [&](std::string_view what, const std::string& why) {
    if (++missing <= kMaxNamedWarnings) {
      spdlog::warn("{}: {} left out of the merged view: {}", full, shorten_for_message(what), why);
    }
  };
  // The parts that can be served: valid, and their keys agree with their
  // names. split.tensors.count is the split's total, the same in each.
  std::vector<std::pair<unsigned, std::uint32_t>> parts;  // (no, source)
  std::optional<std::uint64_t> total;
  for (unsigned no = 1; no <= count; ++no) {
    const std::string name = part_name(prefix, no, count);
    auto m = models.find(name);
    if (m == models.end()) {
      left_out(name, std::binary_search(siblings.begin(), siblings.end(), name)
                         ? "the part is not a valid GGUF file"
                         : "the part is missing");
      continue;
    }
    const SplitKeys k = split_keys(b.source(m->second).header());
    if (!k.present) {
      left_out(name, "no split.no, split.count and split.tensors.count");
      continue;
    }
    if (k.no != no - 1 || k.count != count) {
      left_out(name, "split.no " + std::to_string(k.no) + " of split.count " +
                         std::to_string(k.count) + " does not match its name");
      continue;
    }
    if (total && *total != k.tensors) {
      left_out(name, "split.tensors.count " + std::to_string(k.tensors) + " differs from " +
                         std::to_string(*total) + " in the parts before it");
      continue;
    }
    total = k.tensors;
    parts.emplace_back(no, m->second);
  }
  if (parts.empty()) return;

  // Which part holds which tensor; a tensor two parts hold is served by
  // neither.
  std::unordered_map<std::string_view, std::pair<std::uint32_t, std::uint32_t>> holder;
  std::unordered_map<std::string_view, int> holders;
  std::vector<std::string_view> order;
  for (const auto& [no, src] : parts) {
    const auto& tensors = b.source(src).header().tensors;
    for (std::uint32_t i = 0; i < tensors.size(); ++i) {
      if (holders[tensors[i].name]++ == 0) {
        holder.emplace(tensors[i].name, std::pair{src, i});
        order.push_back(tensors[i].name);
      }
    }
  }

  std::string dirname = prefix + ".gguf";
  if (std::binary_search(siblings.begin(), siblings.end(), dirname)) {
    dirname += ".merged";
  } else if (b.views().originals) {
    dirname += kOriginalsSuffix;
  }
  const std::uint32_t first_src = parts.front().second;
  const std::uint32_t first_stat = b.add_model_stat(first_src);
  auto sub = b.add_dir(dir, dirname, first_stat);
  // The model's key/value pairs are the first part's (the others carry
  // only the split keys).
  const Header& head = b.source(parts.front().second).header();
  b.add_blob(sub, std::string(kMetadataFile),
             parts.front().first == 1 ? head.gguf_metadata + "\n" : std::string("{}\n"),
             first_stat);
  const std::vector<std::string_view> reserved = {kHeaderFile, kMetadataFile};
  std::unordered_map<std::uint32_t, std::uint32_t> part_stat;
  std::size_t served = 0;
  for (std::string_view tensor : order) {
    if (holders[tensor] > 1) {
      left_out(tensor, "two parts hold it");
      continue;
    }
    const auto [src, index] = holder[tensor];
    std::string_view file = tensor;
    if (!maps_to_itself(file, reserved)) file = b.keep_name(encode_name(file, reserved));
    auto st = part_stat.find(src);
    if (st == part_stat.end()) st = part_stat.emplace(src, b.add_model_stat(src)).first;
    b.add_tensor(sub, file, src, index, st->second);
    ++served;
  }
  if (total && parts.size() == count && served + missing != *total && served != *total) {
    spdlog::warn("{}: split.tensors.count says {}, the parts hold {}", full, *total, served);
  }
  if (missing > kMaxNamedWarnings) {
    spdlog::warn("{}: {} more left out", full, missing - kMaxNamedWarnings);
  }
  spdlog::info("{}: merged view {} with {} tensors from {} of {} parts", full, dirname, served,
               parts.size(), count);
}

}  // namespace

bool parse_split_name(std::string_view name, std::string& prefix, unsigned& no,
                      unsigned& count) {
  // PREFIX-NNNNN-of-MMMMM.gguf, as llama.cpp's llama_split_path writes it.
  constexpr std::string_view kTail = ".gguf";
  constexpr std::size_t kLen = 1 + 5 + 4 + 5;  // "-00001-of-00003"
  if (name.size() <= kLen + kTail.size() || !name.ends_with(kTail)) return false;
  const std::string_view mid = name.substr(name.size() - kTail.size() - kLen, kLen);
  auto digits = [](std::string_view s, unsigned& out) {
    out = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      out = out * 10 + static_cast<unsigned>(c - '0');
    }
    return true;
  };
  if (mid[0] != '-' || mid.substr(6, 4) != "-of-" || !digits(mid.substr(1, 5), no) ||
      !digits(mid.substr(10, 5), count)) {
    return false;
  }
  if (no == 0 || count == 0 || no > count || count > kMaxParts) return false;
  prefix = std::string(name.substr(0, name.size() - kTail.size() - kLen));
  return !prefix.empty();
}

void add_gguf_split_views(TreeBuilder& b, TreeBuilder::Id dir, const std::string& path,
                          const std::vector<std::string>& siblings,
                          const std::map<std::string, std::uint32_t>& models) {
  // Every split that at least one entry names, once: (prefix, count).
  std::vector<std::pair<std::string, unsigned>> splits;
  for (const std::string& name : siblings) {
    std::string prefix;
    unsigned no, count;
    if (parse_split_name(name, prefix, no, count)) splits.emplace_back(prefix, count);
  }
  std::sort(splits.begin(), splits.end());
  splits.erase(std::unique(splits.begin(), splits.end()), splits.end());
  for (const auto& [prefix, count] : splits) {
    if (count < 2) continue;  // one part is the model itself
    add_split(b, dir, path, prefix, count, siblings, models);
  }
}

}  // namespace stfs
