#include "stfs/mount/auto_unmount.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "stfs/mount/mountinfo.hpp"

namespace stfs {
namespace {

// `before` is what the mountpoint held when the watcher was asked for, read
// by the daemon itself: a watcher process that starts late (slow machines,
// sanitizer builds) would otherwise see our own mount as "already there".
[[noreturn]] void watch(int fd, const std::string& mountpoint,
                        const std::optional<MountEntry>& before) {
  std::string announced;
  char buf[64];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      announced.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;  // the daemon is gone
    }
  }
  if (!announced.empty() && announced.back() == '\n') announced.pop_back();
  const auto now = find_mount(mountpoint);
  if (!now) ::_exit(0);  // unmounted already
  const bool ours = !announced.empty()
                        ? now->device == announced
                        : now->fstype == "fuse.stfs" && (!before || before->device != now->device);
  if (!ours) ::_exit(0);
  if (::umount2(mountpoint.c_str(), MNT_DETACH) == 0) ::_exit(0);
  // Not root: fusermount3 is setuid and checks the mount is the user's.
  ::execlp("fusermount3", "fusermount3", "-u", "-z", "-q", "--", mountpoint.c_str(),
           static_cast<char*>(nullptr));
  ::_exit(1);
}

}  // namespace

Result<int> start_unmount_watcher(const std::string& mountpoint) {
  const auto before = find_mount(mountpoint);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    int e = errno;
    return unexpected(Error{e, std::string("cannot create a pipe: ") + std::strerror(e)});
  }
  // Double fork: the watcher is nobody's child to reap, and outlives us.
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return unexpected(Error{e, std::string("cannot fork: ") + std::strerror(e)});
  }
  if (pid == 0) {
    ::setsid();
    // The watcher outlives the daemon by design: a stop signal sent to the
    // whole group (systemd's stop, a terminal) must not end it before it
    // has unmounted. It ends when the pipe closes.
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, SIG_IGN);
    if (::fork() != 0) ::_exit(0);
    // Hold nothing of the daemon's but the pipe, and nothing of the mount.
    if (::chdir("/") != 0) ::_exit(1);
    const int keep = fds[0];
    for (int fd = 0; fd < 1024; ++fd) {
      if (fd != keep) ::close(fd);
    }
    watch(keep, mountpoint, before);
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return fds[1];
}

void announce_mount(int watcher_fd, const std::string& mountpoint) {
  auto m = find_mount(mountpoint);
  if (!m) return;
  const std::string line = m->device + "\n";
  ssize_t w = ::write(watcher_fd, line.data(), line.size());
  (void)w;  // a watcher that is gone cannot be told; the fallback rule holds
}

}  // namespace stfs
