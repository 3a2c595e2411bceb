#include "stfs/mount/control_messages.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace stfs {
namespace {

// A seqpacket socket and the address of `path`; an error if the path does
// not fit sun_path (control_socket_path's always does).
Result<UniqueFd> control_socket(const std::string& path, sockaddr_un& addr) {
  addr = sockaddr_un{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return unexpected(Error{ENAMETOOLONG, path + ": too long for a socket's address"});
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s.valid()) {
    const int e = errno;
    return unexpected(Error{e, std::string("cannot create a socket: ") + std::strerror(e)});
  }
  return s;
}

}  // namespace

Result<void> send_message(int sock, char tag, std::string_view payload, int fd) {
  std::string buf(1, tag);
  buf.append(payload);
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(buf.size())) {
    int e = n < 0 ? errno : EMSGSIZE;
    return unexpected(
        Error{e, std::string("cannot send to the supervisor's socket: ") + std::strerror(e)});
  }
  return {};
}

Result<std::optional<Message>> receive_message(int sock) {
  char buf[kMaxMessage];
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno;
    if (e == ECONNRESET) return std::optional<Message>{};
    return unexpected(Error{e, std::string("cannot read the control socket: ") + std::strerror(e)});
  }
  Message m;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (!m.fd.valid()) {
          m.fd.reset(fd);
        } else {
          ::close(fd);  // one descriptor per message; more is not ours to keep
        }
      }
    }
  }
  if (n == 0) return std::optional<Message>{};
  if (msg.msg_flags & MSG_TRUNC) {
    return unexpected(Error{EMSGSIZE, "a control message was longer than allowed"});
  }
  m.tag = buf[0];
  m.payload.assign(buf + 1, static_cast<std::size_t>(n - 1));
  return std::optional<Message>(std::move(m));
}

std::string pack_takeover(std::string_view token, std::string_view init) {
  const auto len = static_cast<std::uint32_t>(token.size());
  std::string out(reinterpret_cast<const char*>(&len), sizeof len);
  out.append(token);
  out.append(init);
  return out;
}

bool unpack_takeover(std::string_view payload, std::string& token, std::string& init) {
  std::uint32_t len;
  if (payload.size() < sizeof len) return false;
  std::memcpy(&len, payload.data(), sizeof len);
  payload.remove_prefix(sizeof len);
  if (payload.size() < len) return false;
  token.assign(payload.substr(0, len));
  init.assign(payload.substr(len));  // empty: the dead daemon never read INIT
  return true;
}

std::string control_socket_path(const std::string& mountpoint, uid_t uid) {
  // FNV-1a: a name of fixed length whatever the mountpoint's.
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : mountpoint) {
    h ^= ch;
    h *= 1099511628211ULL;
  }
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.sock", static_cast<unsigned long long>(h));
  if (uid == 0) return std::string("/run/stfs/") + name;
  const std::string run_user = "/run/user/" + std::to_string(uid);
  struct stat st {};
  if (::stat(run_user.c_str(), &st) == 0 && st.st_uid == uid) return run_user + "/stfs/" + name;
  return "/tmp/stfs-" + std::to_string(uid) + "/" + name;
}

Result<UniqueFd> listen_control_socket(const std::string& path) {
  sockaddr_un addr;
  auto s = control_socket(path, addr);
  if (!s) return s;
  ::unlink(path.c_str());  // a stale one: this mountpoint is ours now
  const mode_t old = ::umask(077);
  const int b = ::bind(s->get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (b != 0 || ::listen(s->get(), 4) != 0) {
    const int e = errno;
    return unexpected(Error{e, "cannot listen on " + path + ": " + std::strerror(e)});
  }
  return s;
}

Result<UniqueFd> connect_control_socket(const std::string& path) {
  sockaddr_un addr;
  auto s = control_socket(path, addr);
  if (!s) return s;
  if (::connect(s->get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    return unexpected(Error{e, std::strerror(e)});
  }
  return s;
}

}  // namespace stfs
