// Tree: the immutable namespace of a mount (DESIGN.md §2, §5).
//
// Layout and inode numbering. Nodes are laid out breadth first, and the
// children of every directory take consecutive positions, sorted by file
// name: lookup is a binary search in that range, readdir offsets are
// positions in it. For a file source the inode number is the position (1 is
// the root), so the same source always gets the same numbers. For a
// directory source, whose tree is rebuilt when the folder changes (and a
// polled file source, rebuilt when the file is replaced), the
// inode number is a hash of the node's path and of its source file's
// identity (device, inode, mtime, size): unchanged files keep their
// numbers across rebuilds, and a replaced file gets a new one, so the
// kernel never serves its old cached pages for the new bytes. A tree never
// changes once built, so readers take no lock.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "stfs/source/folder_fs.hpp"
#include "stfs/source/model.hpp"
#include "stfs/base/result.hpp"

namespace stfs {

using Ino = std::uint64_t;
inline constexpr Ino kRootIno = 1;

enum class NodeKind : std::uint8_t {
  kDir,
  kTensor,  // bytes of a source file range
  kBlob,    // bytes held in memory (the JSON files)
  kFile,    // a whole plain file of a directory source, as it is
  kNpy,     // blob `blob` (an NPY header), then the bytes of tensor `index`
  kF32,     // tensor `index` converted to float32 on the fly
  kPacked,  // packed file `index`: blob `blob` (a header), then byte ranges of shards
};

// One byte range of a packed file (-o packed): `size` bytes of source
// `model` from `source_offset`, at `file_offset` in the packed file.
struct PackedSegment {
  std::uint64_t file_offset = 0;
  std::uint64_t source_offset = 0;
  std::uint64_t size = 0;
  std::uint32_t model = 0;
};

struct Node {
  // File name in the parent; empty for the root. Points into the model's
  // header (names that map to themselves) or into Tree::name_store_.
  std::string_view name;
  Ino parent = kRootIno;
  NodeKind kind = NodeKind::kDir;
  std::uint32_t model = 0;        // kTensor, kFile: index into Tree::models()
  std::uint32_t stat = 0;         // index into the stats that give modes, owners, times
  std::uint32_t index = 0;        // kTensor: index into header().tensors; kBlob: into blobs
  std::uint64_t offset = 0;       // kTensor: absolute offset of the first byte in the source
  std::uint64_t size = 0;         // bytes (files)
  Ino ino = 0;                    // this node's inode number
  std::uint64_t first_child = 0;  // kDir: children are positions [first_child, +child_count)
  std::uint64_t child_count = 0;
  std::uint64_t nlink_extra = 0;  // kDir: number of subdirectories
  std::uint32_t blob = 0;         // kNpy: the header blob
};

// Optional views of each model (DESIGN.md §6).
struct ViewOptions {
  bool npy = false;   // -o npy: __npy__/<name>.npy
  bool tree = false;  // -o tree: dotted names as nested directories
  bool f32 = false;   // -o f32: __f32__/<name>, every floating tensor as float32
  bool packed = false;  // -o packed: __packed__/<X>.safetensors per sharded checkpoint
  // Folder sources: every valid X.safetensors stays a file at its own
  // name (its validated header, then its data in place), its tensor
  // directory beside it as X.safetensors.d/ (kOriginalsSuffix). A mount's
  // default (options.hpp); -o model_dirs turns it off.
  bool originals = false;
};

// With -o originals, the tensor directory of X.safetensors is
// X.safetensors.d; a source entry whose name ends so is left out.
inline constexpr std::string_view kOriginalsSuffix = ".d";

// The reserved directory of the packed view.
inline constexpr std::string_view kPackedDir = "__packed__";

// In the tree view, a tensor whose name is also a prefix of others (`w`
// beside `w.absmax`) lives inside that directory under this name.
inline constexpr std::string_view kSelfTensor = "__tensor__";

// What the owner-related mount options override.
struct AttrOptions {
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  mode_t umask = 0;
};

class TreeBuilder;
class Tree;

// How Tree::for_directory reads a folder.
struct FolderOptions {
  AttrOptions attr;
  Limits limits;
  ViewOptions views;
  // A path left out (the mountpoint, when it lies inside the folder:
  // scanning it would read the mount itself).
  std::string skip;
  // The tree this one replaces: its sources whose identity (device, inode,
  // size, mtime, ctime) is unchanged are reused, not reopened, so
  // descriptors and mappings scale with distinct files.
  const Tree* previous = nullptr;
  SourcePolicy policy;
  // Where the folder is read from: the system's filesystem (nullptr), or
  // one held in memory (the folder fuzzer's).
  const FolderFs* fs = nullptr;
  // A confined daemon (sandbox.hpp) may open only beneath these (empty:
  // anywhere): a link that resolves elsewhere is left out with a warning
  // that names the remedy, rather than an open that fails.
  std::vector<std::string> confined_to;
};

class Tree {
 public:
  // One model at the root: __header__.json, __metadata__.json and one file
  // per tensor. Fails with EEXIST when two tensor names map to one file name.
  // `perm`: the permission bits the access rule presents for the source
  // (default: its own mode's). `hashed`: inode numbers from the source's
  // identity, as for a directory source, for a file source that is polled
  // and may be replaced (the kernel must not serve the old file's pages).
  static Result<Tree> for_model(Model model, const AttrOptions& attr = {},
                                const struct ViewOptions& views = {},
                                std::optional<mode_t> perm = std::nullopt, bool hashed = false);

  // A model folder (DESIGN.md §4), mirrored recursively: every valid
  // X.safetensors becomes a directory laid out as for_model does, every
  // X.safetensors.index.json adds a merged directory of its shards' tensors,
  // every other regular file appears as it is. Symlinks to regular files
  // are followed; symlinks to directories are not (no loops). An invalid
  // .safetensors file is left out with a warning naming the rule.
  static Result<Tree> for_directory(const std::string& root, const FolderOptions& opts = {});

  std::size_t node_count() const { return nodes_.size(); }
  // nullptr if no node has inode number `ino`.
  const Node* node(Ino ino) const {
    if (!hashed_) return ino >= 1 && ino <= nodes_.size() ? &nodes_[ino - 1] : nullptr;
    auto it = by_ino_.find(ino);
    return it == by_ino_.end() ? nullptr : &nodes_[it->second];
  }
  // The node at layout position `pos` (1-based; a directory's children are
  // consecutive positions).
  const Node* node_at(std::uint64_t pos) const {
    return pos >= 1 && pos <= nodes_.size() ? &nodes_[pos - 1] : nullptr;
  }
  // Whether inode numbers are hashes (directory sources) rather than
  // positions (file sources).
  bool hashed_inos() const { return hashed_; }
  // The child of directory `parent` named `name`, or 0.
  Ino find_child(Ino parent, std::string_view name) const;

  std::size_t model_count() const { return models_.size(); }
  const Model& model(std::uint32_t i) const { return *models_[i]; }
  // Sources are shared: a rebuilt folder tree reuses the unchanged ones.
  const std::shared_ptr<const Model>& model_ptr(std::uint32_t i) const { return models_[i]; }
  // Tensors served, over all models (for the STATUS line).
  std::size_t tensor_count() const { return tensor_count_; }
  const std::string& blob(std::uint32_t i) const { return blobs_[i]; }
  // The segments of packed file `i` (a kPacked node's index), by file offset.
  const std::vector<PackedSegment>& packed(std::uint32_t i) const { return packed_[i]; }
  // The tensor behind a kTensor, kNpy or kF32 node.
  const TensorInfo& tensor(const Node& n) const {
    return models_[n.model]->header().tensors[n.index];
  }

  // stat(2) view of a node: modes and owners from the source (DESIGN.md §2).
  struct stat attr(Ino ino) const;
  // Sum of all file sizes, for statfs.
  std::uint64_t total_bytes() const { return total_bytes_; }

  static constexpr blksize_t kBlockSize = 1 << 20;

 private:
  std::vector<Node> nodes_;
  // Encoded names that differ from their tensor names. A deque never moves
  // its elements, so the views in nodes_ stay valid.
  std::deque<std::string> name_store_;
  std::vector<std::shared_ptr<const Model>> models_;
  std::vector<mode_t> perms_;  // per source: the access rule's permission bits
  std::vector<std::string> blobs_;
  std::vector<std::vector<PackedSegment>> packed_;
  std::vector<struct stat> stats_;
  std::size_t tensor_count_ = 0;
  bool hashed_ = false;
  std::unordered_map<Ino, std::uint32_t> by_ino_;  // hashed: inode -> position - 1
  friend class TreeBuilder;
  AttrOptions attr_;
  std::uint64_t total_bytes_ = 0;
};

}  // namespace stfs
