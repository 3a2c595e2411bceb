#include "stfs/namespace/watcher.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "stfs/base/unique_fd.hpp"
#include "stfs/source/folder_fs.hpp"

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
  auto names = list_dir(path);
  if (!names) return;
  for (const std::string& n : *names) {
    std::string full = path + "/" + n;
    struct stat st {};
    if (full == skip) continue;
    if (::lstat(full.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      watch_tree(fd, full, skip, depth + 1);
    }
  }
}

// One FNV-1a step over `n` bytes.
void mix(std::uint64_t& h, const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ULL;
}

// Mixes an entry's identity into `h`.
void mix_identity(std::uint64_t& h, const struct stat& st) {
  for (auto v : {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                 static_cast<std::uint64_t>(st.st_size), static_cast<std::uint64_t>(st.st_mode),
                 static_cast<std::uint64_t>(st.st_mtim.tv_sec),
                 static_cast<std::uint64_t>(st.st_mtim.tv_nsec),
                 static_cast<std::uint64_t>(st.st_ctim.tv_sec),
                 static_cast<std::uint64_t>(st.st_ctim.tv_nsec)}) {
    mix(h, &v, sizeof v);
  }
}

// A digest of every entry under `path`: names and identities, links
// followed to what they name. Equal digests: nothing a rebuild would see
// has changed.
void digest_tree(const std::string& path, const std::string& skip, int depth, std::uint64_t& h) {
  if (depth > 32 || path == skip) return;
  auto names = list_dir(path);
  if (!names) return;
  for (const std::string& n : *names) {
    std::string full = path + "/" + n;
    if (full == skip) continue;
    mix(h, n.c_str(), n.size() + 1);
    struct stat st {};
    if (::lstat(full.c_str(), &st) != 0) continue;
    const bool link = S_ISLNK(st.st_mode);
    if (link && ::stat(full.c_str(), &st) != 0) continue;
    mix_identity(h, st);
    if (!link && S_ISDIR(st.st_mode)) digest_tree(full, skip, depth + 1, h);
  }
}

// The digest of the source: a folder's whole tree, or a file source's own
// identity (through any links, so a link moved to a new file counts).
std::uint64_t digest(const std::string& root, const std::string& skip) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  struct stat st {};
  if (::stat(root.c_str(), &st) != 0) return h;  // gone: differs from any file's digest
  mix_identity(h, st);
  if (S_ISDIR(st.st_mode)) digest_tree(root, skip, 0, h);
  return h;
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

FolderWatcher::FolderWatcher(std::string root, std::string skip, std::function<void()> rebuild,
                             unsigned poll_seconds)
    : root_(std::move(root)),
      skip_(std::move(skip)),
      rebuild_(std::move(rebuild)),
      poll_seconds_(poll_seconds) {}

FolderWatcher::~FolderWatcher() { stop(); }

void FolderWatcher::mark_loaded() {
  if (poll_seconds_ == 0) {
    armed_ = arm(root_, skip_);  // events queue until run() reads them
  } else {
    loaded_ = digest(root_, skip_);
  }
}

void FolderWatcher::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

void FolderWatcher::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void FolderWatcher::run() {
  UniqueFd fd;
  if (poll_seconds_ == 0) {
    fd = armed_.valid() ? std::move(armed_) : arm(root_, skip_);
    if (!fd.valid()) {
      spdlog::error("cannot watch {} for changes: {}", root_, std::strerror(errno));
      return;
    }
  }
  // Compared with the digest taken after the scan (mark_loaded), a change
  // made while the mount came up shows at the first poll.
  std::uint64_t last = !poll_seconds_ ? 0 : loaded_ ? *loaded_ : digest(root_, skip_);
  spdlog::info("{}: watching for changes ({})", root_,
               poll_seconds_ ? "a poll every " + std::to_string(poll_seconds_) + " s" : "inotify");
  auto next_poll = std::chrono::steady_clock::now() + std::chrono::seconds(poll_seconds_);
  while (!stopping_) {
    bool changed = false;
    if (fd.valid()) {
      if (wait_and_drain(fd.get(), 100)) {
        // Let a burst of changes (a download finishing) settle first.
        while (!stopping_ && wait_and_drain(fd.get(), kSettleMs)) {
        }
        changed = true;
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (std::chrono::steady_clock::now() >= next_poll) {
        next_poll = std::chrono::steady_clock::now() + std::chrono::seconds(poll_seconds_);
        std::uint64_t now = digest(root_, skip_);
        changed = now != last;
        last = now;
      }
    }
    if (poked_.exchange(false)) changed = true;
    if (stopping_) return;
    if (!changed) continue;
    // New watches before the scan: a change during the rebuild then shows
    // up on them and causes one more rebuild, never a missed one.
    if (fd.valid()) {
      UniqueFd next = arm(root_, skip_);
      if (next.valid()) fd = std::move(next);
    }
    rebuild_();
  }
}

}  // namespace stfs
