// Model folders (DESIGN.md §4): a directory source mirrored recursively.
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_map>

#include "gguf_splits.hpp"
#include "shards.hpp"
#include "stfs/base/paths.hpp"
#include "stfs/source/path_walk.hpp"
#include "stfs/namespace/tree.hpp"
#include "tree_builder.hpp"

namespace stfs {
namespace {

// Deeper folders than this are left out: no model layout needs them, and
// the bound keeps a hostile tree from exhausting anything.
constexpr int kMaxDepth = 32;

// What identifies an unchanged source across rebuilds.
struct Identity {
  dev_t dev;
  ino_t ino;
  off_t size;
  std::int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
  bool model;  // parsed as safetensors, or served plain
  bool operator==(const Identity&) const = default;
};
struct IdentityHash {
  std::size_t operator()(const Identity& k) const {
    std::size_t h = std::hash<std::uint64_t>()(static_cast<std::uint64_t>(k.ino));
    for (auto v : {static_cast<std::uint64_t>(k.dev), static_cast<std::uint64_t>(k.size),
                   static_cast<std::uint64_t>(k.mtime_ns), static_cast<std::uint64_t>(k.ctime_ns)}) {
      h = h * 0x9E3779B97F4A7C15ULL ^ std::hash<std::uint64_t>()(v);
    }
    return h;
  }
};
Identity identity(const struct stat& st, bool model) {
  return {st.st_dev,         st.st_ino,          st.st_size, st.st_mtim.tv_sec,
          st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec, model};
}
using Reuse = std::unordered_map<Identity, std::shared_ptr<const Model>, IdentityHash>;

class FolderScan {
 public:
  FolderScan(TreeBuilder& b, const FolderOptions& opts, PathWalker& walker, const Reuse& reuse)
      : b_(b),
        limits_(opts.limits),
        walker_(walker),
        skip_(opts.skip),
        reuse_(reuse),
        policy_(opts.policy),
        confined_to_(opts.confined_to) {}

  std::optional<Error> root_error;  // the source folder could not be listed

  void scan(TreeBuilder::Id dir, const std::string& path, int depth) {
    if (depth > kMaxDepth) {
      spdlog::warn("{}: left out, deeper than {} levels", path, kMaxDepth);
      return;
    }
    std::map<std::string, std::uint32_t> models;
    std::map<std::string, std::uint32_t> gguf_models;  // X.safetensors -> source
    std::vector<std::pair<std::string, std::uint32_t>> indexes;  // name, source
    std::vector<std::string> names;
    if (auto listed = walker_.fs().list(path)) {
      names = std::move(listed).value();
    } else if (depth == 0) {
      // The source itself: an error, not an empty folder (a rebuild then
      // keeps serving the tree it has).
      root_error = listed.error();
      return;
    } else {
      spdlog::warn("{}", listed.error().message);
    }
    for (const std::string& name : names) {
      const std::string full = path + "/" + name;
      if (!skip_.empty() && full == skip_) continue;  // our own mountpoint
      if (originals_reserved(name)) {
        spdlog::warn("{}: left out: the name is reserved for a tensor directory under "
                     "-o originals (X.safetensors{})",
                     full, kOriginalsSuffix);
        continue;
      }
      auto lstat = walker_.fs().lstat(full);
      if (!lstat) continue;
      const struct stat& lst = *lstat;
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
      const std::optional<Format> model = model_format(name);
      const bool is_model = model.has_value();
      auto src = source(*w, full, model);
      if (!src) continue;
      if (is_model) {
        const std::uint32_t stat = b_.add_model_stat(*src);
        TreeBuilder::Id sub;
        if (b_.views().originals) {
          add_original(dir, name, *src, stat);
          sub = b_.add_dir(dir, name + std::string(kOriginalsSuffix), stat);
        } else {
          sub = b_.add_dir(dir, name, stat);
        }
        b_.add_model_contents(sub, *src);
        // Shards of an index are safetensors; parts of a split, GGUF.
        if (*model == Format::kSafetensors) models[name] = *src;
        if (*model == Format::kGguf) gguf_models[name] = *src;
      } else {
        b_.add_file(dir, name, *src, b_.add_model_stat(*src));
        if (name.ends_with(".safetensors.index.json")) indexes.emplace_back(name, *src);
      }
    }
    TreeBuilder::Id packed_dir = 0;  // __packed__, made with the first packed file
    for (const auto& [index, src] : indexes) {
      add_merged_view(b_, dir, path, index, src, names, models, packed_dir);
    }
    add_gguf_split_views(b_, dir, path, names, gguf_models);
  }

 private:
  bool originals_reserved(const std::string& name) const {
    return b_.views().originals && name.ends_with(kOriginalsSuffix) &&
           model_format(name.substr(0, name.size() - kOriginalsSuffix.size()));
  }

  // The format a file's name promises: X.safetensors, X.gguf.
  static std::optional<Format> model_format(const std::string& name) {
    if (name.ends_with(".safetensors")) return Format::kSafetensors;
    if (name.ends_with(".gguf")) return Format::kGguf;
    return std::nullopt;
  }

  // -o originals: X.safetensors as a file at its own name, for loaders:
  // the header bytes this scan validated (never the source's, which may
  // have been rewritten since), then the data section read in place, with
  // the truncation rules of every source read.
  void add_original(TreeBuilder::Id dir, const std::string& name, std::uint32_t src,
                    std::uint32_t stat) {
    const Model& m = b_.source(src);
    const std::uint64_t start = m.header().data_start();
    std::vector<PackedSegment> data;
    if (m.header().file_size > start) {
      data.push_back(PackedSegment{start, start, m.header().file_size - start, src});
    }
    b_.add_packed(dir, name, m.header_bytes(), std::move(data), stat);
  }

  // The source for a walked regular file: the previous tree's when its
  // identity is unchanged, else opened, validated and mapped. One that
  // cannot be (invalid, a /sys file, address space exhausted) is left out
  // with a warning, never the folder.
  // Whether a confined daemon may open `path` (sandbox.hpp).
  bool confined_ok(const std::string& path) const {
    if (confined_to_.empty()) return true;
    for (const std::string& d : confined_to_) {
      if (path_within(path, d)) return true;
    }
    return false;
  }

  std::optional<std::uint32_t> source(const PathWalker::Walked& w, const std::string& full,
                                      std::optional<Format> format) {
    const bool is_model = format.has_value();
    const mode_t perm = walker_.presented(w);
    if (auto it = reuse_.find(identity(w.st, is_model)); it != reuse_.end()) {
      return b_.add_source(it->second, perm);
    }
    if (!confined_ok(w.path)) {
      std::string allowed;
      for (const std::string& d : confined_to_) allowed += (allowed.empty() ? "" : ", ") + d;
      spdlog::warn(
          "{}: left out: it resolves to {}, outside what this mount's sandbox may read ({}); "
          "remount, or mount with -o sandbox_read=DIR",
          full, w.path, allowed);
      return std::nullopt;
    }
    struct stat st {};
    auto fd = walker_.open_regular(w, st);
    if (!fd) {
      spdlog::warn("{}: left out: {}", full, fd.error().message);
      return std::nullopt;
    }
    auto m = is_model ? Model::load(std::move(fd).value(), full, st, limits_, &parser_,
                                    b_.views().originals, format)
                      : Result<Model, ModelError>(Model::plain(std::move(fd).value(), full, st));
    if (!m) {
      const ModelError& e = m.error();
      spdlog::warn("{}: left out: {}{}", full, e.message,
                   e.rule ? " [" + std::string(rule_name(*e.rule)) + "]" : "");
      return std::nullopt;
    }
    if (auto r = m->prepare(policy_); !r) {
      spdlog::warn("{}: left out: {}", full, r.error().message);
      return std::nullopt;
    }
    spdlog::info("{}: served with {}", full, m->read_path_name());
    return b_.add_source(std::make_shared<const Model>(std::move(m).value()), perm);
  }

  TreeBuilder& b_;
  const Limits& limits_;
  PathWalker& walker_;
  const std::string& skip_;
  const Reuse& reuse_;
  const SourcePolicy& policy_;
  const std::vector<std::string>& confined_to_;
  HeaderParser parser_;  // one for the whole scan: its buffers are reused
};

}  // namespace

Result<Tree> Tree::for_directory(const std::string& root, const FolderOptions& opts) {
  Reuse reuse;
  if (const Tree* previous = opts.previous) {
    for (std::uint32_t i = 0; i < previous->model_count(); ++i) {
      const Model& m = previous->model(i);
      reuse.emplace(identity(m.st(), m.is_safetensors()), previous->model_ptr(i));
    }
  }
  PathWalker walker(opts.skip, opts.fs ? *opts.fs : FolderFs::system());
  auto w = walker.walk(root);
  if (!w) return unexpected(w.error());
  if (!S_ISDIR(w->st.st_mode)) return unexpected(Error{ENOTDIR, "not a directory"});
  struct stat st = w->st;
  st.st_mode = (st.st_mode & S_IFMT) | walker.presented(*w);
  TreeBuilder b(opts.attr, st, opts.views);
  FolderScan scan(b, opts, walker, reuse);
  scan.scan(0, w->path, 0);
  if (scan.root_error) return unexpected(*scan.root_error);
  return b.finish(/*hashed=*/true, /*leave_out_clashes=*/true);
}

}  // namespace stfs
