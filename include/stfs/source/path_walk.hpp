// PathWalker: resolves a path the way the kernel does, component by
// component and link by link, and records every directory the resolution
// searches. The access rule (access.hpp) needs those directories: a link
// may lead behind a folder that readers cannot enter.
//
// Then opens the result safely: once, O_NOFOLLOW | O_NONBLOCK (a FIFO or
// device swapped in never blocks), checked with fstat to be the regular
// file that was walked to (same device and inode).
#pragma once

#include <sys/stat.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "stfs/source/access.hpp"
#include "stfs/source/folder_fs.hpp"
#include "stfs/base/result.hpp"
#include "stfs/base/unique_fd.hpp"

namespace stfs {

// The access facts of `path` (lstat result `st`): owner, group, mode, ACL.
AccessSubject access_subject(const FolderFs& fs, const std::string& path, const struct stat& st);

class PathWalker {
 public:
  // `forbidden`: a canonical path (our own mountpoint) that resolution must
  // never enter: a link into it fails with ELOOP instead of reading the
  // mount from its own daemon. Empty: none.
  // Every call goes to `fs` (the system's, or a folder in memory).
  explicit PathWalker(std::string forbidden = {}, const FolderFs& fs = FolderFs::system())
      : forbidden_(std::move(forbidden)), fs_(fs) {}
  const FolderFs& fs() const { return fs_; }

  struct Walked {
    std::string path;                   // canonical, no links
    struct stat st {};                  // lstat of `path`
    std::vector<AccessSubject> walked;  // directories searched, in order, each once
  };
  // Resolves the absolute path `path` (links followed, up to 40).
  Result<Walked> walk(const std::string& path);

  // The permission bits the access rule presents for a walked result.
  mode_t presented(const Walked& w);

  // Opens a walked regular file read-only: EINVAL if it is not a regular
  // file, ESTALE if it was replaced since the walk.
  Result<UniqueFd> open_regular(const Walked& w, struct stat& st) const;

 private:
  Result<struct stat> lstat_cached(const std::string& path);
  const AccessSubject& subject(const std::string& path, const struct stat& st);
  bool forbidden(const std::string& path) const;

  std::string forbidden_;
  const FolderFs& fs_;
  // Per walker (one folder scan): directories and links seen, and the
  // access facts of directories, so walking 2,000 files of one folder
  // stats each ancestor once.
  std::unordered_map<std::string, struct stat> lstat_cache_;
  std::unordered_map<std::string, AccessSubject> subject_cache_;
};

}  // namespace stfs
