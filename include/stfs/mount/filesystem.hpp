// Filesystem: the FUSE-free operations of a mount, over an immutable Tree.
//
// Every call returns a value or an errno; fuse_adapter.cpp turns them into
// replies. Nothing here takes a lock: the tree never changes, and the only
// mutable state (how much of each source is still intact) is atomic.
#pragma once

#include <sys/statvfs.h>

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stfs/source/mapping.hpp"
#include "stfs/base/result.hpp"
#include "stfs/namespace/tree.hpp"

namespace stfs {

// One part of a packed file's READ: bytes in memory (the header), or
// `size` source bytes of `model` at `source_offset`, mapped at `data` or
// to be read with pread.
struct ReadPiece {
  const char* data = nullptr;
  std::size_t size = 0;
  std::uint32_t model = 0;
  std::uint64_t source_offset = 0;
  bool from_source = false;  // bytes of a source, not of memory
  bool mapped = false;       // `data` points into the source's mapping
};

// Where the bytes of a READ come from: an address in the source mapping
// (never dereferenced by the daemon) or in a blob.
struct ReadPlan {
  const char* head = nullptr;  // in-memory bytes that come first (an NPY header)
  std::size_t head_size = 0;
  const char* data = nullptr;
  std::size_t size = 0;
  std::uint32_t model = 0;
  bool from_source = false;  // true: `data` points into a source mapping
  bool from_fd = false;      // true: read `size` bytes at `source_offset` (read_source)
  // (source_offset: where `data`'s bytes start in the source, both paths)
  bool converted = false;    // a kF32 file: call read_converted instead
  bool packed = false;       // a kPacked file: the bytes are `pieces`, in order
  std::vector<ReadPiece> pieces;
  std::uint64_t source_offset = 0;

  std::size_t total() const { return head_size + size; }
};

struct DirEntry {
  std::string_view name;
  Ino ino;
  std::uint64_t next_offset;  // the offset to resume after this entry
};

class Filesystem {
 public:
  static Result<std::unique_ptr<Filesystem>> create(Tree tree);

  const Tree& tree() const { return tree_; }

  Result<struct stat> lookup(Ino parent, std::string_view name) const;
  Result<struct stat> getattr(Ino ino) const;
  // Checks an open of a file (EISDIR for directories, EROFS for writes).
  Result<void> open(Ino ino, int flags) const;
  Result<void> opendir(Ino ino) const;

  // Entries of directory `ino` from `offset` on: 0 is ".", 1 is "..", then
  // the children in name order. `emit` returns false when the reply is full.
  template <typename Emit>
  Result<void> readdir(Ino ino, std::uint64_t offset, Emit&& emit) const;

  // Clamps [offset, offset + size) to the file. EIO if the range lies past
  // what is left of a truncated source. For a kF32 file the plan only says
  // `converted`.
  Result<ReadPlan> read(Ino ino, std::uint64_t offset, std::size_t size) const;
  // For a plan with from_fd, or a small one from a mapping read without
  // it (no readahead: see Model::read): pread its bytes into `buf`
  // (plan.size bytes).
  // EIO if the source ends first (it shrank: never zeros), ESTALE and other
  // errors as the source gave them.
  Result<void> read_source(const ReadPlan& plan, char* buf) const;
  // For kF32 nodes: the float32 bytes [offset, offset + size), converted from
  // the source read with pread (never through the mapping: a truncated
  // source then gives EIO, not SIGBUS). Fills `out`.
  Result<void> read_converted(Ino ino, std::uint64_t offset, std::size_t size,
                              std::string& out) const;

  // After a READ of source bytes [offset, offset + size) of `model` was
  // answered: the mount's page cache now holds them, so the source's own
  // copy goes (Model::release_served).
  void release_source_range(std::uint32_t model, std::uint64_t offset, std::uint64_t size) const;

  // The kernel could not copy from the mapping of `model` (EFAULT): re-read
  // the source's size and stop serving what is gone.
  void source_fault(std::uint32_t model) const;
  std::uint64_t intact_size(std::uint32_t model) const { return tree_.model(model).intact(); }
  // "source X shrank to N bytes while mounted; ...", for the log.
  std::string truncation_message(std::uint32_t model) const;

  // Value of xattr `name`; ENODATA if it does not exist.
  Result<std::string> getxattr(Ino ino, std::string_view name) const;
  // NUL-separated names.
  Result<std::string> listxattr(Ino ino) const;

  struct statvfs statfs() const;

 private:
  explicit Filesystem(Tree tree) : tree_(std::move(tree)) {}
  Result<ReadPlan> read_packed(const Node& n, std::uint64_t offset, ReadPlan plan) const;
  // EIO (and the intact size shrunk) if source `model` no longer holds
  // bytes up to `end`.
  Result<void> check_intact(std::uint32_t model, std::uint64_t end) const;

  Tree tree_;
};

template <typename Emit>
Result<void> Filesystem::readdir(Ino ino, std::uint64_t offset, Emit&& emit) const {
  const Node* n = tree_.node(ino);
  if (!n) return unexpected(Error{ENOENT, "no such inode"});
  if (n->kind != NodeKind::kDir) return unexpected(Error{ENOTDIR, "not a directory"});
  const std::uint64_t total = n->child_count + 2;
  for (std::uint64_t off = offset; off < total; ++off) {
    DirEntry e;
    if (off == 0) {
      e = {".", ino, 1};
    } else if (off == 1) {
      e = {"..", n->parent, 2};
    } else {
      const Node* c = tree_.node_at(n->first_child + (off - 2));
      e = {c->name, c->ino, off + 1};
    }
    if (!emit(e)) break;
  }
  return {};
}

}  // namespace stfs
