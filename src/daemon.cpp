// Mount lifecycle. The parent does every check that can fail with a clear
// message on the user's terminal (source, mountpoint), then forks; the child
// mounts and reports through a pipe: one byte, 0 once the kernel's INIT has
// arrived, or an exit code. libfuse 3.14's own fuse_daemonize parent always
// exits 0, which is the "mount said OK, then the directory is dead" bug
// this avoids.
#include "stfs/daemon.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "stfs/filesystem.hpp"
#include "stfs/fuse_session.hpp"
#include "stfs/logging.hpp"
#include "stfs/model.hpp"
#include "stfs/mountinfo.hpp"
#include "stfs/tree.hpp"

namespace stfs {
namespace {

Result<std::string> canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) {
    int e = errno;
    return unexpected(Error{e, std::strerror(e)});
  }
  return std::string(buf);
}

int mountpoint_error(const std::string& mp, int e) {
  if (e == ENOTCONN) {
    // What a killed FUSE daemon leaves behind.
    spdlog::error(
        "cannot mount on {}: {}: the FUSE daemon that served it died; clear it with "
        "'fusermount3 -u {}'",
        mp, std::strerror(e), mp);
  } else {
    spdlog::error("cannot mount on {}: {}", mp, std::strerror(e));
  }
  return kExitMountFailed;
}

// Checks the mountpoint before anything is mounted; returns an exit code.
int check_mountpoint(MountOptions& o) {
  auto mp = canonical(o.mountpoint);
  if (!mp) return mountpoint_error(o.mountpoint, mp.error().errnum);
  o.mountpoint = *mp;
  struct stat st {};
  if (::stat(o.mountpoint.c_str(), &st) != 0) return mountpoint_error(o.mountpoint, errno);
  if (!S_ISDIR(st.st_mode)) {
    spdlog::error("cannot mount on {}: not a directory", o.mountpoint);
    return kExitMountFailed;
  }
  if (auto m = find_mount(o.mountpoint)) {
    spdlog::error("cannot mount on {}: busy, {} from {} is already mounted there", o.mountpoint,
                  m->fstype, m->source);
    return kExitMountFailed;
  }
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    int e = errno;
    spdlog::error("cannot mount on {}: /dev/fuse: {}", o.mountpoint, std::strerror(e));
    return kExitMountFailed;
  }
  return kExitOk;
}

// Opens and validates the source and builds the filesystem; exit code 2 on
// any failure (the source cannot be served).
int load(const MountOptions& o, std::unique_ptr<Filesystem>& out) {
  auto model = Model::open(o.source, o.limits);
  if (!model) {
    const ModelError& e = model.error();
    std::string rule = e.rule ? " [" + std::string(rule_name(*e.rule)) + "]" : "";
    spdlog::error("cannot mount {}: {}{}", o.source, e.message, rule);
    return kExitInvalidSource;
  }
  const std::size_t count = model->header().tensors.size();
  auto tree = Tree::for_model(std::move(model).value(), o.attr);
  if (!tree) {
    spdlog::error("cannot mount {}: {}", o.source, tree.error().message);
    return kExitInvalidSource;
  }
  auto fs = Filesystem::create(std::move(tree).value());
  if (!fs) {
    spdlog::error("cannot mount {}: {}", o.source, fs.error().message);
    return kExitInvalidSource;
  }
  out = std::move(fs).value();
  spdlog::info("serving {} tensors from {} on {}", count, o.source, o.mountpoint);
  return kExitOk;
}

void redirect_stdio_to_null() {
  int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  ::dup2(fd, 0);
  ::dup2(fd, 1);
  ::dup2(fd, 2);
  if (fd > 2) ::close(fd);
}

}  // namespace

int run_mount(MountOptions o) {
  auto src = canonical(o.source);
  if (!src) {
    spdlog::error("cannot mount {}: {}", o.source, src.error().message);
    return kExitInvalidSource;
  }
  o.source = *src;
  if (o.rw_requested) {
    spdlog::warn("{}: 'rw' ignored, stfs mounts are always read-only", o.source);
  }
  for (const std::string& d : o.dropped) spdlog::info("option '{}' accepted and ignored", d);

  if (int rc = check_mountpoint(o); rc != kExitOk) return rc;
  std::unique_ptr<Filesystem> fs;
  if (int rc = load(o, fs); rc != kExitOk) return rc;

  if (o.foreground) return serve(*fs, o, nullptr);

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
  if (pid > 0) {
    ::close(status_pipe[1]);
    unsigned char status = 0;
    ssize_t n;
    do {
      n = ::read(status_pipe[0], &status, 1);
    } while (n < 0 && errno == EINTR);
    ::close(status_pipe[0]);
    if (n == 1 && status == 0) return kExitOk;
    // The child failed before the mount answered; it has said why on our
    // shared stderr. Reap it so nothing is left behind.
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (n == 1) return status;
    if (WIFEXITED(ws) && WEXITSTATUS(ws) != 0) return WEXITSTATUS(ws);
    spdlog::error("the stfs daemon for {} died before the mount was ready", o.mountpoint);
    return kExitMountFailed;
  }

  // Child: a daemon in its own session, out of the way of the mountpoint.
  ::close(status_pipe[0]);
  ::setsid();
  if (::chdir("/") != 0) {
    // "/" always exists; nothing to do but go on.
  }
  int ready_fd = status_pipe[1];
  auto on_ready = [&ready_fd, &o] {
    if (ready_fd < 0) return;
    unsigned char ok = 0;
    ssize_t w = ::write(ready_fd, &ok, 1);
    (void)w;
    ::close(ready_fd);
    ready_fd = -1;
    // From here on nobody reads our terminal output: log to syslog.
    redirect_stdio_to_null();
    init_logging(LogTarget::kSyslog, o.verbose, o.debug);
  };
  int rc = serve(*fs, o, on_ready);
  if (ready_fd >= 0) {
    unsigned char code = static_cast<unsigned char>(rc == 0 ? kExitMountFailed : rc);
    ssize_t w = ::write(ready_fd, &code, 1);
    (void)w;
    ::close(ready_fd);
  }
  ::_exit(rc);
}

}  // namespace stfs
