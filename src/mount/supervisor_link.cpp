#include "stfs/mount/supervisor_link.hpp"

#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "stfs/mount/control_messages.hpp"

namespace stfs {

std::optional<UniqueFd> SupervisorLink::from_environment() {
  const char* v = std::getenv(kEnv);
  if (!v) return std::nullopt;
  char* end = nullptr;
  const long fd = std::strtol(v, &end, 10);
  ::unsetenv(kEnv);
  if (end == v || *end != '\0' || fd < 3 || fd > 65535) return std::nullopt;
  if (::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC) != 0) return std::nullopt;
  return UniqueFd(static_cast<int>(fd));
}

SupervisorLink::SupervisorLink(UniqueFd sock) : sock_(std::move(sock)) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) == 0) {
    wake_read_.reset(p[0]);
    wake_write_.reset(p[1]);
  }
}

SupervisorLink::~SupervisorLink() { stop(); }

Result<Handover> SupervisorLink::receive_handover(int timeout_ms) {
  pollfd p{sock_.get(), POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return unexpected(Error{ETIMEDOUT, "the supervisor sent no connection"});
  auto m = receive_message(sock_.get());
  if (!m) return unexpected(m.error());
  if (!*m) return unexpected(Error{EPIPE, "the supervisor is gone"});
  Handover h;
  if (((*m)->tag != kMsgTakeover && (*m)->tag != kMsgUpgrade) || !(*m)->fd.valid() ||
      !unpack_takeover((*m)->payload, h.token, h.init)) {
    return unexpected(Error{EPROTO, "the supervisor's takeover message is malformed"});
  }
  h.fuse = std::move((*m)->fd);
  h.resend_at_start = (*m)->tag == kMsgTakeover;
  return h;
}

void SupervisorLink::mounted(int fuse_fd, std::string_view token) {
  if (auto r = send_message(sock_.get(), kMsgMounted, token, fuse_fd); !r) {
    spdlog::warn("{}: a later daemon cannot take this mount over", r.error().message);
  }
}

void SupervisorLink::saw_request(const void* buf, std::size_t n) {
  if (init_sent_.load(std::memory_order_relaxed) || n < sizeof(fuse_in_header)) return;
  fuse_in_header h;
  std::memcpy(&h, buf, sizeof h);
  if (h.opcode != FUSE_INIT || init_sent_.exchange(true)) return;
  (void)send_message(sock_.get(), kMsgInit,
                     std::string_view(static_cast<const char*>(buf), std::min<std::size_t>(n, h.len)));
}

void SupervisorLink::serving() { (void)send_message(sock_.get(), kMsgServing, {}); }

void SupervisorLink::notify(std::string_view state) {
  (void)send_message(sock_.get(), kMsgNotify, state);
}

void SupervisorLink::start(std::function<void()> on_retire, std::function<void()> on_resend) {
  if (thread_.joinable() || !wake_read_.valid()) return;
  on_retire_ = std::move(on_retire);
  on_resend_ = std::move(on_resend);
  thread_ = std::thread([this] { listen(); });
}

void SupervisorLink::listen() {
  while (true) {
    pollfd p[2] = {{sock_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;  // stop()
    auto m = receive_message(sock_.get());
    if (!m || !*m) {
      spdlog::warn("the supervisor is gone: this mount ends with this daemon");
      return;
    }
    if ((*m)->tag == kMsgRetire && on_retire_) on_retire_();
    if ((*m)->tag == kMsgResend && on_resend_) on_resend_();
  }
}

void SupervisorLink::stop() {
  if (!thread_.joinable()) return;
  const char b = 0;
  ssize_t w = ::write(wake_write_.get(), &b, 1);
  (void)w;
  thread_.join();
}

bool SupervisorLink::unmount() {
  stop();  // the answer is read here, not by the thread
  if (!send_message(sock_.get(), kMsgUnmount, {})) return false;
  for (int waited = 0; waited < 100; ++waited) {
    pollfd p{sock_.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, 100);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    if (r == 0) continue;
    auto m = receive_message(sock_.get());
    if (!m || !*m) return false;
    if ((*m)->tag == kMsgDone) return true;
  }
  return false;
}

std::string mount_token(const std::string& source, bool hashed_inos) {
  if (hashed_inos) return "hashed";
  struct stat st {};
  if (::stat(source.c_str(), &st) != 0) return "file:?";
  return "file:" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace stfs
