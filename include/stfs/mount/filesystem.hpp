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

#include "stfs/source/read_reply.hpp"
#include "stfs/base/result.hpp"
#include "stfs/namespace/tree.hpp"

namespace stfs {

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

  // The reply to a READ of [offset, offset + size), clamped to the file:
  // the namespace says which bytes (memory, source ranges, a conversion),
  // the source layer how they are read and what follows the send
  // (read_reply.hpp). EISDIR for a directory; EIO (ReadError::log) if the
  // range lies past what is left of a truncated source.
  Result<ReadReply, ReadError> read(Ino ino, std::uint64_t offset, std::size_t size) const;
  // True for files held in memory (the JSON files): a READ of one never
  // touches a source, so it never waits on one.
  bool in_memory(Ino ino) const;

  // Value of xattr `name`; ENODATA if it does not exist.
  Result<std::string> getxattr(Ino ino, std::string_view name) const;
  // NUL-separated names.
  Result<std::string> listxattr(Ino ino) const;

  struct statvfs statfs() const;

 private:
  explicit Filesystem(Tree tree) : tree_(std::move(tree)) {}
  // False if the segments leave a gap (never: they tile the file).
  bool add_packed(const Node& n, std::uint64_t offset, std::size_t size, ReadReply& r) const;

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
