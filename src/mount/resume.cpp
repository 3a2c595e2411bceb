#include "stfs/mount/resume.hpp"

#include <linux/fuse.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace stfs {
namespace {

// enum fuse_notify_code's FUSE_NOTIFY_RESEND (protocol 7.40, Linux 6.9);
// Debian 12's <linux/fuse.h> predates it.
constexpr int kNotifyResend = 7;

}  // namespace

void ResumeInit::arm(std::string init, bool resend) {
  resend_ = resend;
  fuse_in_header h{};
  if (init.size() < sizeof h) return;
  std::memcpy(&h, init.data(), sizeof h);
  if (h.opcode != FUSE_INIT) return;
  init_ = std::move(init);
  unique_ = h.unique;
  armed_ = true;
}

ssize_t ResumeInit::feed(void* buf, std::size_t len) {
  if (!armed_) return -1;
  std::unique_lock lock(mu_);
  if (answered_) return -1;
  if (!fed_ && len >= init_.size()) {
    fed_ = true;
    std::memcpy(buf, init_.data(), init_.size());
    return static_cast<ssize_t>(init_.size());
  }
  cv_.wait(lock, [this] { return answered_; });
  return -1;
}

bool ResumeInit::swallow(const iovec* iov, int count) {
  if (!armed_ || count < 1 || iov[0].iov_len < sizeof(fuse_out_header)) return false;
  fuse_out_header h;
  std::memcpy(&h, iov[0].iov_base, sizeof h);
  std::lock_guard lock(mu_);
  if (answered_ || !fed_ || h.unique != unique_) return false;
  for (int i = 0; i < count; ++i) {
    reply_.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  }
  answered_ = true;
  cv_.notify_all();
  return true;
}

bool ResumeInit::answered() const {
  std::lock_guard lock(mu_);
  return answered_;
}

bool ResumeInit::answer_again(const void* buf, std::size_t n, std::string& reply) const {
  if (!armed_ || n < sizeof(fuse_in_header)) return false;
  fuse_in_header in;
  std::memcpy(&in, buf, sizeof in);
  if (in.opcode != FUSE_INIT) return false;
  std::lock_guard lock(mu_);
  if (!answered_ || reply_.size() < sizeof(fuse_out_header)) return false;
  reply = reply_;
  fuse_out_header out;
  std::memcpy(&out, reply.data(), sizeof out);
  out.unique = in.unique;  // a resent request's id carries FUSE_UNIQUE_RESEND
  std::memcpy(reply.data(), &out, sizeof out);
  return true;
}

bool kernel_resends(const char* release) {
  unsigned major = 0, minor = 0;
  if (std::sscanf(release, "%u.%u", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 9);
}

bool kernel_resends() {
  utsname u{};
  return ::uname(&u) == 0 && kernel_resends(u.release);
}

Result<void> request_resend(int fuse_fd) {
  fuse_out_header h{};
  h.len = sizeof h;
  h.error = kNotifyResend;
  h.unique = 0;
  ssize_t n;
  do {
    n = ::write(fuse_fd, &h, sizeof h);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof h)) {
    int e = n < 0 ? errno : EIO;
    return unexpected(Error{
        e,
        std::string("the kernel refused to resend the requests in flight: ") + std::strerror(e)});
  }
  return {};
}

}  // namespace stfs
