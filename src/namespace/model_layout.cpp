// The layout of one model under a directory (DESIGN.md §2, §6): its JSON
// files, one file per tensor, and the views (npy, f32, tree) of each.
#include "tree_builder.hpp"

#include <algorithm>
#include <map>

#include "stfs/format/convert.hpp"
#include "stfs/format/json_writer.hpp"
#include "stfs/format/npy.hpp"

namespace stfs {

void TreeBuilder::add_tensor(Id parent, std::string_view file_name, std::uint32_t source,
                             std::uint32_t tensor, std::uint32_t stat, bool count) {
  const Header& h = tree_.models_[source]->header();
  Draft d;
  d.name = file_name;
  d.node.kind = NodeKind::kTensor;
  d.node.model = source;
  d.node.index = tensor;
  d.node.offset = h.data_start() + h.tensors[tensor].begin;
  d.node.size = h.tensors[tensor].size();
  d.node.stat = stat;
  drafts_.push_back(std::move(d));
  drafts_[parent].kids.push_back(static_cast<Id>(drafts_.size() - 1));
  if (count) ++tree_.tensor_count_;
}

void TreeBuilder::add_npy(Id parent, const std::vector<std::string_view>& reserved,
                          std::uint32_t source, std::uint32_t tensor, std::uint32_t stat) {
  const Header& h = tree_.models_[source]->header();
  // F6, F4 (no whole-byte elements) and quantised GGUF blocks have none.
  auto header = has_elements(h.tensors[tensor]) ? npy_header(h.tensors[tensor]) : std::nullopt;
  if (!header) return;
  Draft d;
  // Shortened after the suffix, so every name fits in 255 bytes.
  d.name = keep(encode_name_with_suffix(h.tensors[tensor].name, reserved, ".npy"));
  d.node.kind = NodeKind::kNpy;
  d.node.model = source;
  d.node.index = tensor;
  d.node.blob = static_cast<std::uint32_t>(tree_.blobs_.size());
  d.node.offset = h.data_start() + h.tensors[tensor].begin;
  d.node.size = header->size() + h.tensors[tensor].size();
  d.node.stat = stat;
  tree_.blobs_.push_back(std::move(*header));
  drafts_.push_back(std::move(d));
  drafts_[parent].kids.push_back(static_cast<Id>(drafts_.size() - 1));
}

void TreeBuilder::add_model_contents(Id dir, std::uint32_t source) {
  const Header& h = tree_.models_[source]->header();
  const std::uint32_t stat = add_model_stat(source);
  add_blob(dir, std::string(kHeaderFile), header_json(h), stat);
  add_blob(dir, std::string(kMetadataFile), metadata_json(h), stat);
  std::vector<std::string_view> reserved = {kHeaderFile, kMetadataFile};
  Id npy_dir = 0, f32_dir = 0;
  if (views_.npy) {
    // The view's directory is reserved, so no tensor can hide it.
    reserved.push_back(kNpyDir);
    npy_dir = add_dir(dir, std::string(kNpyDir), stat);
  }
  if (views_.f32) {
    reserved.push_back(kF32Dir);
    f32_dir = add_dir(dir, std::string(kF32Dir), stat);
  }
  drafts_.reserve(drafts_.size() + h.tensors.size());
  drafts_[dir].kids.reserve(drafts_[dir].kids.size() + h.tensors.size());
  for (std::size_t i = 0; i < h.tensors.size(); ++i) {
    std::string_view name = h.tensors[i].name;
    // Most names map to themselves: point at the header, copy nothing.
    if (!maps_to_itself(name, reserved)) name = keep(encode_name(name, reserved));
    if (!views_.tree) add_tensor(dir, name, source, static_cast<std::uint32_t>(i), stat);
    if (views_.npy) add_npy(npy_dir, reserved, source, static_cast<std::uint32_t>(i), stat);
    const bool elements = has_elements(h.tensors[i]);
    if (views_.f32 && elements && h.tensors[i].dtype == Dtype::kF32) {
      // Already float32: the same zero-copy bytes as the raw file.
      add_tensor(f32_dir, name, source, static_cast<std::uint32_t>(i), stat, /*count=*/false);
    } else if (const auto dec = views_.f32 ? f32_decoder(h.tensors[i]) : std::nullopt) {
      Draft d;
      d.name = name;
      d.node.kind = NodeKind::kF32;
      d.node.model = source;
      d.node.index = static_cast<std::uint32_t>(i);
      d.node.offset = h.data_start() + h.tensors[i].begin;
      d.node.size = h.tensors[i].size() / dec->block_bytes * dec->block * 4;
      d.node.stat = stat;
      drafts_.push_back(std::move(d));
      drafts_[f32_dir].kids.push_back(static_cast<Id>(drafts_.size() - 1));
    }
  }
  if (views_.tree) add_tensor_tree(dir, source, stat, reserved);
}

void TreeBuilder::add_tensor_tree(Id dir, std::uint32_t source, std::uint32_t stat,
                                  const std::vector<std::string_view>& root_reserved) {
  const Header& h = tree_.models_[source]->header();
  // Each component goes through the name mapping on its own; the model's
  // own files are reserved at its top, __tensor__ everywhere.
  std::vector<std::string_view> top = root_reserved;
  top.push_back(kSelfTensor);
  const std::vector<std::string_view> inner = {kSelfTensor};
  auto components = [&](std::string_view name) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
      std::size_t dot = name.find('.', start);
      std::string_view part = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
      out.push_back(encode_name(part, out.empty() ? top : inner));
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
    return out;
  };
  // Every path that is a directory: all proper prefixes of every name.
  std::map<std::vector<std::string>, Id> dirs;
  std::vector<std::vector<std::string>> paths;
  paths.reserve(h.tensors.size());
  for (const TensorInfo& t : h.tensors) paths.push_back(components(t.name));
  for (const auto& p : paths) {
    std::vector<std::string> prefix;
    Id parent = dir;
    for (std::size_t i = 0; i + 1 < p.size(); ++i) {
      prefix.push_back(p[i]);
      auto it = dirs.find(prefix);
      if (it == dirs.end()) it = dirs.emplace(prefix, add_dir(parent, p[i], stat)).first;
      parent = it->second;
    }
  }
  for (std::size_t i = 0; i < paths.size(); ++i) {
    const auto& p = paths[i];
    std::vector<std::string> parent_path(p.begin(), p.end() - 1);
    Id parent = parent_path.empty() ? dir : dirs.at(parent_path);
    // A name that is also a directory (w beside w.absmax) goes inside it.
    if (auto d = dirs.find(p); d != dirs.end()) {
      add_tensor(d->second, kSelfTensor, source, static_cast<std::uint32_t>(i), stat);
    } else {
      add_tensor(parent, keep(p.back()), source, static_cast<std::uint32_t>(i), stat);
    }
  }
}

}  // namespace stfs
