#include "stfs/mount/supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "stfs/mount/control_messages.hpp"
#include "stfs/mount/daemon_death.hpp"
#include "stfs/mount/logging.hpp"
#include "stfs/mount/mountinfo.hpp"
#include "stfs/mount/resume.hpp"
#include "stfs/mount/sd_notify.hpp"
#include "stfs/mount/supervisor_filter.hpp"
#include "stfs/mount/supervisor_link.hpp"
#include "stfs/mount/supervisor_process.hpp"

extern char** environ;

namespace stfs {
namespace {

constexpr int kHandledSignals[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};

sigset_t handled_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kHandledSignals) sigaddset(&set, s);
  return set;
}

}  // namespace

namespace supervisor_detail {

bool Supervisor::conn_alive() const {
  if (!fuse_.valid()) return false;
  pollfd p{fuse_.get(), 0, 0};
  if (::poll(&p, 1, 0) < 0) return false;
  return !(p.revents & (POLLERR | POLLHUP | POLLNVAL));
}

std::string Supervisor::cannot_resume() const {
  if (!fuse_.valid()) return "the supervisor does not hold the connection";
  if (!kernel_resends()) return "this kernel cannot resend requests in flight (Linux 6.9+ can)";
  if (!conn_alive()) return "the mount is gone";
  return {};
}

void Supervisor::unmount_ours() {
  const auto now = find_mount(c_.mountpoint);
  if (!now) return;
  bool ours;
  if (fuse_.valid()) {
    // While our connection is up, its superblock holds our device number.
    ours = conn_alive() && now->device == device_;
  } else {
    // The daemon died before handing the connection over: ours only if
    // it is a stfs mount whose connection is gone.
    struct statfs sf {};
    ours = now->fstype == "fuse.stfs" && ::statfs(c_.mountpoint.c_str(), &sf) != 0 &&
           errno == ENOTCONN;
  }
  if (!ours) return;
  if (::umount2(c_.mountpoint.c_str(), MNT_DETACH) == 0) return;
  // Not root: fusermount3 is setuid and checks that the mount is the user's.
  const pid_t pid = ::fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execlp("fusermount3", "fusermount3", "-u", "-z", "-q", "--", c_.mountpoint.c_str(),
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (pid > 0 && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

void Supervisor::give_up(const std::string& why) {
  spdlog::error("{}: {}; unmounting", c_.mountpoint, why);
  gave_up_ = true;
  exit_code_ = 3;
  unmount_ours();
  release_connection();
}

std::optional<Daemon> Supervisor::spawn(bool upgrade) {
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
    spdlog::error("{}: cannot create a socket for a new daemon: {}", c_.mountpoint,
                  std::strerror(errno));
    return std::nullopt;
  }
  UniqueFd ours(sp[0]), theirs(sp[1]);
  std::vector<char*> argv;
  for (std::string& a : c_.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string env = std::string(SupervisorLink::kEnv) + "=" + std::to_string(theirs.get());
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, SupervisorLink::kEnv, std::strlen(SupervisorLink::kEnv)) != 0) {
      envp.push_back(*e);
    }
  }
  envp.push_back(const_cast<char*>(env.c_str()));
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    spdlog::error("{}: cannot start a new daemon: {}", c_.mountpoint, std::strerror(errno));
    return std::nullopt;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::fcntl(theirs.get(), F_SETFD, 0);  // the one descriptor it inherits
    // The arguments' relative paths are the command's; we live in "/".
    if (!c_.cwd.empty() && ::chdir(c_.cwd.c_str()) != 0) {
      // Gone: relative paths fail to resolve, and the daemon says so.
    }
    ::execve(c_.exe.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  theirs.reset();
  if (auto r = send_message(ours.get(), upgrade ? kMsgUpgrade : kMsgTakeover,
                            pack_takeover(token_, init_), fuse_.get());
      !r) {
    spdlog::error("{}: {}", c_.mountpoint, r.error().message);
  }
  Daemon d;
  d.pid = pid;
  d.link = std::move(ours);
  d.upgrade = upgrade;
  return d;
}

void Supervisor::take_over(const std::string& why) {
  if (const std::string no = cannot_resume(); !no.empty()) {
    if (!fuse_.valid() || !conn_alive()) return;  // nothing left to serve
    spdlog::error("{}: {}; the mount cannot be taken over: {}", c_.mountpoint, why, no);
    if (c_.auto_unmount) unmount_ours();
    exit_code_ = 3;
    release_connection();  // readers get ENOTCONN, as without a supervisor
    return;
  }
  if (crashes_ >= kMaxCrashes) {
    give_up(why + ", and each of the last " + std::to_string(kMaxCrashes) +
            " daemons died the same way: a request kills every daemon it reaches");
    return;
  }
  spdlog::warn("{}: {}; a new daemon takes the mount over", c_.mountpoint, why);
  current_ = spawn(false);
  if (!current_) give_up("no new daemon could be started");
}

// Reads what a dead daemon said before it died (its INIT, say): the exit
// can be seen before the messages are.
void Supervisor::drain(Daemon& d, bool incoming) {
  while (d.link.valid()) {
    pollfd p{d.link.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return;
    on_message(d, incoming);
  }
}

void Supervisor::on_child(pid_t pid, int status) {
  if (incoming_ && incoming_->pid == pid) drain(*incoming_, true);
  if (current_ && current_->pid == pid) drain(*current_, false);
  if (incoming_ && incoming_->pid == pid) {
    incoming_.reset();
    answer_client("error: the new daemon " + describe_status(status) +
                  " before it served; the running one still serves (its log says why)");
    return;
  }
  if (!current_ || current_->pid != pid) return;  // a fusermount3 of ours
  const Daemon dead = std::move(*current_);
  current_.reset();
  if (!mounted_) {
    // The first daemon ended before the mount was up: its exit code is
    // the command's.
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 3;
    if (exit_code_ == 0) exit_code_ = 3;
    if (!WIFEXITED(status)) {
      spdlog::error("the stfs daemon for {} was {} before the mount was ready", c_.mountpoint,
                    describe_status(status));
    }
    unmount_ours();
    return;
  }
  if (stopping_ || !conn_alive()) {
    if (stopping_ && conn_alive()) unmount_ours();
    release_connection();
    return;
  }
  if (incoming_) {
    // A restart: the old daemon has retired (or died meanwhile).
    current_ = std::move(incoming_);
    incoming_.reset();
    if (current_->serving) finish_upgrade(*current_);
    return;
  }
  // Death: count what looks like a request that kills its daemon
  // (daemon_death.hpp); a kill from outside never counts.
  const bool young = !dead.serving ||
                     Clock::now() - dead.serving_since < std::chrono::seconds(kCrashWindowSeconds);
  const Death death = read_death(status, dead.oom_kills_at_start, oom_kills());
  if (death.counts && young) {
    ++crashes_;
  } else {
    crashes_ = 0;
  }
  take_over("the daemon (pid " + std::to_string(pid) + ") " + death.what);
}

void Supervisor::on_message(Daemon& d, bool incoming) {
  auto m = receive_message(d.link.get());
  if (!m || !*m) {
    d.link.reset();  // gone: its exit arrives as SIGCHLD
    return;
  }
  Message& msg = **m;
  switch (msg.tag) {
    case kMsgMounted:
      if (mounted_ || !msg.fd.valid()) break;
      fuse_ = std::move(msg.fd);
      token_ = msg.payload;
      if (auto e = find_mount(c_.mountpoint)) device_ = e->device;
      mounted_ = true;
      if (c_.background) {
        // Nobody reads our terminal from here on: the command returns once
        // the daemon says ready, and must not wait for our stderr to close.
        ::setsid();
        spdlog::set_default_logger(make_logger(LogTarget::kSyslog, false, false));
        if (UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC)); null.valid()) {
          for (int fd = 0; fd < 3; ++fd) ::dup2(null.get(), fd);
        }
        if (::chdir("/") != 0) {
          // "/" always exists.
        }
      }
      break;
    case kMsgInit:
      if (init_.empty()) init_ = msg.payload;
      break;
    case kMsgServing:
      ready_ = true;
      d.serving = true;
      d.serving_since = Clock::now();
      if (incoming) {
        // The old daemon retires; its exit completes the upgrade (on_child).
        if (current_ && current_->link.valid()) {
          (void)send_message(current_->link.get(), kMsgRetire, {});
        } else if (current_) {
          ::kill(current_->pid, SIGKILL);  // cannot be told: its requests are resent
        }
      } else if (d.upgrade) {
        // Promoted before it served: the daemon it replaced died meanwhile.
        finish_upgrade(d);
      }
      break;
    case kMsgNotify:
      sd_notify(msg.payload);  // the unit's main process speaks for its daemon
      break;
    case kMsgUnmount:
      stopping_ = true;
      unmount_ours();
      (void)send_message(d.link.get(), kMsgDone, {});
      break;
    default: break;
  }
}

void Supervisor::on_signal() {
  signalfd_siginfo si{};
  while (::read(signals_.get(), &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGCHLD) continue;
    // A stop: the daemon unmounts (through us) and ends; so do we. It
    // hears the signal we heard.
    stopping_ = true;
    if (current_) ::kill(current_->pid, static_cast<int>(si.ssi_signo));
    if (incoming_) ::kill(incoming_->pid, SIGKILL);
  }
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) on_child(pid, status);
}

int Supervisor::run() {
  ::prctl(PR_SET_NAME, "stfs-supervise", 0, 0, 0);  // ps tells it from the daemon
  const sigset_t set = handled_set();
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  signals_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  listen_for_clients();
  // Off with the daemon's sandbox: LeakSanitizer's exit check and valgrind
  // trace the process, which the filter kills.
  if (!c_.confine) {
    spdlog::debug("{}: the supervisor is not confined: sandbox off", c_.mountpoint);
  } else if (auto r = confine_supervisor(); !r) {
    spdlog::warn("{}: the supervisor is not confined: {}", c_.mountpoint, r.error().message);
  } else {
    spdlog::debug("{}: supervisor confined: {}", c_.mountpoint, *r);
  }
  // A child that ended before the signalfd existed.
  on_signal();
  // systemd's watchdog watches the main process: us. Pinged while a daemon
  // is there, at half the interval it asked for.
  const auto watchdog = sd_watchdog_interval();
  auto last_ping = Clock::now();
  while (current_ || incoming_) {
    if (watchdog && ready_ && Clock::now() - last_ping >= *watchdog / 2) {
      sd_notify("WATCHDOG=1");
      last_ping = Clock::now();
    }
    std::vector<pollfd> fds;
    fds.push_back({signals_.get(), POLLIN, 0});
    fds.push_back({listener_.valid() ? listener_.get() : -1, POLLIN, 0});
    fds.push_back({current_ && current_->link.valid() ? current_->link.get() : -1, POLLIN, 0});
    fds.push_back({incoming_ && incoming_->link.valid() ? incoming_->link.get() : -1, POLLIN, 0});
    int timeout = incoming_ ? 500 : -1;
    if (watchdog) {
      const auto half = std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog / 2);
      timeout = timeout < 0 ? static_cast<int>(half.count())
                            : std::min(timeout, static_cast<int>(half.count()));
    }
    const int r = ::poll(fds.data(), fds.size(), timeout);
    if (r < 0 && errno != EINTR) break;
    if (fds[2].revents && current_) on_message(*current_, false);
    if (fds[3].revents && incoming_) on_message(*incoming_, true);
    if (fds[0].revents) on_signal();
    if (fds[1].revents) on_client();
    if (incoming_ && !incoming_->serving && Clock::now() > restart_deadline_) {
      ::kill(incoming_->pid, SIGKILL);  // its exit answers the client
    }
  }
  if (!gave_up_ && mounted_ && c_.auto_unmount && conn_alive()) unmount_ours();
  release_connection();
  answer_client("error: the mount ended during the restart");
  struct stat st {};
  if (listener_.valid() && ::stat(socket_path_.c_str(), &st) == 0 && st.st_ino == socket_ino_) {
    ::unlink(socket_path_.c_str());
  }
  return exit_code_;
}

}  // namespace supervisor_detail

int run_supervisor(SupervisorConfig config) {
  supervisor_detail::Supervisor s(std::move(config));
  return s.run();
}

}  // namespace stfs
