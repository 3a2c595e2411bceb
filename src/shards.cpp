#include "shards.hpp"

#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

namespace stfs {
namespace {

// Index files are small (30-90 KB for real checkpoints); this bounds a
// hostile one. Checked against the file's size before anything is read.
constexpr std::uint64_t kMaxIndexBytes = 64 << 20;
// Per index, this many left-out tensors are named in the log; the rest are
// counted, so a hostile index cannot flood it.
constexpr std::size_t kMaxNamedWarnings = 5;

}  // namespace

void add_merged_view(TreeBuilder& b, TreeBuilder::Id dir, const std::string& path,
                     const std::string& index, std::uint32_t index_src,
                     const std::vector<std::string>& siblings,
                     const std::map<std::string, std::uint32_t>& models) {
  const std::string full = path + "/" + index;
  auto fail = [&](std::string_view why) { spdlog::warn("{}: no merged view: {}", full, why); };
  const Model& index_model = b.source(index_src);
  const auto size = static_cast<std::uint64_t>(index_model.st().st_size);
  if (size > kMaxIndexBytes) return fail("index larger than 64 MiB");
  // Read from the fd the scan opened (never by path again: a FIFO renamed
  // over the index in between would block us).
  simdjson::padded_string json(static_cast<std::size_t>(size));
  if (auto r = pread_full(index_model.fd(), json.data(), json.size(), 0); !r) {
    return fail("cannot read: " + r.error().message);
  }
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto e = parser.parse(json).get(root)) return fail(simdjson::error_message(e));
  simdjson::dom::object map;
  if (root["weight_map"].get_object().get(map)) return fail("no \"weight_map\" object");
  std::string metadata = "{}";
  simdjson::dom::element meta;
  if (!root["metadata"].get(meta)) {
    if (!meta.is_object()) return fail("\"metadata\" is not an object");
    metadata = simdjson::minify(meta);
  }

  // weight_map: tensor -> shard file name. A name listed twice with two
  // shards is ambiguous.
  std::unordered_map<std::string, std::string> wanted;
  std::unordered_set<std::string> dropped;
  for (auto [key, value] : map) {
    std::string_view shard;
    if (value.get_string().get(shard)) return fail("a \"weight_map\" value is not a string");
    auto [it, inserted] = wanted.emplace(std::string(key), std::string(shard));
    if (!inserted && it->second != shard) dropped.insert(std::string(key));
  }

  // Which shard holds which tensor, over every shard the index names.
  std::unordered_map<std::string_view, std::pair<std::uint32_t, std::uint32_t>> holder;
  std::unordered_map<std::string_view, std::string> twice;
  std::vector<std::string> shards;
  for (const auto& [tensor, shard] : wanted) shards.push_back(shard);
  std::sort(shards.begin(), shards.end());
  shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
  std::unordered_map<std::uint32_t, std::string_view> shard_name;
  for (const std::string& shard : shards) {
    auto m = models.find(shard);
    if (m == models.end()) continue;
    shard_name[m->second] = m->first;
    const auto& tensors = b.source(m->second).header().tensors;
    for (std::uint32_t i = 0; i < tensors.size(); ++i) {
      auto [it, inserted] = holder.emplace(tensors[i].name, std::pair{m->second, i});
      if (!inserted) {
        twice[tensors[i].name] = std::string(shard_name[it->second.first]) + " and " + shard;
      }
    }
  }

  std::string name = index.substr(0, index.size() - std::string_view(".index.json").size());
  if (std::binary_search(siblings.begin(), siblings.end(), name)) name += ".merged";
  // The directory and its metadata take the index file's presented modes;
  // each tensor takes its shard's, so nobody reads a shard they could not.
  const std::uint32_t index_stat = b.add_model_stat(index_src);
  auto sub = b.add_dir(dir, name, index_stat);
  b.add_blob(sub, std::string(kMetadataFile), metadata + "\n", index_stat);
  std::unordered_map<std::uint32_t, std::uint32_t> shard_stat;

  const std::vector<std::string_view> reserved = {kHeaderFile, kMetadataFile};
  std::size_t served = 0, missing = 0;
  auto left_out = [&](std::string_view tensor, const std::string& why) {
    if (++missing <= kMaxNamedWarnings) {
      spdlog::warn("{}: tensor `{}` left out: {}", full, shorten_for_message(tensor), why);
    }
  };
  for (const auto& [tensor, shard] : wanted) {
    if (dropped.count(tensor)) {
      left_out(tensor, "\"weight_map\" names two shards for it");
      continue;
    }
    auto m = models.find(shard);
    auto h = holder.find(tensor);
    if (m == models.end()) {
      left_out(tensor, "shard " + shorten_for_message(shard) + " is missing or invalid");
    } else if (h != holder.end() && twice.count(h->first)) {
      left_out(tensor, "two shards hold it (" + twice[h->first] + ")");
    } else if (h == holder.end() || h->second.first != m->second) {
      left_out(tensor, "shard " + shorten_for_message(shard) + " does not hold it");
    } else {
      std::string_view file = h->first;  // the name in the shard's header
      if (!maps_to_itself(file, reserved)) file = b.keep_name(encode_name(file, reserved));
      const std::uint32_t src = h->second.first;
      auto st = shard_stat.find(src);
      if (st == shard_stat.end()) st = shard_stat.emplace(src, b.add_model_stat(src)).first;
      b.add_tensor(sub, file, src, h->second.second, st->second);
      ++served;
    }
  }
  if (missing > kMaxNamedWarnings) {
    spdlog::warn("{}: {} more tensors left out", full, missing - kMaxNamedWarnings);
  }
  spdlog::info("{}: merged view {} with {} tensors ({} left out)", full, name, served, missing);
}

}  // namespace stfs
