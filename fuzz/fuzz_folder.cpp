// libFuzzer target: a small model folder built in memory from the fuzz
// input (MemoryFolderFs), then the folder scan, the index parser, the
// merged view and every view (npy, f32, tree) through the FUSE-free
// operations, as fuzz_tree does for one file.
//
// Input: records of [kind][name length][name][u16 LE body length][body].
// kind % 3: 0 a file holding body, 1 a symlink to body (relative, at most
// one leading "../", so it stays inside the folder), 2 a directory (later names may
// point into it with '/'). fuzz/make_folder_seed.py writes seeds.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "stfs/mount/filesystem.hpp"
#include "stfs/namespace/tree.hpp"
#include "stfs/source/folder_fs.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// Keeps names to a safe alphabet; never "", ".", ".." or absolute.
// (A table, not a chain of comparisons: every comparison is traced for
// coverage, and link bodies are long.)
std::string clean(const std::uint8_t* p, std::size_t n, bool allow_slash) {
  static const std::array<bool, 256> kName = [] {
    std::array<bool, 256> t{};
    for (unsigned char c : std::string_view("abcdefghijklmnopqrstuvwxyz"
                                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")) {
      t[c] = true;
    }
    return t;
  }();
  std::string out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const char c = static_cast<char>(p[i]);
    if (kName[p[i]] || (allow_slash && c == '/' && !out.empty() && out.back() != '/')) out += c;
  }
  while (!out.empty() && out.back() == '/') out.pop_back();
  if (out.empty() || out == "." || out == ".." || out.find("..") != std::string::npos) return {};
  return out;
}

void exercise(const stfs::Filesystem& f) {
  const stfs::Tree& t = f.tree();
  for (std::uint64_t pos = 1; pos <= t.node_count(); ++pos) {
    const stfs::Node* n = t.node_at(pos);
    check(n != nullptr);
    check(f.getattr(n->ino).has_value());
    if (n->ino != stfs::kRootIno) {
      auto found = f.lookup(n->parent, n->name);
      check(found.has_value() && found->st_ino == n->ino);
      check(n->name.size() <= 255);
    }
    if (n->kind == stfs::NodeKind::kDir) {
      // Every entry names a node (whose getattr this loop checks anyway).
      check(f.readdir(n->ino, 0, [&](const stfs::DirEntry& e) {
               check(t.node(e.ino) != nullptr);
               return true;
             }).has_value());
      continue;
    }
    for (std::uint64_t off : {std::uint64_t{0}, n->size / 2, n->size, n->size + 1}) {
      // Past the small-read size: mapped pieces where the file allows,
      // read ones where what is left is small.
      auto reply = f.read(n->ino, off, 1 << 17);
      check(reply.has_value());
      std::size_t sent = 0;
      for (const iovec& v : reply->pieces()) sent += v.iov_len;
      check(sent == reply->size() && reply->size() <= (off < n->size ? n->size - off : 0));
    }
    auto names = f.listxattr(n->ino);
    check(names.has_value());
    for (std::size_t p = 0; p < names->size();) {
      std::size_t e = names->find('\0', p);
      check(f.getxattr(n->ino, names->substr(p, e - p)).has_value());
      p = e + 1;
    }
  }
  (void)f.statfs();
}

}  // namespace

// Every left-out entry is a warning: quiet, or logging would be the work.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The folder lives in memory (file bytes in memfds): no disk, so the
  // scan itself is the work.
  stfs::MemoryFolderFs mem;
  const std::string root = "/model";
  mem.add_dir(root);
  std::size_t i = 0;
  int files = 0;
  while (i + 4 <= size && files < 64) {
    const unsigned kind = data[i] % 3;
    const std::size_t name_len = data[i + 1];
    i += 2;
    if (i + name_len + 2 > size) break;
    std::string name = clean(data + i, name_len, true);
    i += name_len;
    std::size_t body_len = data[i] | (std::size_t{data[i + 1]} << 8);
    i += 2;
    body_len = std::min(body_len, size - i);
    const std::uint8_t* body = data + i;
    i += body_len;
    if (name.empty()) continue;
    const std::string path = root + "/" + name;
    ++files;
    if (kind == 0) {
      mem.add_file(path, std::string_view(reinterpret_cast<const char*>(body), body_len));
    } else if (kind == 1) {
      // One leading "../" lets a link in a subfolder point back up (a
      // Hugging Face snapshot's shape); the rest stays inside.
      std::string up;
      if (body_len >= 3 && std::memcmp(body, "../", 3) == 0) up = "../", body += 3, body_len -= 3;
      // A longer target is refused by symlink(2) itself (ENAMETOOLONG).
      if (body_len >= 4096) continue;
      std::string target = clean(body, body_len, true);
      if (!target.empty()) mem.add_link(path, up + target);
    } else {
      mem.add_dir(path);
    }
  }
  // The first byte's high bits pick, always the same for one input: the
  // layout (0x80: the tree view, else the flat files with the npy and f32
  // views), the rebuild check (0x40, below), the read path (0x20: pread,
  // else the mapping) and the source cache (0x10: keep, else drop), so
  // every read policy is fuzzed.
  if (size == 0) return 0;
  const bool tree_view = (data[0] & 0x80) != 0;
  stfs::FolderOptions opts;
  opts.views.npy = !tree_view;
  opts.views.f32 = !tree_view;
  opts.views.tree = tree_view;
  opts.policy.read_path = (data[0] & 0x20) != 0 ? stfs::ReadPath::kPread : stfs::ReadPath::kMmap;
  opts.policy.drop_cache = (data[0] & 0x10) == 0;
  opts.fs = &mem;
  auto tree = stfs::Tree::for_directory(root, opts);
  check(tree.has_value());  // a folder never fails as a whole
  auto fs = stfs::Filesystem::create(std::move(tree).value());
  check(fs.has_value());
  exercise(**fs);
  // A rebuild that reuses every source must give the same tree: checked
  // for the inputs whose first byte has bit 6 set (half of them, always
  // the same ones), since it costs as much again as the scan.
  if ((data[0] & 0x40) == 0) return 0;
  opts.previous = &(*fs)->tree();
  auto again = stfs::Tree::for_directory(root, opts);
  check(again.has_value() && again->node_count() == (*fs)->tree().node_count());
  return 0;
}
