// The system's FolderFs, the in-memory one, and the one directory lister.
#include "stfs/source/folder_fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "stfs/base/paths.hpp"

namespace stfs {
namespace {

Error sys_error(int e, const std::string& what) { return Error{e, what + ": " + std::strerror(e)}; }

class SystemFolderFs final : public FolderFs {
 public:
  Result<std::vector<std::string>> list(const std::string& dir) const override {
    return list_dir(dir);
  }
  Result<struct stat> lstat(const std::string& path) const override {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return unexpected(sys_error(errno, path));
    return st;
  }
  Result<std::string> readlink(const std::string& path) const override {
    char buf[PATH_MAX];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
    if (n < 0) return unexpected(sys_error(errno, path));
    return std::string(buf, static_cast<std::size_t>(n));
  }
  Result<std::string> acl(const std::string& path) const override {
    char buf[4096];
    ssize_t n = ::lgetxattr(path.c_str(), "system.posix_acl_access", buf, sizeof buf);
    if (n < 0) return unexpected(sys_error(errno, path));
    return std::string(buf, static_cast<std::size_t>(n));
  }
  Result<UniqueFd> open(const std::string& path) const override {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
    if (!fd.valid()) return unexpected(sys_error(errno, "cannot open"));
    return fd;
  }
};

}  // namespace

Result<std::vector<std::string>> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return unexpected(sys_error(errno, "cannot list " + dir));
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

const FolderFs& FolderFs::system() {
  static const SystemFolderFs fs;
  return fs;
}

MemoryFolderFs::MemoryFolderFs() {
  Entry root;
  root.st.st_mode = S_IFDIR | 0755;
  add("/", std::move(root));
}

bool MemoryFolderFs::add(const std::string& path, Entry e) {
  if (path != "/") {
    auto parent = entries_.find(parent_of(path));
    if (parent == entries_.end() || !S_ISDIR(parent->second.st.st_mode)) return false;
  }
  if (e.st.st_ino == 0) {
    // Identities of their own: a device no real file has.
    e.st.st_dev = static_cast<dev_t>(-1);
    e.st.st_ino = next_ino_++;
  }
  e.st.st_nlink = 1;
  e.st.st_uid = ::geteuid();
  e.st.st_gid = ::getegid();
  return entries_.emplace(path, std::move(e)).second;
}

bool MemoryFolderFs::add_dir(const std::string& path) {
  Entry e;
  e.st.st_mode = S_IFDIR | 0755;
  return add(path, std::move(e));
}

bool MemoryFolderFs::add_file(const std::string& path, std::string_view bytes) {
  if (entries_.count(path)) return false;
  Entry e;
  e.fd = UniqueFd(::memfd_create("stfs-folder-file", MFD_CLOEXEC));
  if (!e.fd.valid()) return false;
  for (std::size_t off = 0; off < bytes.size();) {
    ssize_t w =
        ::pwrite(e.fd.get(), bytes.data() + off, bytes.size() - off, static_cast<off_t>(off));
    if (w <= 0) return false;
    off += static_cast<std::size_t>(w);
  }
  // The memfd's own identity, so an open is checked against it as a file
  // on disk would be (PathWalker::open_regular).
  if (::fstat(e.fd.get(), &e.st) != 0) return false;
  e.st.st_mode = S_IFREG | 0644;
  return add(path, std::move(e));
}

bool MemoryFolderFs::add_link(const std::string& path, std::string target) {
  Entry e;
  e.st.st_mode = S_IFLNK | 0777;
  e.st.st_size = static_cast<off_t>(target.size());
  e.target = std::move(target);
  return add(path, std::move(e));
}

Result<std::vector<std::string>> MemoryFolderFs::list(const std::string& dir) const {
  auto it = entries_.find(dir);
  if (it == entries_.end()) return unexpected(sys_error(ENOENT, "cannot list " + dir));
  if (!S_ISDIR(it->second.st.st_mode)) return unexpected(sys_error(ENOTDIR, "cannot list " + dir));
  // Children sort right after their parent in the map: "/a/" < "/a/x".
  const std::string prefix = dir == "/" ? "/" : dir + "/";
  std::vector<std::string> names;
  for (auto c = entries_.lower_bound(prefix); c != entries_.end() && c->first.starts_with(prefix);
       ++c) {
    std::string_view rest = std::string_view(c->first).substr(prefix.size());
    if (!rest.empty() && rest.find('/') == std::string_view::npos) names.emplace_back(rest);
  }
  return names;  // in map order: sorted
}

Result<struct stat> MemoryFolderFs::lstat(const std::string& path) const {
  auto it = entries_.find(path);
  if (it == entries_.end()) return unexpected(sys_error(ENOENT, path));
  return it->second.st;
}

Result<std::string> MemoryFolderFs::readlink(const std::string& path) const {
  auto it = entries_.find(path);
  if (it == entries_.end()) return unexpected(sys_error(ENOENT, path));
  if (!S_ISLNK(it->second.st.st_mode)) return unexpected(sys_error(EINVAL, path));
  return it->second.target;
}

Result<std::string> MemoryFolderFs::acl(const std::string& path) const {
  return unexpected(sys_error(ENODATA, path));
}

Result<UniqueFd> MemoryFolderFs::open(const std::string& path) const {
  auto it = entries_.find(path);
  if (it == entries_.end()) return unexpected(sys_error(ENOENT, "cannot open"));
  if (S_ISLNK(it->second.st.st_mode)) return unexpected(sys_error(ELOOP, "cannot open"));
  if (!it->second.fd.valid()) return unexpected(sys_error(EISDIR, "cannot open"));
  UniqueFd fd(::fcntl(it->second.fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!fd.valid()) return unexpected(sys_error(errno, "cannot open"));
  return fd;
}

}  // namespace stfs
