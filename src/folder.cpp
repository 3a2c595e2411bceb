// Model folders (DESIGN.md §4): a directory source mirrored recursively.
#include <dirent.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "shards.hpp"
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
  FolderScan(TreeBuilder& b, const Limits& limits, const std::string& skip)
      : b_(b), limits_(limits), skip_(skip) {}

  void scan(TreeBuilder::Id dir, const std::string& path, int depth) {
    if (depth > kMaxDepth) {
      spdlog::warn("{}: left out, deeper than {} levels", path, kMaxDepth);
      return;
    }
    std::map<std::string, std::uint32_t> models;  // X.safetensors -> source
    std::vector<std::string> indexes;
    std::vector<std::string> names = list_dir(path);
    for (const std::string& name : names) {
      const std::string full = path + "/" + name;
      if (!skip_.empty() && full == skip_) continue;  // our own mountpoint
      struct stat st {};
      if (::lstat(full.c_str(), &st) != 0) continue;
      if (S_ISLNK(st.st_mode)) {
        // Followed only to regular files (a Hugging Face snapshot is a
        // folder of links into blobs/); links to folders could loop.
        if (::stat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
          spdlog::info("{}: symlink not to a regular file, left out", full);
          continue;
        }
      }
      if (S_ISDIR(st.st_mode)) {
        scan(b_.add_dir(dir, name, b_.add_stat(st)), full, depth + 1);
      } else if (S_ISREG(st.st_mode)) {
        if (name.ends_with(".safetensors")) {
          auto m = Model::open(full, limits_);
          if (!m) {
            const ModelError& e = m.error();
            spdlog::warn("{}: left out: {}{}", full, e.message,
                         e.rule ? " [" + std::string(rule_name(*e.rule)) + "]" : "");
            continue;
          }
          const std::uint32_t src = b_.add_source(std::move(m).value());
          auto sub = b_.add_dir(dir, name, b_.add_stat(b_.source(src).st()));
          b_.add_model_contents(sub, src);
          models[name] = src;
        } else {
          auto m = Model::open_plain(full);
          if (!m) {
            spdlog::warn("{}: left out: {}", full, m.error().message);
            continue;
          }
          const std::uint32_t src = b_.add_source(std::move(m).value());
          b_.add_file(dir, name, src, b_.add_stat(b_.source(src).st()));
          if (name.ends_with(".safetensors.index.json")) indexes.push_back(name);
        }
      }
    }
    for (const std::string& index : indexes) {
      add_merged_view(b_, dir, path, index, names, models);
    }
  }

 private:
  TreeBuilder& b_;
  const Limits& limits_;
  const std::string& skip_;
};

}  // namespace

Result<Tree> Tree::for_directory(const std::string& root, const AttrOptions& attr,
                                 const Limits& limits, const ViewOptions& views,
                                 const std::string& skip) {
  struct stat st {};
  if (::stat(root.c_str(), &st) != 0) {
    int e = errno;
    return unexpected(Error{e, std::strerror(e)});
  }
  if (!S_ISDIR(st.st_mode)) return unexpected(Error{ENOTDIR, "not a directory"});
  TreeBuilder b(attr, st, views);
  FolderScan(b, limits, skip).scan(0, root, 0);
  return b.finish(/*hashed=*/true);
}

}  // namespace stfs
