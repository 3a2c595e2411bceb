#include "stfs/mount/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "stfs/base/unique_fd.hpp"

namespace stfs {

namespace {

// A datagram socket connected to $NOTIFY_SOCKET, or none.
UniqueFd notify_socket() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return {};
  std::size_t len = std::strlen(path);
  sockaddr_un addr{};
  if (len >= sizeof addr.sun_path || (path[0] != '/' && path[0] != '@')) return {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return {};
  const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), addr_len) != 0) return {};
  return fd;
}

std::mutex g_mu;
UniqueFd g_connected;

}  // namespace

void sd_notify_connect() {
  std::lock_guard lock(g_mu);
  if (!g_connected.valid()) g_connected = notify_socket();
}

bool sd_notify(std::string_view state) {
  std::lock_guard lock(g_mu);
  UniqueFd fresh;
  int fd = g_connected.get();
  if (fd < 0) {
    fresh = notify_socket();
    fd = fresh.get();
  }
  if (fd < 0) return false;
  ssize_t n = ::send(fd, state.data(), state.size(), MSG_NOSIGNAL);
  return n == static_cast<ssize_t>(state.size());
}

std::optional<std::chrono::microseconds> sd_watchdog_interval() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (!usec || !*usec) return std::nullopt;
  if (const char* pid = std::getenv("WATCHDOG_PID"); pid && *pid) {
    if (std::strtol(pid, nullptr, 10) != static_cast<long>(::getpid())) return std::nullopt;
  }
  char* end = nullptr;
  unsigned long long v = std::strtoull(usec, &end, 10);
  if (*end != '\0' || v == 0) return std::nullopt;
  return std::chrono::microseconds(v);
}

}  // namespace stfs
