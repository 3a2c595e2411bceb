// SplicePipe (splice_pipe.hpp).
#include "stfs/source/splice_pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

namespace stfs {
namespace {
// pipe-max-size's default: what an unprivileged process may ask for.
constexpr int kWant = 1 << 20;
const std::size_t kPage = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}  // namespace

SplicePipe* SplicePipe::for_this_thread() {
  thread_local std::unique_ptr<SplicePipe> pipe;
  thread_local bool tried = false;
  if (!tried) {
    tried = true;
    auto p = std::unique_ptr<SplicePipe>(new SplicePipe());
    p->reset();
    if (p->capacity_ > 0) pipe = std::move(p);
  }
  return pipe.get();
}

std::size_t SplicePipe::largest_request() {
  const SplicePipe* p = for_this_thread();
  // Ours needs a slot more for an unaligned range; libfuse's holds the
  // reply's header too and asks for three pages more than the reply.
  return p && p->capacity_ > 4 * kPage ? p->capacity_ - 4 * kPage : 0;
}

void SplicePipe::reset() {
  r_.reset();
  w_.reset();
  capacity_ = 0;
  int fds[2];
  // Non-blocking: a splice that would overfill it fails (EAGAIN) rather
  // than wait for a reader that is this very thread.
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return;
  r_.reset(fds[0]);
  w_.reset(fds[1]);
  const int got = ::fcntl(w_.get(), F_SETPIPE_SZ, kWant);
  if (got < kWant) {
    r_.reset();
    w_.reset();
    return;
  }
  capacity_ = static_cast<std::size_t>(got);
}

bool SplicePipe::fits(std::uint64_t offset, std::size_t size) const {
  const std::uint64_t first = offset / kPage, last = (offset + size + kPage - 1) / kPage;
  return r_.valid() && (last - first) * kPage <= capacity_;
}

Result<void> SplicePipe::fill(int fd, std::uint64_t offset, std::size_t size) {
  auto pos = static_cast<loff_t>(offset);
  std::size_t left = size;
  while (left > 0) {
    const ssize_t n = ::splice(fd, &pos, w_.get(), nullptr, left, 0);
    if (n > 0) {
      left -= static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const int e = errno;  // before reset() makes a new pipe
    reset();
    if (n < 0) return unexpected(Error{e, std::strerror(e)});
    return unexpected(Error{EIO, "it ends at " + std::to_string(static_cast<std::uint64_t>(pos)) +
                                     ", before byte " + std::to_string(offset + size)});
  }
  return {};
}

void SplicePipe::settle() {
  // The read end does not block: EAGAIN is an empty pipe. (FIONREAD would
  // tell too, but the syscall filter allows no such ioctl.)
  char byte;
  if (::read(r_.get(), &byte, 1) != -1 || errno != EAGAIN) reset();
}

}  // namespace stfs
