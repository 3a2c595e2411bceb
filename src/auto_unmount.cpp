#include "stfs/auto_unmount.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "stfs/mountinfo.hpp"

namespace stfs {

Result<int> start_unmount_watcher(const std::string& mountpoint) {
  auto mine = find_mount(mountpoint);
  if (!mine) return unexpected(Error{ENOENT, "no mount at " + mountpoint + " to watch"});
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
    if (::fork() != 0) ::_exit(0);
    // Hold nothing of the daemon's but the pipe, and nothing of the mount.
    if (::chdir("/") != 0) ::_exit(1);
    const int keep = fds[0];
    for (int fd = 0; fd < 1024; ++fd) {
      if (fd != keep) ::close(fd);
    }
    char c;
    while (::read(keep, &c, 1) != 0) {
      if (errno != EINTR) break;
    }
    auto now = find_mount(mountpoint);
    if (!now || now->device != mine->device) ::_exit(0);  // already gone
    if (::umount2(mountpoint.c_str(), MNT_DETACH) == 0) ::_exit(0);
    // Not root: fusermount3 is setuid and checks the mount is ours.
    ::execlp("fusermount3", "fusermount3", "-u", "-z", "-q", "--", mountpoint.c_str(),
             static_cast<char*>(nullptr));
    ::_exit(1);
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return fds[1];
}

}  // namespace stfs
