// Model folders (DESIGN.md §4): a directory source mirrored recursively.
#include <dirent.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include "shards.hpp"
#include "stfs/path_walk.hpp"
#include "stfs/tree.hpp"
#include "tree_builder.hpp"

namespace stfs {
namespace {

// Deeper folders than this are left out: no model layout needs them, and
// the bound keeps a hostile tree from exhausting anything.
constexpr int kMaxDepth = 32;

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (!d) {
    spdlog::warn("cannot list {}: {}", path, std::strerror(errno));
    return names;
  }
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

class FolderScan {
 public:
  FolderScan(TreeBuilder& b, const Limits& limits, PathWalker& walker, const std::string& skip)
      : b_(b), limits_(limits), walker_(walker), skip_(skip) {}

  void scan(TreeBuilder::Id dir, const std::string& path, int depth) {
    if (depth > kMaxDepth) {
      spdlog::warn("{}: left out, deeper than {} levels", path, kMaxDepth);
      return;
    }
    std::map<std::string, std::uint32_t> models;  // X.safetensors -> source
    std::vector<std::pair<std::string, std::uint32_t>> indexes;  // name, source
    std::vector<std::string> names = list_dir(path);
    for (const std::string& name : names) {
      const std::string full = path + "/" + name;
      if (!skip_.empty() && full == skip_) continue;  // our own mountpoint
      struct stat lst {};
      if (::lstat(full.c_str(), &lst) != 0) continue;
      if (!S_ISDIR(lst.st_mode) && !S_ISREG(lst.st_mode) && !S_ISLNK(lst.st_mode)) continue;
      // Every entry is resolved as the kernel would, so the access rule
      // sees each directory a reader must search to reach it.
      auto w = walker_.walk(full);
      if (!w) {
        spdlog::warn("{}: left out: {}", full, w.error().message);
        continue;
      }
      if (S_ISDIR(lst.st_mode)) {
        scan(b_.add_dir(dir, name, b_.add_stat(w->st, walker_.presented(*w))), w->path,
             depth + 1);
        continue;
      }
      // Links are followed only to regular files (a Hugging Face snapshot
      // is a folder of links into blobs/); links to folders could loop.
      if (!S_ISREG(w->st.st_mode)) {
        spdlog::info("{}: not a regular file, left out", full);
        continue;
      }
      struct stat st {};
      auto fd = PathWalker::open_regular(*w, st);
      if (!fd) {
        spdlog::warn("{}: left out: {}", full, fd.error().message);
        continue;
      }
      const mode_t perm = walker_.presented(*w);
      if (name.ends_with(".safetensors")) {
        auto m = Model::load(std::move(fd).value(), full, st, limits_);
        if (!m) {
          const ModelError& e = m.error();
          spdlog::warn("{}: left out: {}{}", full, e.message,
                       e.rule ? " [" + std::string(rule_name(*e.rule)) + "]" : "");
          continue;
        }
        auto src = add(std::move(m).value(), perm, full);
        if (!src) continue;
        auto sub = b_.add_dir(dir, name, b_.add_model_stat(*src));
        b_.add_model_contents(sub, *src);
        models[name] = *src;
      } else {
        auto src = add(Model::plain(std::move(fd).value(), full, st), perm, full);
        if (!src) continue;
        b_.add_file(dir, name, *src, b_.add_model_stat(*src));
        if (name.ends_with(".safetensors.index.json")) indexes.emplace_back(name, *src);
      }
    }
    for (const auto& [index, src] : indexes) {
      add_merged_view(b_, dir, path, index, src, names, models);
    }
  }

 private:
  // Maps a source and hands it to the builder; one that cannot be mapped
  // (a /sys file, address space exhausted) is left out, never the folder.
  std::optional<std::uint32_t> add(Model m, mode_t perm, const std::string& full) {
    if (auto r = m.map(); !r) {
      spdlog::warn("{}: left out: {}", full, r.error().message);
      return std::nullopt;
    }
    m.set_presented(perm);
    return b_.add_source(std::move(m));
  }

  TreeBuilder& b_;
  const Limits& limits_;
  PathWalker& walker_;
  const std::string& skip_;
};

}  // namespace

Result<Tree> Tree::for_directory(const std::string& root, const AttrOptions& attr,
                                 const Limits& limits, const ViewOptions& views,
                                 const std::string& skip) {
  PathWalker walker(skip);
  auto w = walker.walk(root);
  if (!w) return unexpected(w.error());
  if (!S_ISDIR(w->st.st_mode)) return unexpected(Error{ENOTDIR, "not a directory"});
  struct stat st = w->st;
  st.st_mode = (st.st_mode & S_IFMT) | walker.presented(*w);
  TreeBuilder b(attr, st, views);
  FolderScan(b, limits, walker, skip).scan(0, w->path, 0);
  return b.finish(/*hashed=*/true);
}

}  // namespace stfs
