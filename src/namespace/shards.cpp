#include "shards.hpp"

#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "stfs/format/json_writer.hpp"

namespace stfs {
namespace {

// Index files are small (30-90 KB for real checkpoints); this bounds a
// hostile one. Checked against the file's size before anything is read.
constexpr std::uint64_t kMaxIndexBytes = 64 << 20;
// Per index, this many left-out tensors are named in the log; the rest are
// counted, so a hostile index cannot flood it.
constexpr std::size_t kMaxNamedWarnings = 5;

}  // namespace

namespace {

// The packed view's file for one index (-o packed): a safetensors header
// synthesised from the served tensors, shard by shard in shard-name order
// and by (begin, end, name) within a shard, with contiguous data_offsets, padded with
// spaces to a multiple of 8 as the reference writer does; then the shards'
// byte ranges, read in place.
void add_packed_file(TreeBuilder& b, TreeBuilder::Id dir, TreeBuilder::Id& packed_dir,
                     const std::string& name, std::uint32_t index_src,
                     std::vector<std::pair<std::uint32_t, std::uint32_t>> served,
                     const std::unordered_map<std::uint32_t, std::string_view>& shard_name,
                     const simdjson::dom::element* index_meta) {
  auto tensor = [&b](const std::pair<std::uint32_t, std::uint32_t>& s) -> const TensorInfo& {
    return b.source(s.first).header().tensors[s.second];
  };
  std::sort(served.begin(), served.end(), [&](const auto& x, const auto& y) {
    const std::string_view nx = shard_name.at(x.first), ny = shard_name.at(y.first);
    const TensorInfo& tx = tensor(x);
    const TensorInfo& ty = tensor(y);
    if (nx != ny) return nx < ny;
    if (tx.begin != ty.begin) return tx.begin < ty.begin;
    if (tx.end != ty.end) return tx.end < ty.end;  // an empty tensor before its neighbour
    return tx.name < ty.name;
  });
  // __metadata__: what every served shard's own metadata agrees on, then
  // the index's scalar "metadata" as strings (numbers and booleans in their
  // JSON spelling; objects, arrays and null dropped), the index winning.
  std::map<std::string, std::string> meta;  // sorted, as a header's metadata is
  std::vector<std::uint32_t> shards;
  for (const auto& s : served) {
    if (shards.empty() || shards.back() != s.first) shards.push_back(s.first);
  }
  if (!shards.empty()) {
    for (const auto& [k, v] : b.source(shards[0]).header().metadata) {
      bool all = true;
      for (std::size_t i = 1; i < shards.size() && all; ++i) {
        const auto& m = b.source(shards[i]).header().metadata;
        auto it = std::lower_bound(m.begin(), m.end(), k,
                                   [](const auto& kv, const std::string& key) { return kv.first < key; });
        all = it != m.end() && it->first == k && it->second == v;
      }
      if (all) meta[k] = v;
    }
  }
  if (index_meta) {
    simdjson::dom::object obj;
    if (!index_meta->get_object().get(obj)) {
      for (auto [k, v] : obj) {
        std::string_view str;
        if (!v.get_string().get(str)) {
          meta[std::string(k)] = std::string(str);
        } else if (v.is_number() || v.is_bool()) {
          meta[std::string(k)] = simdjson::minify(v);
        }
      }
    }
  }
  std::string json = "{";
  if (!meta.empty()) {
    json += "\"__metadata__\":";
    const std::vector<std::pair<std::string, std::string>> sorted(meta.begin(), meta.end());
    append_string_map(json, sorted);
  }
  std::uint64_t off = 0;
  std::vector<PackedSegment> segments;
  segments.reserve(served.size());
  mode_t perm = b.source_perm(index_src);
  for (const auto& s : served) {
    const TensorInfo& t = tensor(s);
    if (json.size() > 1) json += ',';
    append_tensor_entry(json, t, off, off + t.size());
    if (t.size() > 0) {
      const std::uint64_t src_off = b.source(s.first).header().data_start() + t.begin;
      // A shard's tensors lie back to back in it, as they do here: one
      // segment per run, so a read spans few pieces (replies take at most
      // IOV_MAX of them).
      PackedSegment* last = segments.empty() ? nullptr : &segments.back();
      if (last && last->model == s.first && last->file_offset + last->size == off &&
          last->source_offset + last->size == src_off) {
        last->size += t.size();
      } else {
        segments.push_back({off, src_off, t.size(), s.first});
      }
    }
    off += t.size();
    perm &= b.source_perm(s.first);  // the least of the index's and the shards'
  }
  json += '}';
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string head(8, '\0');
  for (int i = 0; i < 8; ++i) head[static_cast<std::size_t>(i)] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  head += json;
  for (PackedSegment& g : segments) g.file_offset += head.size();
  const std::uint32_t stat = b.add_stat(b.source(index_src).st(), perm);
  if (packed_dir == 0) packed_dir = b.add_dir(dir, std::string(kPackedDir), stat);
  b.add_packed(packed_dir, name, std::move(head), std::move(segments), stat);
}

}  // namespace

void add_merged_view(TreeBuilder& b, TreeBuilder::Id dir, const std::string& path,
                     const std::string& index, std::uint32_t index_src,
                     const std::vector<std::string>& siblings,
                     const std::map<std::string, std::uint32_t>& models,
                     TreeBuilder::Id& packed_dir) {
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
  const bool has_meta = !root["metadata"].get(meta);
  if (has_meta) {
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

  const std::string base = index.substr(0, index.size() - std::string_view(".index.json").size());
  // X.safetensors, or with -o originals X.safetensors.d as a model's own
  // tensor directory is named; X.safetensors.merged when the folder has an
  // X.safetensors itself.
  std::string name = base;
  if (std::binary_search(siblings.begin(), siblings.end(), name)) {
    name += ".merged";
  } else if (b.views().originals) {
    name += kOriginalsSuffix;
  }
  // The directory and its metadata take the index file's presented modes;
  // each tensor takes its shard's, so nobody reads a shard they could not.
  const std::uint32_t index_stat = b.add_model_stat(index_src);
  auto sub = b.add_dir(dir, name, index_stat);
  b.add_blob(sub, std::string(kMetadataFile), metadata + "\n", index_stat);
  std::unordered_map<std::uint32_t, std::uint32_t> shard_stat;

  const std::vector<std::string_view> reserved = {kHeaderFile, kMetadataFile};
  std::size_t served = 0, missing = 0;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> served_list;  // (source, tensor)
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
      served_list.emplace_back(src, h->second.second);
      ++served;
    }
  }
  if (missing > kMaxNamedWarnings) {
    spdlog::warn("{}: {} more tensors left out", full, missing - kMaxNamedWarnings);
  }
  spdlog::info("{}: merged view {} with {} tensors ({} left out)", full, name, served, missing);
  if (b.views().packed) {
    add_packed_file(b, dir, packed_dir, base, index_src, std::move(served_list), shard_name,
                    has_meta ? &meta : nullptr);
  }
}

}  // namespace stfs
