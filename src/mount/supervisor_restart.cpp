// The supervisor's control socket (supervisor_process.hpp): where
// `stfs --restart` reaches it, who may, and an upgrade from start to end.
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "stfs/mount/control_messages.hpp"
#include "stfs/mount/supervisor_process.hpp"

namespace stfs::supervisor_detail {

// The daemon an upgrade replaced is gone: what it held is resent to the new
// one, and the client hears it serves.
void Supervisor::finish_upgrade(Daemon& d) {
  d.upgrade = false;
  (void)send_message(d.link.get(), kMsgResend, {});
  spdlog::info("{}: restarted: the new daemon (pid {}) serves", c_.mountpoint, d.pid);
  answer_client("ok: " + c_.mountpoint + " is served by a new daemon (pid " +
                std::to_string(d.pid) + ")");
}

void Supervisor::answer_client(const std::string& text) {
  if (!client_.valid()) return;
  (void)send_message(client_.get(), kMsgAnswer, text);
  client_.reset();
}

void Supervisor::start_restart(UniqueFd client) {
  if (client_.valid() || incoming_) {
    (void)send_message(client.get(), kMsgAnswer, "error: a restart is already under way");
    return;
  }
  client_ = std::move(client);
  if (const std::string no = cannot_resume(); !no.empty() || !current_ || stopping_) {
    answer_client("error: " + c_.mountpoint + " cannot be resumed: " +
                  (no.empty() ? std::string("it is stopping") : no) + "; nothing changed");
    return;
  }
  spdlog::info("{}: restart asked: starting {}", c_.mountpoint, c_.exe);
  incoming_ = spawn(true);
  if (!incoming_) {
    answer_client("error: no new daemon could be started; nothing changed");
    return;
  }
  restart_deadline_ = Clock::now() + kRestartTimeout;
}

void Supervisor::on_client() {
  UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!client.valid()) return;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(client.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      (cred.uid != 0 && cred.uid != ::getuid())) {
    (void)send_message(client.get(), kMsgAnswer,
                       "error: only root and the mount's owner may restart it");
    spdlog::warn("{}: restart refused to uid {}", c_.mountpoint, cred.uid);
    return;
  }
  pollfd p{client.get(), POLLIN, 0};
  if (::poll(&p, 1, 2000) <= 0) return;
  auto m = receive_message(client.get());
  if (!m || !*m || (*m)->tag != kMsgRestart) return;
  start_restart(std::move(client));
}

void Supervisor::listen_for_clients() {
  socket_path_ = control_socket_path(c_.mountpoint, ::getuid());
  const std::string dir = socket_path_.substr(0, socket_path_.rfind('/'));
  ::mkdir(dir.c_str(), 0700);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::getuid() ||
      (st.st_mode & 077) != 0) {
    spdlog::warn("{}: {} is not a private folder of ours: stfs --restart cannot reach this mount",
                 c_.mountpoint, dir);
    return;
  }
  auto s = listen_control_socket(socket_path_);
  if (!s) {
    spdlog::warn("{}: {}; stfs --restart cannot reach this mount", c_.mountpoint,
                 s.error().message);
    return;
  }
  if (::stat(socket_path_.c_str(), &st) == 0) socket_ino_ = st.st_ino;
  listener_ = std::move(*s);
}

}  // namespace stfs::supervisor_detail
