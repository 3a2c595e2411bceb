// Path resolution with the directories it searches, and the safe open.
#include "stfs/source/path_walk.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>

#include "stfs/base/paths.hpp"

namespace stfs {
namespace {

constexpr int kMaxLinks = 40;  // the kernel's own limit

Error sys_error(int e, const std::string& what) {
  return Error{e, what + ": " + std::strerror(e)};
}

std::string join(const std::string& dir, const std::string& name) {
  // Appends (rather than "/" + name, which gcc 12 -Wrestrict misreads).
  std::string out;
  out.reserve(dir.size() + 1 + name.size());
  if (dir != "/") out.append(dir);
  out.push_back('/');
  out.append(name);
  return out;
}

void split_into(std::string_view path, std::deque<std::string>& out, bool front) {
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i <= path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) parts.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  if (front) {
    out.insert(out.begin(), parts.begin(), parts.end());
  } else {
    out.insert(out.end(), parts.begin(), parts.end());
  }
}

}  // namespace

AccessSubject access_subject(const FolderFs& fs, const std::string& path, const struct stat& st) {
  AccessSubject s;
  s.uid = st.st_uid;
  s.gid = st.st_gid;
  s.mode = st.st_mode & 07777;
  auto value = fs.acl(path);
  const int e = value ? 0 : value.error().errnum;
  if (value) {
    s.acl = parse_acl_xattr(*value);
    if (!s.acl) s.acl_unknown = true;
  } else if (e != ENODATA && e != ENOTSUP && e != EOPNOTSUPP) {
    s.acl_unknown = true;  // an ACL we cannot read may deny anyone anything
  }
  return s;
}

bool PathWalker::forbidden(const std::string& p) const {
  return !forbidden_.empty() && path_within(p, forbidden_);
}

Result<struct stat> PathWalker::lstat_cached(const std::string& p) {
  if (auto it = lstat_cache_.find(p); it != lstat_cache_.end()) return it->second;
  auto st = fs_.lstat(p);
  if (st) lstat_cache_.emplace(p, *st);
  return st;
}

const AccessSubject& PathWalker::subject(const std::string& p, const struct stat& st) {
  auto it = subject_cache_.find(p);
  if (it == subject_cache_.end()) it = subject_cache_.emplace(p, access_subject(fs_, p, st)).first;
  return it->second;
}

Result<PathWalker::Walked> PathWalker::walk(const std::string& path) {
  if (path.empty() || path[0] != '/') return unexpected(Error{EINVAL, "not an absolute path"});
  Walked w;
  std::deque<std::string> todo;
  split_into(path, todo, false);
  std::string cur = "/";
  std::vector<std::string> searched;
  auto search = [&](const std::string& dir) {
    for (const std::string& s : searched) {
      if (s == dir) return;
    }
    searched.push_back(dir);
  };
  int links = 0;
  struct stat st {};
  if (auto r = lstat_cached("/"); r) st = *r;
  else return unexpected(r.error());
  while (!todo.empty()) {
    std::string c = std::move(todo.front());
    todo.pop_front();
    if (c == ".") continue;
    if (!S_ISDIR(st.st_mode)) return unexpected(sys_error(ENOTDIR, cur));
    search(cur);  // looking a name up in `cur` needs search permission on it
    std::string next = c == ".." ? parent_of(cur) : join(cur, c);
    if (forbidden(next)) {
      return unexpected(Error{ELOOP, path + ": leads into the mountpoint " + forbidden_});
    }
    auto r = lstat_cached(next);
    if (!r) return unexpected(r.error());
    if (S_ISLNK(r->st_mode)) {
      if (++links > kMaxLinks) return unexpected(sys_error(ELOOP, path));
      auto link = fs_.readlink(next);
      if (!link) return unexpected(link.error());
      const std::string& target = *link;
      split_into(target, todo, true);
      if (!target.empty() && target[0] == '/') {
        cur.assign(1, '/');
        auto root = lstat_cached("/");
        if (!root) return unexpected(root.error());
        st = *root;
      }
      continue;  // resolution goes on from `cur`
    }
    cur = std::move(next);
    st = *r;
  }
  w.path = cur;
  w.st = st;
  for (const std::string& d : searched) {
    auto ds = lstat_cached(d);
    if (!ds) return unexpected(ds.error());
    w.walked.push_back(subject(d, *ds));
  }
  return w;
}

mode_t PathWalker::presented(const Walked& w) {
  return presented_mode(subject(w.path, w.st), w.walked);
}

Result<UniqueFd> PathWalker::open_regular(const Walked& w, struct stat& st) const {
  if (!S_ISREG(w.st.st_mode)) return unexpected(Error{EINVAL, "not a regular file"});
  auto opened = fs_.open(w.path);
  if (!opened) return unexpected(opened.error());
  UniqueFd fd = std::move(opened).value();
  if (::fstat(fd.get(), &st) != 0) return unexpected(sys_error(errno, "cannot stat"));
  if (!S_ISREG(st.st_mode)) return unexpected(Error{EINVAL, "not a regular file"});
  if (st.st_dev != w.st.st_dev || st.st_ino != w.st.st_ino) {
    return unexpected(Error{ESTALE, "replaced while being opened"});
  }
  // Regular files ignore O_NONBLOCK on local filesystems; some FUSE ones
  // do not, so clear it for the reads to come.
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl >= 0) ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
  return fd;
}

}  // namespace stfs
