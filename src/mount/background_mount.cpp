// The background mount's fork and its parent's wait (background_mount.hpp).
#include "stfs/mount/background_mount.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "stfs/mount/daemon.hpp"

namespace stfs {
namespace {

// Whether the FUSE mount on `mountpoint` answers a request (statfs).
bool mount_answers(const std::string& mountpoint) {
  struct statfs sf {};
  int r;
  do {
    r = ::statfs(mountpoint.c_str(), &sf);
  } while (r < 0 && errno == EINTR);
  return r == 0 && static_cast<unsigned long>(sf.f_type) == 0x65735546UL;  // FUSE_SUPER_MAGIC
}

// Ends the supervisor we forked (and so its daemon, which unmounts): after
// 5 s, kills it.
void end_child(pid_t pid) {
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return;
    ::usleep(50'000);
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

int wait_in_parent(const MountOptions& o, int& ready_fd) {
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    spdlog::error("cannot create a pipe: {}", std::strerror(errno));
    return kExitMountFailed;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    spdlog::error("cannot fork: {}", std::strerror(errno));
    return kExitMountFailed;
  }
  if (pid == 0) {
    ::close(status_pipe[0]);
    ready_fd = status_pipe[1];
    return -1;
  }
  ::close(status_pipe[1]);
  unsigned char status = 0;
  ssize_t n;
  do {
    n = ::read(status_pipe[0], &status, 1);
  } while (n < 0 && errno == EINTR);
  ::close(status_pipe[0]);
  if (n == 1 && status == 0) {
    // The daemon said ready from init(), before libfuse's own checks of
    // the answer to INIT: a request must come back before we say so too.
    if (mount_answers(o.mountpoint)) return kExitOk;
    spdlog::error(
        "the mount on {} stopped answering as it came up (the daemon's reason is "
        "in the system log)",
        o.mountpoint);
    end_child(pid);
    return kExitMountFailed;
  }
  // The daemon failed before the mount answered; it has said why on our
  // shared stderr, and the supervisor ends with its code. Reap it so
  // nothing is left behind.
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  if (n == 1) return status;
  if (WIFEXITED(ws) && WEXITSTATUS(ws) != 0) return WEXITSTATUS(ws);
  spdlog::error("the stfs daemon for {} died before the mount was ready", o.mountpoint);
  return kExitMountFailed;
}

}  // namespace stfs
