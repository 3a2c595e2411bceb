// libFuzzer target: the whole namespace built from a fuzzed file, then
// every FUSE-free operation on every inode: lookup, getattr, readdir,
// read replies, xattrs, statfs.
//
// The input goes into a memfd so the real Model/Mapping path runs.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "stfs/mount/filesystem.hpp"
#include "stfs/source/model.hpp"
#include "stfs/namespace/tree.hpp"

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  int fd = memfd_create("fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  stfs::UniqueFd guard(fd);
  for (std::size_t off = 0; off < size;) {
    ssize_t n = write(fd, data + off, size - off);
    if (n <= 0) return 0;
    off += static_cast<std::size_t>(n);
  }
  auto model = stfs::Model::open("/proc/self/fd/" + std::to_string(fd));
  if (!model) return 0;
  auto tree = stfs::Tree::for_model(std::move(model).value());
  if (!tree) return 0;
  auto fs = stfs::Filesystem::create(std::move(tree).value());
  check(fs.has_value());
  const stfs::Filesystem& f = **fs;
  const stfs::Tree& t = f.tree();
  std::uint64_t listed = 0;
  for (stfs::Ino ino = 1; ino <= t.node_count(); ++ino) {
    auto st = f.getattr(ino);
    check(st.has_value() && st->st_ino == ino);
    const stfs::Node* n = t.node(ino);
    if (ino != stfs::kRootIno) {
      auto found = f.lookup(n->parent, n->name);
      check(found.has_value() && found->st_ino == ino);
    }
    if (n->kind == stfs::NodeKind::kDir) {
      auto r = f.readdir(ino, 0, [&](const stfs::DirEntry& e) {
        ++listed;
        check(f.getattr(e.ino).has_value());
        return true;
      });
      check(r.has_value());
      continue;
    }
    // Plans only: the daemon never reads mapped bytes itself.
    for (std::uint64_t off : {std::uint64_t{0}, n->size / 2, n->size, n->size + 1}) {
      auto reply = f.read(ino, off, 1 << 20);
      check(reply.has_value());
      check(reply->size() <= (off < n->size ? n->size - off : 0));
    }
    auto names = f.listxattr(ino);
    check(names.has_value());
    for (std::size_t p = 0; p < names->size();) {
      std::size_t e = names->find('\0', p);
      check(f.getxattr(ino, names->substr(p, e - p)).has_value());
      p = e + 1;
    }
  }
  check(listed == t.node_count() - 1 + 2);  // every child, plus "." and ".."
  check(!f.lookup(stfs::kRootIno, "no/such").has_value());
  check(!f.getattr(t.node_count() + 1).has_value());
  (void)f.statfs();
  return 0;
}
