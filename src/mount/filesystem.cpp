#include "stfs/mount/filesystem.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "stfs/format/convert.hpp"
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

Result<ReadPlan> Filesystem::read(Ino ino, std::uint64_t offset, std::size_t size) const {
  const Node* n = tree_.node(ino);
  if (!n) return unexpected(err(ENOENT, "no such inode"));
  if (n->kind == NodeKind::kDir) return unexpected(err(EISDIR, "is a directory"));
  ReadPlan plan;
  if (n->kind == NodeKind::kF32) {
    plan.converted = true;
    return plan;
  }
  if (offset >= n->size) return plan;  // EOF
  plan.size = static_cast<std::size_t>(std::min<std::uint64_t>(size, n->size - offset));
  if (n->kind == NodeKind::kBlob) {
    plan.data = tree_.blob(n->index).data() + offset;
    return plan;
  }
  if (n->kind == NodeKind::kPacked) return read_packed(*n, offset, plan);
  std::uint64_t data_offset = offset;
  if (n->kind == NodeKind::kNpy) {
    // The header from memory, then the tensor's bytes from the source.
    const std::string& head = tree_.blob(n->blob);
    if (offset < head.size()) {
      plan.head = head.data() + offset;
      plan.head_size = std::min(plan.size, static_cast<std::size_t>(head.size() - offset));
      plan.size -= plan.head_size;
      data_offset = 0;
    } else {
      data_offset = offset - head.size();
    }
    if (plan.size == 0) return plan;
  }
  const Model& src = tree_.model(n->model);
  const std::uint64_t begin = n->offset + data_offset;
  if (auto r = check_intact(n->model, begin + plan.size); !r) return unexpected(r.error());
  plan.model = n->model;
  plan.source_offset = begin;
  if (src.read_path() == ReadPath::kPread) {
    plan.from_fd = true;  // read by the caller (read_source)
    return plan;
  }
  plan.data = src.mapping().data() + begin;
  plan.from_source = true;
  return plan;
}

std::string Filesystem::truncation_message(std::uint32_t model) const {
  const Model& m = tree_.model(model);
  return "source " + m.path() + " shrank to " + std::to_string(m.intact()) +
         " bytes while mounted; reads past that fail with EIO";
}

Result<void> Filesystem::check_intact(std::uint32_t model, std::uint64_t end) const {
  const Model& m = tree_.model(model);
  auto truncated = [&] { return unexpected(err(EIO, truncation_message(model))); };
  // A request that reaches past what is left of a truncated source fails
  // whole: a short read would look like end of file to the reader.
  if (end > m.intact()) return truncated();
  // On the pread path a short read is the check (read_source). From a
  // mapping, a source truncated into the middle of a page reads back as
  // zeros past its end (the kernel zero-fills the tail of a mapping's last
  // page), and no EFAULT tells us: so one fstat before every reply,
  // answered from the inode in memory.
  struct stat st {};
  if (m.read_path() == ReadPath::kMmap &&
      (::fstat(m.fd(), &st) != 0 || end > static_cast<std::uint64_t>(st.st_size))) {
    source_fault(model);
    return truncated();
  }
  return {};
}

void Filesystem::release_source_range(std::uint32_t model, std::uint64_t offset,
                                      std::uint64_t size) const {
  tree_.model(model).release_served(offset, size);
}

Result<ReadPlan> Filesystem::read_packed(const Node& n, std::uint64_t offset,
                                         ReadPlan plan) const {
  plan.packed = true;
  std::uint64_t pos = offset;
  std::uint64_t left = plan.size;
  const std::string& head = tree_.blob(n.blob);
  if (pos < head.size()) {
    ReadPiece p;
    p.data = head.data() + pos;
    p.size = static_cast<std::size_t>(std::min<std::uint64_t>(left, head.size() - pos));
    plan.pieces.push_back(p);
    pos += p.size;
    left -= p.size;
  }
  const std::vector<PackedSegment>& segs = tree_.packed(n.index);
  // The last segment starting at or before `pos`.
  auto it = std::upper_bound(segs.begin(), segs.end(), pos,
                             [](std::uint64_t v, const PackedSegment& g) { return v < g.file_offset; });
  if (it != segs.begin()) --it;
  for (; left > 0 && it != segs.end(); ++it) {
    if (pos < it->file_offset || pos >= it->file_offset + it->size) continue;
    const std::uint64_t within = pos - it->file_offset;
    const std::uint64_t len = std::min(left, it->size - within);
    const Model& m = tree_.model(it->model);
    ReadPiece p;
    p.size = static_cast<std::size_t>(len);
    p.model = it->model;
    p.source_offset = it->source_offset + within;
    p.from_source = true;
    if (auto r = check_intact(it->model, p.source_offset + len); !r) return unexpected(r.error());
    if (m.read_path() == ReadPath::kMmap) {
      p.data = m.mapping().data() + p.source_offset;
      p.mapped = true;
    }
    plan.pieces.push_back(p);
    pos += len;
    left -= len;
  }
  if (left > 0) return unexpected(err(EIO, "packed file has a gap"));  // never: segments tile it
  return plan;
}

Result<void> Filesystem::read_source(const ReadPlan& plan, char* buf) const {
  const Model& src = tree_.model(plan.model);
  // A mapped plan read here is a small read (the adapter's choice).
  auto r = src.read(buf, plan.size, plan.source_offset, plan.from_source);
  if (r) return {};
  if (r.error().errnum == EIO || r.error().errnum == ENXIO) source_fault(plan.model);
  // ESTALE (a file replaced on an NFS server) goes up as it is: the caller
  // asks for a rebuild, which opens the new file.
  return unexpected(err(r.error().errnum, "cannot read the source " + src.path() + ": " +
                                              r.error().message));
}

Result<void> Filesystem::read_converted(Ino ino, std::uint64_t offset, std::size_t size,
                                        std::string& out) const {
  out.clear();
  const Node* n = tree_.node(ino);
  if (!n || n->kind != NodeKind::kF32) return unexpected(err(EINVAL, "not a converted file"));
  if (offset >= n->size) return {};
  size = static_cast<std::size_t>(std::min<std::uint64_t>(size, n->size - offset));
  const TensorInfo& t = tree_.tensor(*n);
  const unsigned bytes = dtype_bits(t.dtype) / 8;  // 1, 2 or 8: whole bytes only
  const std::uint64_t first = offset / 4, last = (offset + size + 3) / 4;  // elements
  std::string raw(static_cast<std::size_t>((last - first) * bytes), '\0');
  if (auto r = tree_.model(n->model).read(raw.data(), raw.size(), n->offset + first * bytes);
      !r) {
    return unexpected(err(EIO, "cannot read the source: " + r.error().message));
  }
  std::string converted(static_cast<std::size_t>((last - first) * 4), '\0');
  to_f32(t.dtype, reinterpret_cast<const std::uint8_t*>(raw.data()),
         static_cast<std::size_t>(last - first), reinterpret_cast<float*>(converted.data()));
  out.assign(converted, static_cast<std::size_t>(offset - first * 4), size);
  return {};
}

void Filesystem::source_fault(std::uint32_t model) const {
  const Model& m = tree_.model(model);
  struct stat st {};
  std::uint64_t now = 0;  // if the size cannot be read, serve nothing more
  if (::fstat(m.fd(), &st) == 0) now = static_cast<std::uint64_t>(st.st_size);
  m.shrink_intact(now);
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
  if (name == kXattrs[1]) return std::string(dtype_name(t.dtype));
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
