#include "stfs/mount/filesystem.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "stfs/format/json_writer.hpp"
#include "stfs/namespace/names.hpp"

namespace stfs {
namespace {

Error err(int e, std::string what) { return Error{e, std::move(what)}; }

constexpr std::array<std::string_view, 5> kXattrs = {"user.stfs.name", "user.stfs.dtype",
                                                     "user.stfs.shape", "user.stfs.data_offsets",
                                                     "user.stfs.offset"};

}  // namespace

Result<std::unique_ptr<Filesystem>> Filesystem::create(Tree tree) {
  std::unique_ptr<Filesystem> fs(new Filesystem(std::move(tree)));
  for (std::uint32_t i = 0; i < fs->tree_.model_count(); ++i) {
    const Model& m = fs->tree_.model(i);
    // Every source is mapped by the time its tree is built (Tree::for_model,
    // the folder scan); an unmapped one would serve nothing.
    if (m.read_path() == ReadPath::kAuto ||
        (m.read_path() == ReadPath::kMmap && m.st().st_size > 0 && !m.mapping().data())) {
      return unexpected(err(EINVAL, m.path() + ": not prepared for serving"));
    }
  }
  return fs;
}

Result<struct stat> Filesystem::lookup(Ino parent, std::string_view name) const {
  const Node* dir = tree_.node(parent);
  if (!dir) return unexpected(err(ENOENT, "no such inode"));
  if (dir->kind != NodeKind::kDir) return unexpected(err(ENOTDIR, "not a directory"));
  if (name.size() > kNameMax) return unexpected(err(ENAMETOOLONG, "name too long"));
  Ino ino = tree_.find_child(parent, name);
  if (ino == 0) return unexpected(err(ENOENT, "no such file"));
  return tree_.attr(ino);
}

Result<struct stat> Filesystem::getattr(Ino ino) const {
  if (!tree_.node(ino)) return unexpected(err(ENOENT, "no such inode"));
  return tree_.attr(ino);
}

Result<void> Filesystem::open(Ino ino, int flags) const {
  const Node* n = tree_.node(ino);
  if (!n) return unexpected(err(ENOENT, "no such inode"));
  if (n->kind == NodeKind::kDir) return unexpected(err(EISDIR, "is a directory"));
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) {
    return unexpected(err(EROFS, "read-only filesystem"));
  }
  return {};
}

Result<void> Filesystem::opendir(Ino ino) const {
  const Node* n = tree_.node(ino);
  if (!n) return unexpected(err(ENOENT, "no such inode"));
  if (n->kind != NodeKind::kDir) return unexpected(err(ENOTDIR, "not a directory"));
  return {};
}

Result<ReadReply, ReadError> Filesystem::read(Ino ino, std::uint64_t offset,
                                              std::size_t size) const {
  const Node* n = tree_.node(ino);
  if (!n) return unexpected(ReadError{ENOENT, "no such inode"});
  if (n->kind == NodeKind::kDir) return unexpected(ReadError{EISDIR, "is a directory"});
  ReadReply r;
  if (offset >= n->size) return r;  // EOF
  size = static_cast<std::size_t>(std::min<std::uint64_t>(size, n->size - offset));
  Result<void, ReadError> done;
  switch (n->kind) {
    case NodeKind::kBlob:
      r.add_memory(tree_.blob(n->index).data() + offset, size);
      break;
    case NodeKind::kF32: {
      const TensorInfo& t = tree_.tensor(*n);
      const auto dec = f32_decoder(t);
      if (!dec) return unexpected(ReadError{EIO, "no float32 rendering"});
      done = r.converted(tree_.model(n->model), *dec, n->offset, offset, size);
      return done ? Result<ReadReply, ReadError>(std::move(r)) : unexpected(done.error());
    }
    case NodeKind::kPacked:
      if (!add_packed(*n, offset, size, r)) {
        return unexpected(ReadError{EIO, "packed file has a gap", true, false});
      }
      break;
    case NodeKind::kNpy: {
      // The header from memory, then the tensor's bytes from the source.
      const std::string& head = tree_.blob(n->blob);
      std::uint64_t data_offset = offset - std::min<std::uint64_t>(offset, head.size());
      if (offset < head.size()) {
        const auto in_head = std::min(size, static_cast<std::size_t>(head.size() - offset));
        r.add_memory(head.data() + offset, in_head);
        size -= in_head;
      }
      r.add_source(tree_.model(n->model), n->offset + data_offset, size);
      break;
    }
    default:  // kTensor, kFile
      r.add_source(tree_.model(n->model), n->offset + offset, size);
  }
  done = r.finish();
  if (!done) return unexpected(done.error());
  return r;
}

bool Filesystem::in_memory(Ino ino) const {
  const Node* n = tree_.node(ino);
  return n && n->kind == NodeKind::kBlob;
}

// A packed file: its header from memory, then the byte ranges of shards
// that cover [offset, offset + size).
bool Filesystem::add_packed(const Node& n, std::uint64_t offset, std::size_t size,
                            ReadReply& r) const {
  std::uint64_t pos = offset;
  std::uint64_t left = size;
  const std::string& head = tree_.blob(n.blob);
  if (pos < head.size()) {
    const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(left, head.size() - pos));
    r.add_memory(head.data() + pos, len);
    pos += len;
    left -= len;
  }
  const std::vector<PackedSegment>& segs = tree_.packed(n.index);
  // The last segment starting at or before `pos`; segments tile the file.
  auto it = std::upper_bound(segs.begin(), segs.end(), pos,
                             [](std::uint64_t v, const PackedSegment& g) { return v < g.file_offset; });
  if (it != segs.begin()) --it;
  for (; left > 0 && it != segs.end(); ++it) {
    if (pos < it->file_offset || pos >= it->file_offset + it->size) continue;
    const std::uint64_t within = pos - it->file_offset;
    const std::uint64_t len = std::min(left, it->size - within);
    r.add_source(tree_.model(it->model), it->source_offset + within,
                 static_cast<std::size_t>(len));
    pos += len;
    left -= len;
  }
  return left == 0;
}

Result<std::string> Filesystem::getxattr(Ino ino, std::string_view name) const {
  const Node* n = tree_.node(ino);
  if (!n) return unexpected(err(ENOENT, "no such inode"));
  // Only the user namespace exists here. Saying "not supported" (rather
  // than "no such attribute") for security.* and system.* lets ls -l and
  // libacl remember that per device and stop asking: otherwise every entry
  // costs two uncached round trips to the daemon (FUSE never caches xattrs).
  if (name.substr(0, 5) != "user.") return unexpected(err(EOPNOTSUPP, "not supported"));
  if (n->kind != NodeKind::kTensor && n->kind != NodeKind::kNpy && n->kind != NodeKind::kF32) {
    return unexpected(err(ENODATA, "no such attribute"));
  }
  const TensorInfo& t = tree_.tensor(*n);
  if (name == kXattrs[0]) return std::string(t.name);
  if (name == kXattrs[1]) return std::string(type_name(t));
  if (name == kXattrs[2]) return json_uint_array(t.shape);
  if (name == kXattrs[3]) {
    return "[" + std::to_string(t.begin) + "," + std::to_string(t.end) + "]";
  }
  if (name == kXattrs[4]) return std::to_string(n->offset);
  return unexpected(err(ENODATA, "no such attribute"));
}

Result<std::string> Filesystem::listxattr(Ino ino) const {
  const Node* n = tree_.node(ino);
  if (!n) return unexpected(err(ENOENT, "no such inode"));
  std::string out;
  if (n->kind != NodeKind::kTensor && n->kind != NodeKind::kNpy && n->kind != NodeKind::kF32) {
    return out;
  }
  for (std::string_view x : kXattrs) {
    out += x;
    out += '\0';
  }
  return out;
}

struct statvfs Filesystem::statfs() const {
  struct statvfs s {};
  s.f_bsize = Tree::kBlockSize;
  s.f_frsize = 512;
  s.f_blocks = (tree_.total_bytes() + 511) / 512;
  s.f_files = tree_.node_count();
  s.f_namemax = kNameMax;
  s.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
  return s;
}

}  // namespace stfs
