// Mount lifecycle. The command checks what it can before anything is
// opened (options, mountpoint). Without -f it then forks, and the parent
// waits for a report through a pipe: one byte, 0 once the kernel's INIT has
// arrived, or an exit code (libfuse 3.14's own fuse_daemonize parent always
// exits 0: the "mount said OK, then the directory is dead" bug this
// avoids). Then the process splits: it stays the supervisor (supervisor.hpp)
// and its child, the daemon, opens the source, mounts and serves. A daemon
// the supervisor starts later takes the mount over instead of mounting.
#include "stfs/mount/daemon.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include "stfs/base/unique_fd.hpp"
#include "stfs/mount/background_mount.hpp"
#include "stfs/mount/filesystem.hpp"
#include "stfs/mount/fuse_session.hpp"
#include "stfs/mount/live.hpp"
#include "stfs/mount/logging.hpp"
#include "stfs/mount/mountinfo.hpp"
#include "stfs/mount/sandbox.hpp"
#include "stfs/mount/sd_notify.hpp"
#include "stfs/mount/source_loader.hpp"
#include "stfs/mount/supervisor.hpp"
#include "stfs/mount/supervisor_link.hpp"
#include "stfs/namespace/tree.hpp"
#include "stfs/namespace/watcher.hpp"
#include "stfs/source/model.hpp"
#include "stfs/source/path_walk.hpp"

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
  // An autofs trigger (fstab's x-systemd.automount) is there to be mounted over.
  if (auto m = find_mount(o.mountpoint); m && m->fstype != "autofs") {
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

// Sends WATCHDOG=1 at half the interval systemd asked for, until stopped.
class Watchdog {
 public:
  ~Watchdog() { stop(); }
  void start() {
    auto interval = sd_watchdog_interval();
    if (!interval || thread_.joinable()) return;
    thread_ = std::thread([this, half = *interval / 2] {
      std::unique_lock lock(mu_);
      while (!cv_.wait_for(lock, half, [this] { return stopping_; })) sd_notify("WATCHDOG=1");
    });
  }
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Whether /etc/fuse.conf lets users ask for allow_other.
bool fuse_conf_allows_other() {
  std::ifstream in("/etc/fuse.conf");
  std::string line;
  while (std::getline(in, line)) {
    auto b = line.find_first_not_of(" \t");
    if (b == std::string::npos || line[b] == '#') continue;
    auto e = line.find_last_not_of(" \t\r");
    if (line.substr(b, e - b + 1) == "user_allow_other") return true;
  }
  return false;
}

bool has_option(const MountOptions& o, std::string_view name) {
  for (const std::string& f : o.fuse_options) {
    if (f == name) return true;
  }
  return false;
}

// `devnull` is opened before the sandbox, which refuses it.
void redirect_stdio_to(int devnull) {
  if (devnull < 0) return;
  ::dup2(devnull, 0);
  ::dup2(devnull, 1);
  ::dup2(devnull, 2);
}

// The sandbox hook of serve(): sd_notify's socket first, then the plan.
Result<void> confine(const SandboxPlan& plan, const std::string& mountpoint) {
  sd_notify_connect();
  auto r = apply_sandbox(plan);
  if (!r) return unexpected(r.error());
  if (plan.enabled) {
    spdlog::info("{}: daemon confined: {}", mountpoint, *r);
  } else {
    spdlog::warn("{}: the daemon is not confined: {}", mountpoint, *r);
  }
  return {};
}

}  // namespace

// A folder source keeps one fd per file it serves; the default soft limit
// (1024) is below what a large model folder needs, so take the hard limit.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int run_mount(MountOptions o) {
  raise_fd_limit();
  // A daemon that the supervisor started to take the mount over.
  auto handed = SupervisorLink::from_environment();
  const bool takeover = handed.has_value() && !o.sandbox_test && !o.fake;
  if (takeover) {
    // It serves in the supervisor's process tree, where a background
    // mount's stdio is /dev/null: its log goes where the first daemon's did.
    if (!o.foreground)
      spdlog::set_default_logger(make_logger(LogTarget::kSyslog, o.verbose, o.debug));
    o.foreground = true;
  }
  auto src = canonical(o.source);
  if (!src) {
    spdlog::error("cannot mount {}: {}", o.source, src.error().message);
    // Missing is exit 2; a path that cannot be resolved for another reason
    // (a dead FUSE mount on the way: ENOTCONN; EIO, EACCES) is an I/O
    // failure, exit 3 (DESIGN.md §1).
    const int e = src.error().errnum;
    return e == ENOENT || e == ENOTDIR ? kExitInvalidSource : kExitMountFailed;
  }
  o.source_as_given = o.source;
  if (!o.source.starts_with("/")) {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd)) o.source_as_given = std::string(cwd) + "/" + o.source;
  }
  o.source = *src;
  // mount(8) hands helpers "rw" by default: say so only when asked (-v) or
  // when rw came from stfs's own command line.
  if (o.rw_requested && (o.verbose || !o.helper)) {
    spdlog::warn("{}: 'rw' ignored, stfs mounts are always read-only", o.source);
  }
  for (const std::string& d : o.dropped) spdlog::info("option '{}' accepted and ignored", d);
  for (const std::string& u : o.unknown) spdlog::warn("unknown mount option '{}' ignored", u);

  // As root (fstab, systemd), let other users in: default_permissions and
  // the source's own modes still decide who reads what.
  if (::geteuid() == 0) {
    if (!has_option(o, "allow_other") && !has_option(o, "allow_root")) {
      o.fuse_options.push_back("allow_other");
    }
  } else if ((has_option(o, "allow_other") || has_option(o, "allow_root")) &&
             !fuse_conf_allows_other()) {
    spdlog::error(
        "cannot mount on {}: allow_other and allow_root need 'user_allow_other' in "
        "/etc/fuse.conf for a mount by a user other than root",
        o.mountpoint);
    return kExitMountFailed;
  }

  std::unique_ptr<SupervisorLink> link;
  Handover handover;
  int ready_fd = -1;
  if (takeover) {
    auto mp = canonical(o.mountpoint);
    if (mp) o.mountpoint = *mp;
    link = std::make_unique<SupervisorLink>(std::move(*handed));
    auto h = link->receive_handover(10'000);
    if (!h) {
      spdlog::error("cannot take {} over: {}", o.mountpoint, h.error().message);
      return kExitMountFailed;
    }
    handover = std::move(*h);
  } else if (!o.sandbox_test) {
    if (int rc = check_mountpoint(o); rc != kExitOk) return rc;
  }
  if (!takeover && !o.sandbox_test && !o.fake) {
    if (!o.foreground) {
      if (int rc = wait_in_parent(o, ready_fd); rc >= 0) return rc;
    }
    // Forked before the source is opened: the supervisor holds none of it.
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
      spdlog::error("cannot create the supervisor's socket: {}", std::strerror(errno));
      return kExitMountFailed;
    }
    const pid_t daemon = ::fork();
    if (daemon < 0) {
      spdlog::error("cannot fork: {}", std::strerror(errno));
      return kExitMountFailed;
    }
    if (daemon > 0) {
      ::close(sp[1]);
      if (ready_fd >= 0) ::close(ready_fd);  // the daemon reports, not us
      SupervisorConfig cfg;
      cfg.first_link = UniqueFd(sp[0]);
      cfg.first = daemon;
      cfg.mountpoint = o.mountpoint;
      cfg.exe = o.exe;
      cfg.argv = o.argv;
      char cwd[PATH_MAX];
      if (::getcwd(cwd, sizeof cwd)) cfg.cwd = cwd;
      cfg.auto_unmount = o.auto_unmount;
      cfg.confine = o.sandbox;
      cfg.background = !o.foreground;
      const int rc = run_supervisor(std::move(cfg));
      if (!o.foreground) ::_exit(rc);
      return rc;
    }
    ::close(sp[0]);
    link = std::make_unique<SupervisorLink>(UniqueFd(sp[1]));
  }
  std::unique_ptr<Filesystem> fs;
  // A folder is watched (inotify, or a poll where inotify is blind); a file
  // source only where polled. Either is rebuilt when it changes: requests
  // move to the new tree as a whole, open files keep theirs.
  struct stat sst {};
  const bool folder = ::stat(o.source.c_str(), &sst) == 0 && S_ISDIR(sst.st_mode);
  const unsigned poll = poll_seconds(o);
  if (int rc = load(o, !folder && poll > 0, fs); rc != kExitOk) return rc;
  if (o.fake) {
    spdlog::info("fake mount of {} on {}: everything checks out", o.source, o.mountpoint);
    return kExitOk;
  }

  const bool dynamic = fs->tree().hashed_inos();
  const std::string token = mount_token(o.source, dynamic);
  if (takeover && handover.token != token) {
    spdlog::error(
        "cannot take {} over: {} changed since it was mounted, so its inode numbers "
        "would name other bytes",
        o.mountpoint, o.source);
    return kExitMountFailed;
  }
  auto plan = plan_sandbox(o, fs->tree(), dynamic);
  if (!plan) {
    spdlog::error("cannot {} {}: {}", o.sandbox_test ? "plan the sandbox for" : "mount", o.source,
                  plan.error().message);
    return kExitUsage;
  }
  if (o.sandbox_test) return run_sandbox_test(*plan, o.source);
  if (dynamic && !folder) spdlog::info("{}: compared for changes every {} s", o.source, poll);
  LiveFs live(std::shared_ptr<Filesystem>(std::move(fs)), dynamic);
  FolderWatcher watcher(
      folder ? o.source : o.source_as_given, o.mountpoint,
      [&live, &o, folder] {
        auto previous = live.current();
        auto tree = rebuild_tree(o, folder, previous->tree());
        previous.reset();
        if (!tree) return;
        const std::size_t n = tree->tensor_count();
        auto next = Filesystem::create(std::move(*tree));
        if (!next) {
          spdlog::warn("{} changed, but cannot be served: {}", o.source, next.error().message);
          return;
        }
        live.replace(std::shared_ptr<Filesystem>(std::move(next).value()));
        spdlog::info("{} changed: now serving {} tensors", o.source, n);
      },
      poll);
  if (dynamic) watcher.mark_loaded();  // a change while mounting is rebuilt at start
  const std::string status_line = "STATUS=serving " +
                                  std::to_string(live.current()->tree().tensor_count()) +
                                  " tensors from " + o.source + " on " + o.mountpoint;
  Watchdog watchdog;
  // systemd (Type=notify) hears READY=1 once the mount answers, STOPPING=1
  // when the loop ends, and watchdog pings in between if it asked for them.
  // Through the supervisor, the unit's main process (NotifyAccess=main),
  // which also pings the watchdog itself.
  SupervisorLink* notifier = link.get();
  auto notify = [notifier](const std::string& state) {
    if (notifier) return notifier->notify(state);
    sd_notify(state);
  };
  auto notify_ready = [&] {
    notify("READY=1\n" + status_line);
    if (!notifier) watchdog.start();
    if (dynamic) watcher.start();
  };
  auto notify_stopping = [&] {
    watcher.stop();
    watchdog.stop();
    notify("STOPPING=1");
  };

  // A source read that finds its file gone (ESTALE on NFS) asks the watcher
  // for a rebuild, which opens what is there now.
  auto source_gone = [&watcher, dynamic] {
    if (dynamic) watcher.poke();
  };
  auto confine_now = [&plan, &o]() -> Result<void> {
    if (auto r = confine(*plan, o.mountpoint); !r) return r;
    if (plan->enabled) o.confined_to = plan->read_beneath;  // rebuilds keep to it
    return {};
  };
  if (o.foreground) {
    return serve(live, o, {confine_now, notify_ready, notify_stopping, source_gone, token},
                 link.get(), takeover ? &handover : nullptr);
  }

  // The daemon of a background mount: out of the way of the mountpoint, in
  // a session of its own once mounted (below): an automount trigger
  // (x-systemd.automount) holds the mountpoint's lookups, libfuse's stat
  // included, for every process but those of the group that systemd's
  // mount helper runs in.
  if (::chdir("/") != 0) {
    // "/" always exists; nothing to do but go on.
  }
  // Opened now: the sandbox refuses both once serving.
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  auto syslog = make_logger(LogTarget::kSyslog, o.verbose, o.debug);
  auto on_ready = [&ready_fd, &notify_ready, &devnull, &syslog] {
    if (ready_fd < 0) return notify_ready();
    // From here on nobody reads our terminal output: log to syslog. Before
    // notify_ready starts the watcher's thread, which logs: the old
    // logger is freed here.
    redirect_stdio_to(devnull.get());
    spdlog::set_default_logger(syslog);
    notify_ready();
    unsigned char ok = 0;
    ssize_t w = ::write(ready_fd, &ok, 1);
    (void)w;
    ::close(ready_fd);
    ready_fd = -1;
  };
  auto detach_and_confine = [&confine_now] {
    ::setsid();
    return confine_now();
  };
  int rc = serve(live, o, {detach_and_confine, on_ready, notify_stopping, source_gone, token},
                 link.get());
  if (ready_fd >= 0) {
    unsigned char code = static_cast<unsigned char>(rc == 0 ? kExitMountFailed : rc);
    ssize_t w = ::write(ready_fd, &code, 1);
    (void)w;
    ::close(ready_fd);
  }
  ::_exit(rc);
}

}  // namespace stfs
