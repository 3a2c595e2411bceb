#include "stfs/mount/auto_unmount.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "stfs/mount/mountinfo.hpp"

namespace stfs {
namespace {

constexpr const char kUnmount[] = "unmount";

// Unmounts `mountpoint` if it is still the daemon's mount.
void unmount_ours(const std::string& mountpoint, const std::string& announced,
                  const std::optional<MountEntry>& before) {
  const auto now = find_mount(mountpoint);
  if (!now) return;  // unmounted already
  const bool ours = !announced.empty()
                        ? now->device == announced
                        : now->fstype == "fuse.stfs" && (!before || before->device != now->device);
  if (!ours) return;
  if (::umount2(mountpoint.c_str(), MNT_DETACH) == 0) return;
  // Not root: fusermount3 is setuid and checks the mount is the user's.
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execlp("fusermount3", "fusermount3", "-u", "-z", "-q", "--", mountpoint.c_str(),
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (pid > 0 && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

// `before` is what the mountpoint held when the watcher was asked for, read
// by the daemon itself: a watcher process that starts late (slow machines,
// sanitizer builds) would otherwise see our own mount as "already there".
[[noreturn]] void watch(int in, int out, const std::string& mountpoint,
                        const std::optional<MountEntry>& before, bool on_death) {
  std::string announced;
  std::string buf;
  char chunk[64];
  while (true) {
    ssize_t n = ::read(in, chunk, sizeof chunk);
    if (n > 0) {
      buf.append(chunk, static_cast<std::size_t>(n));
      std::size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        if (line == kUnmount) {
          unmount_ours(mountpoint, announced, before);
          const char done = 0;
          ssize_t w = ::write(out, &done, 1);
          (void)w;
          ::_exit(0);
        }
        if (announced.empty()) announced = line;
      }
    } else if (n == 0 || errno != EINTR) {
      break;  // the daemon is gone without asking
    }
  }
  if (on_death) unmount_ours(mountpoint, announced, before);
  ::_exit(0);
}

}  // namespace

Result<UnmountWatcher> start_unmount_watcher(const std::string& mountpoint, bool on_death) {
  const auto before = find_mount(mountpoint);
  int down[2];
  int up[2];
  if (::pipe2(down, O_CLOEXEC) != 0) {
    int e = errno;
    return unexpected(Error{e, std::string("cannot create a pipe: ") + std::strerror(e)});
  }
  if (::pipe2(up, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(down[0]);
    ::close(down[1]);
    return unexpected(Error{e, std::string("cannot create a pipe: ") + std::strerror(e)});
  }
  // Double fork: the watcher is nobody's child to reap, and outlives us.
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    for (int fd : {down[0], down[1], up[0], up[1]}) ::close(fd);
    return unexpected(Error{e, std::string("cannot fork: ") + std::strerror(e)});
  }
  if (pid == 0) {
    ::setsid();
    // It outlives the daemon by design: a stop signal sent to the whole
    // group (systemd's stop, a terminal) must not end it before it has
    // unmounted. It ends when the pipe closes.
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::prctl(PR_SET_NAME, "stfs-unmount", 0, 0, 0);  // ps and tests tell it from the daemon
    if (::fork() != 0) ::_exit(0);
    // Hold nothing of the daemon's but the pipes, and nothing of the mount.
    if (::chdir("/") != 0) ::_exit(1);
    for (int fd = 0; fd < 1024; ++fd) {
      if (fd != down[0] && fd != up[1]) ::close(fd);
    }
    watch(down[0], up[1], mountpoint, before, on_death);
  }
  ::close(down[0]);
  ::close(up[1]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return UnmountWatcher{UniqueFd(down[1]), UniqueFd(up[0])};
}

void announce_mount(const UnmountWatcher& w, const std::string& mountpoint) {
  auto m = find_mount(mountpoint);
  if (!m) return;
  const std::string line = m->device + "\n";
  ssize_t n = ::write(w.to_watcher.get(), line.data(), line.size());
  (void)n;  // a watcher that is gone cannot be told; the fallback rule holds
}

void unmount_through_watcher(UnmountWatcher& w) {
  const std::string line = std::string(kUnmount) + "\n";
  if (::write(w.to_watcher.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return;  // the watcher is gone
  }
  char done;
  while (::read(w.from_watcher.get(), &done, 1) < 0 && errno == EINTR) {
  }
}

}  // namespace stfs
