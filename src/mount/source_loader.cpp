// Loading a mount's source (source_loader.hpp).
#include "stfs/mount/source_loader.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstring>

#include "stfs/mount/daemon.hpp"
#include "stfs/source/model.hpp"
#include "stfs/source/path_walk.hpp"

namespace stfs {
namespace {

// The exit code for a source that failed with `e`: 2 when there is no
// valid source there (missing, not a regular file, a link into the mount),
// 3 when it exists but cannot be read or mapped (an I/O failure).
int exit_for(int e) {
  return e == ENOENT || e == ENOTDIR || e == EINVAL || e == ELOOP ? kExitInvalidSource
                                                                   : kExitMountFailed;
}

// A file source that failed to load: the exit code (2 invalid or missing,
// 3 unreadable) and what to tell the user.
struct LoadFailure {
  int exit_code = kExitInvalidSource;
  std::string message;
};

// The tree of a file source. It is walked as given, links and all (the
// access rule needs every directory a reader must search to reach the
// file), opened once, validated and prepared. `hashed`: inode numbers from
// the file's identity, for a polled source that may be replaced.
Result<Tree, LoadFailure> load_file(const MountOptions& o, bool hashed) {
  PathWalker walker(o.mountpoint);
  auto w = walker.walk(o.source_as_given);
  if (!w) return unexpected(LoadFailure{exit_for(w.error().errnum), w.error().message});
  struct stat fst {};
  auto fd = walker.open_regular(*w, fst);
  if (!fd) return unexpected(LoadFailure{exit_for(fd.error().errnum), fd.error().message});
  auto model = Model::load(std::move(fd).value(), o.source, fst, o.limits);
  if (!model) {
    const ModelError& e = model.error();
    std::string rule = e.rule ? " [" + std::string(rule_name(*e.rule)) + "]" : "";
    return unexpected(LoadFailure{
        e.kind == ModelError::Kind::kIo ? kExitMountFailed : kExitInvalidSource,
        e.message + rule});
  }
  if (auto r = model->prepare(effective_source_policy(o)); !r) {
    // It exists and is valid, but cannot be served.
    return unexpected(LoadFailure{kExitMountFailed, r.error().message});
  }
  spdlog::info("{}: served with {}", o.source, model->read_path_name());
  auto tree = Tree::for_model(std::move(model).value(), o.attr, o.views, walker.presented(*w),
                              hashed);
  if (!tree) {
    const int e = tree.error().errnum;
    return unexpected(LoadFailure{e == EEXIST ? kExitInvalidSource : exit_for(e),
                                  tree.error().message});
  }
  return std::move(tree).value();
}

// How a folder source is read: the mount's options; `previous` is the tree
// a rebuild replaces.
FolderOptions folder_options(const MountOptions& o, const Tree* previous) {
  return FolderOptions{o.attr,         o.limits, o.views,         o.mountpoint,
                       previous,       effective_source_policy(o), nullptr, o.confined_to};
}

}  // namespace

int load(const MountOptions& o, bool polled, std::unique_ptr<Filesystem>& out) {
  struct stat st {};
  if (::stat(o.source.c_str(), &st) != 0) {
    const int e = errno;
    spdlog::error("cannot mount {}: {}", o.source, std::strerror(e));
    return exit_for(e);
  }
  Result<Tree> tree = unexpected(Error{EINVAL, "unset"});
  if (S_ISDIR(st.st_mode)) {
    // A model folder: invalid files inside are left out with a warning.
    tree = Tree::for_directory(o.source_as_given, folder_options(o, nullptr));
    if (!tree) {
      spdlog::error("cannot mount {}: {}", o.source, tree.error().message);
      return tree.error().errnum == EEXIST ? kExitInvalidSource : exit_for(tree.error().errnum);
    }
  } else {
    auto t = load_file(o, polled);
    if (!t) {
      spdlog::error("cannot mount {}: {}", o.source, t.error().message);
      return t.error().exit_code;
    }
    tree = std::move(t).value();
  }
  const std::size_t count = tree->tensor_count();
  auto fs = Filesystem::create(std::move(tree).value());
  if (!fs) {
    spdlog::error("cannot mount {}: {}", o.source, fs.error().message);
    return kExitInvalidSource;
  }
  out = std::move(fs).value();
  spdlog::info("serving {} tensors from {} on {}", count, o.source, o.mountpoint);
  return kExitOk;
}

std::optional<Tree> rebuild_tree(const MountOptions& o, bool folder, const Tree& previous) {
  std::string why;
  if (folder) {
    // Unchanged files keep their open source and mapping (and so their
    // inode numbers): descriptors scale with distinct files, not with
    // generations kept alive by long readers.
    auto t = Tree::for_directory(o.source_as_given, folder_options(o, &previous));
    if (t) return std::move(t).value();
    why = t.error().message;
  } else {
    // A file source is opened again whole; open files keep the generation
    // they started with and see the new file at their next open.
    auto t = load_file(o, /*hashed=*/true);
    if (t) return std::move(t).value();
    why = t.error().message;
  }
  spdlog::warn("{} changed, but cannot be read again: {}; still serving the old tree", o.source,
               why);
  return std::nullopt;
}

unsigned poll_seconds(const MountOptions& o) {
  if (o.poll) return *o.poll;
  struct statfs sf {};
  if (::statfs(o.source.c_str(), &sf) == 0 && is_remote_filesystem(static_cast<long>(sf.f_type))) {
    return 5;
  }
  return 0;
}

}  // namespace stfs
