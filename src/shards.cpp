#include "shards.hpp"

#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <unordered_map>

namespace stfs {
namespace {

// Index files are small (30-90 KB for real checkpoints); this bounds a
// hostile one.
constexpr std::size_t kMaxIndexBytes = 64 << 20;

}  // namespace

void add_merged_view(TreeBuilder& b, TreeBuilder::Id dir, const std::string& path,
                     const std::string& index, const std::vector<std::string>& siblings,
                     const std::map<std::string, std::uint32_t>& models) {
  const std::string full = path + "/" + index;
  auto fail = [&](std::string_view why) { spdlog::warn("{}: no merged view: {}", full, why); };
  simdjson::padded_string json;
  if (auto e = simdjson::padded_string::load(full).get(json))
    return fail(simdjson::error_message(e));
  if (json.size() > kMaxIndexBytes) return fail("index larger than 64 MiB");
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

  // weight_map: tensor -> shard file name. A name listed twice is ambiguous.
  std::unordered_map<std::string, std::string> wanted;
  std::vector<std::string> dropped;
  for (auto [key, value] : map) {
    std::string_view shard;
    if (value.get_string().get(shard)) return fail("a \"weight_map\" value is not a string");
    auto [it, inserted] = wanted.emplace(std::string(key), std::string(shard));
    if (!inserted && it->second != shard) dropped.push_back(std::string(key));
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
  // The directory and its metadata take the index file's modes; each
  // tensor takes its shard's, so nobody reads a shard they could not read.
  struct stat index_st {};
  if (::stat(full.c_str(), &index_st) != 0) return fail("cannot stat the index");
  const std::uint32_t index_stat = b.add_stat(index_st);
  auto sub = b.add_dir(dir, name, index_stat);
  b.add_blob(sub, std::string(kMetadataFile), metadata + "\n", index_stat);
  std::unordered_map<std::uint32_t, std::uint32_t> shard_stat;

  const std::vector<std::string_view> reserved = {kHeaderFile, kMetadataFile};
  std::size_t served = 0, missing = 0;
  for (const auto& [tensor, shard] : wanted) {
    if (std::find(dropped.begin(), dropped.end(), tensor) != dropped.end()) continue;
    auto m = models.find(shard);
    auto h = holder.find(tensor);
    if (m == models.end()) {
      spdlog::warn("{}: tensor `{}` left out: shard {} is missing or invalid", full, tensor, shard);
      ++missing;
    } else if (h != holder.end() && twice.count(h->first)) {
      spdlog::warn("{}: tensor `{}` left out: two shards hold it ({})", full, tensor,
                   twice[h->first]);
      ++missing;
    } else if (h == holder.end() || h->second.first != m->second) {
      spdlog::warn("{}: tensor `{}` left out: shard {} does not hold it", full, tensor, shard);
      ++missing;
    } else {
      std::string_view file = h->first;  // the name in the shard's header
      if (!maps_to_itself(file, reserved)) file = b.keep_name(encode_name(file, reserved));
      const std::uint32_t src = h->second.first;
      auto st = shard_stat.find(src);
      if (st == shard_stat.end())
        st = shard_stat.emplace(src, b.add_stat(b.source(src).st())).first;
      b.add_tensor(sub, file, src, h->second.second, st->second);
      ++served;
    }
  }
  for (const std::string& t : dropped) {
    spdlog::warn("{}: tensor `{}` left out: \"weight_map\" names two shards for it", full, t);
  }
  spdlog::info("{}: merged view {} with {} tensors ({} left out)", full, name, served,
               missing + dropped.size());
}

}  // namespace stfs
