// A session's reads and writes of /dev/fuse (device_io.hpp).
#include "stfs/mount/device_io.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "stfs/mount/resume.hpp"
#include "stfs/mount/session_state.hpp"
#include "stfs/mount/supervisor_link.hpp"

namespace stfs {

namespace {

// What the kernel orders and ThreadSanitizer cannot see: a reply written
// to the device happens before every request read after it (a RELEASE
// comes after the READs of its handle are answered). TSan follows some
// descriptors' reads and writes, not splice nor a descriptor received over
// a socket (a takeover's); this says it for every reply.
#if defined(__SANITIZE_THREAD__)
std::atomic<unsigned> g_replies{0};
void replied() { g_replies.fetch_add(1, std::memory_order_release); }
void reading() { (void)g_replies.load(std::memory_order_acquire); }
#else
void replied() {}
void reading() {}
#endif

}  // namespace

ssize_t device_read(int fd, void* buf, std::size_t len, void* userdata) {
  auto* c = static_cast<SessionState*>(userdata);
  if (c->resume.armed()) {
    if (const ssize_t fed = c->resume.feed(buf, len); fed >= 0) {
      c->init_reply.saw_request(buf, static_cast<size_t>(fed));
      return fed;
    }
  }
  ssize_t n;
  for (;;) {
    n = c->poller.read(fd, buf, len);
    reading();
    std::string again;
    if (n <= 0 || !c->resume.armed() ||
        !c->resume.answer_again(buf, static_cast<size_t>(n), again)) {
      break;
    }
    // The kernel's own INIT, resent: the first daemon died before answering.
    replied();
    ssize_t w;
    do {
      w = ::write(fd, again.data(), again.size());
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
      spdlog::warn("cannot answer the kernel's resent INIT: {}", std::strerror(errno));
    } else {
      spdlog::info("answered the kernel's INIT, which the dead daemon had left unanswered");
    }
  }
  if (n > 0) {
    c->init_reply.saw_request(buf, static_cast<size_t>(n));
    if (c->link) c->link->saw_request(buf, static_cast<size_t>(n));
  }
  return n;
}

ssize_t device_writev(int fd, iovec* iov, int count, void* userdata) {
  auto* c = static_cast<SessionState*>(userdata);
  // Amended first: a takeover keeps the answer it swallows, in case the
  // kernel's INIT comes again (ResumeInit::answer_again).
  c->init_reply.amend(iov, count);
  if (c->resume.swallow(iov, count)) {
    ssize_t total = 0;
    for (int i = 0; i < count; ++i) total += static_cast<ssize_t>(iov[i].iov_len);
    if (c->resume.resends_at_start()) {
      if (auto r = request_resend(fd); !r) spdlog::warn("{}", r.error().message);
    }
    spdlog::info("{}: taken over; serving again", c->opts->mountpoint);
    if (c->link) c->link->serving();
    return total;
  }
  replied();
  return ::writev(fd, iov, count);
}

ssize_t device_splice(int in, off_t* in_off, int out, off_t* out_off, std::size_t len,
                      unsigned flags, void*) {
  replied();
  const ssize_t n = ::splice(in, in_off, out, out_off, len, flags);
  // ENOENT comes only from the device: the request is no longer ours (a
  // takeover had it resent). libfuse ignores that for its writes but
  // prints it for splices: it is not an error either way.
  if (n < 0 && errno == ENOENT) return static_cast<ssize_t>(len);
  return n;
}

}  // namespace stfs
