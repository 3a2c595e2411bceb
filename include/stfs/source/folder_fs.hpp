// FolderFs: the filesystem calls that resolving paths and scanning a
// folder make, behind one interface: the system's, or a folder held in
// memory (MemoryFolderFs: the folder fuzzer's, and tests'), so the whole
// scan runs without a disk.
#pragma once

#include <sys/stat.h>

#include <map>
#include <string>
#include <vector>

#include "stfs/base/result.hpp"
#include "stfs/base/unique_fd.hpp"

namespace stfs {

// The one directory lister: names in `dir`, sorted, without "." and "..".
// The folder scan and the folder watcher both list through it.
Result<std::vector<std::string>> list_dir(const std::string& dir);

class FolderFs {
 public:
  virtual ~FolderFs() = default;

  // As list_dir.
  virtual Result<std::vector<std::string>> list(const std::string& dir) const = 0;
  virtual Result<struct stat> lstat(const std::string& path) const = 0;
  virtual Result<std::string> readlink(const std::string& path) const = 0;
  // The raw system.posix_acl_access of `path` (not following a link);
  // ENODATA or ENOTSUP if there is none.
  virtual Result<std::string> acl(const std::string& path) const = 0;
  // Opens `path` read-only, never following a final link and never
  // blocking (a FIFO swapped in): the caller checks what it got.
  virtual Result<UniqueFd> open(const std::string& path) const = 0;

  // The system's filesystem.
  static const FolderFs& system();
};

// A folder tree held in memory, under absolute paths. File bytes live in
// memfds, so a source opened from it is mapped and read like any file.
class MemoryFolderFs final : public FolderFs {
 public:
  MemoryFolderFs();  // holds "/" only
  // Each fails (false) if the parent is not a directory or the name is
  // taken. `path` is absolute and normalised.
  bool add_dir(const std::string& path);
  bool add_file(const std::string& path, std::string_view bytes);
  bool add_link(const std::string& path, std::string target);

  Result<std::vector<std::string>> list(const std::string& dir) const override;
  Result<struct stat> lstat(const std::string& path) const override;
  Result<std::string> readlink(const std::string& path) const override;
  Result<std::string> acl(const std::string& path) const override;
  Result<UniqueFd> open(const std::string& path) const override;

 private:
  struct Entry {
    struct stat st {};
    std::string target;  // a link's
    UniqueFd fd;         // a file's memfd
  };
  bool add(const std::string& path, Entry e);

  std::map<std::string, Entry> entries_;
  ino_t next_ino_ = 1;
};

}  // namespace stfs
