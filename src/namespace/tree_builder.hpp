// TreeBuilder (private to the core): collects a directory hierarchy, then
// lays it out breadth first with sorted, consecutive children (tree.hpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "stfs/namespace/names.hpp"
#include "stfs/namespace/tree.hpp"

namespace stfs {

class TreeBuilder {
 public:
  using Id = std::uint32_t;  // a draft entry; 0 is the root

  TreeBuilder(const AttrOptions& attr, const struct stat& root_stat, const ViewOptions& views = {});

  // Adds a source, presented with permission bits `perm`; returns its
  // index for add_file/add_model_contents.
  std::uint32_t add_source(std::shared_ptr<const Model> m, mode_t perm);
  const Model& source(std::uint32_t i) const { return *tree_.models_[i]; }
  // Owner, group and times from `st`; permission bits `perm`, as the access
  // rule presents them (a directory's own, or a file's: tree.cpp's attr()
  // tells them apart by st's file type).
  std::uint32_t add_stat(const struct stat& st, mode_t perm);
  // The stat of source `i`, with its presented modes.
  std::uint32_t add_model_stat(std::uint32_t i);
  // Keeps a name alive as long as the tree; returns a view of it.
  std::string_view keep_name(std::string name) { return keep(std::move(name)); }

  Id add_dir(Id parent, std::string name, std::uint32_t stat);
  void add_blob(Id parent, std::string name, std::string content, std::uint32_t stat);
  void add_file(Id parent, std::string name, std::uint32_t source, std::uint32_t stat);
  // One tensor of a model; `file_name` is its mapped name. `count`: false
  // for a second file of the same tensor (the f32 view of an F32 tensor).
  void add_tensor(Id parent, std::string_view file_name, std::uint32_t source, std::uint32_t tensor,
                  std::uint32_t stat, bool count = true);
  // The layout of DESIGN.md §2 under `dir`: __header__.json,
  // __metadata__.json and one file per tensor of source `source`.
  void add_model_contents(Id dir, std::uint32_t source);

  // A packed file: `head` (8-byte length and JSON), then `segments`, which
  // cover the rest of the file in order.
  void add_packed(Id parent, std::string name, std::string head,
                  std::vector<PackedSegment> segments, std::uint32_t stat);
  const ViewOptions& views() const { return views_; }
  // The permission bits source `i` is presented with.
  mode_t source_perm(std::uint32_t i) const { return tree_.perms_[i]; }

  // Lays the tree out. Two entries of a directory with one name (FNV-1a
  // collisions of long tensor names, a merged view named like a file) fail
  // with EEXIST for a file source; for a folder (`leave_out_clashes`) the
  // later one is left out with a warning, so one entry never sinks the
  // folder. `hashed`: inode numbers from paths and source identities
  // (tree.hpp).
  Result<Tree> finish(bool hashed = false, bool leave_out_clashes = false);

 private:
  struct Draft {
    std::string_view name;
    Node node;
    std::vector<Id> kids;
  };
  std::string_view keep(std::string name);
  Result<void> hash_inodes();

  // Tensors of `source` under `dir` as nested directories split at '.'.
  void add_tensor_tree(Id dir, std::uint32_t source, std::uint32_t stat,
                       const std::vector<std::string_view>& reserved);
  void add_npy(Id parent, const std::vector<std::string_view>& reserved, std::uint32_t source,
               std::uint32_t tensor, std::uint32_t stat);

  Tree tree_;
  ViewOptions views_;
  std::vector<Draft> drafts_;
};

}  // namespace stfs
