#include "stfs/watcher.hpp"

#include <dirent.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "stfs/unique_fd.hpp"

namespace stfs {
namespace {

constexpr std::uint32_t kEvents = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                  IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

// Watches `path` and every folder below it (not through symlinks, which
// the tree does not follow into folders either).
void watch_tree(int fd, const std::string& path, const std::string& skip, int depth) {
  if (depth > 32 || path == skip) return;  // never watch (or stat into) our own mount
  if (::inotify_add_watch(fd, path.c_str(), kEvents | IN_ONLYDIR) < 0) {
    spdlog::warn("cannot watch {}: {}", path, std::strerror(errno));
    return;
  }
  DIR* d = ::opendir(path.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string full = path + "/" + std::string(n);
    struct stat st {};
    if (full == skip) continue;
    if (::lstat(full.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      watch_tree(fd, full, skip, depth + 1);
    }
  }
  ::closedir(d);
}

// Waits up to `ms` for `fd` to be readable; drains it if so.
bool wait_and_drain(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  alignas(inotify_event) char buf[16384];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
  return true;
}

// Arms a fresh set of watches on the whole tree, so folders created since
// the last rebuild are watched too.
UniqueFd arm(const std::string& root, const std::string& skip) {
  UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (fd.valid()) watch_tree(fd.get(), root, skip, 0);
  return fd;
}

}  // namespace

FolderWatcher::FolderWatcher(std::string root, std::string skip, std::function<void()> rebuild)
    : root_(std::move(root)), skip_(std::move(skip)), rebuild_(std::move(rebuild)) {}

FolderWatcher::~FolderWatcher() { stop(); }

void FolderWatcher::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

void FolderWatcher::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void FolderWatcher::run() {
  UniqueFd fd = arm(root_, skip_);
  if (!fd.valid()) {
    spdlog::error("cannot watch {} for changes: {}", root_, std::strerror(errno));
    return;
  }
  while (!stopping_) {
    if (!wait_and_drain(fd.get(), 100)) continue;
    // Let a burst of changes (a download finishing) settle first.
    while (!stopping_ && wait_and_drain(fd.get(), kSettleMs)) {
    }
    if (stopping_) return;
    // New watches before the scan: a change during the rebuild then shows
    // up on them and causes one more rebuild, never a missed one.
    UniqueFd next = arm(root_, skip_);
    if (next.valid()) fd = std::move(next);
    rebuild_();
  }
}

}  // namespace stfs
