// Taking over a live FUSE connection (supervisor.hpp), the part between
// the device and libfuse.
//
// libfuse serves nothing before it has seen INIT, and the kernel sends
// INIT once per connection. A daemon that takes a connection over is
// handed the INIT the kernel sent the first daemon: the device reads feed
// it to libfuse as if just read, every other read waits until libfuse has
// answered it, and that answer is dropped (the kernel has the first
// daemon's). Then FUSE_NOTIFY_RESEND (Linux 6.9) asks the kernel to send
// again every request that a daemon read and never answered.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "stfs/base/result.hpp"

namespace stfs {

class ResumeInit {
 public:
  // Arms the feed with the INIT request `init` (a takeover); `resend`:
  // ask for the resend as soon as INIT is answered.
  void arm(std::string init, bool resend = true);
  bool armed() const { return armed_; }
  bool resends_at_start() const { return resend_; }
  // For a device read of at most `len` bytes: -1 to read the device; else
  // INIT's size, copied into `buf` (the first call). Other calls before
  // INIT is answered wait for that answer, then read the device.
  ssize_t feed(void* buf, std::size_t len);
  // For a reply about to be written: true if it answers the fed INIT (it
  // must not reach the kernel). The reads waiting in feed() go on.
  bool swallow(const iovec* iov, int count);
  bool answered() const;
  // For a request read from the device: true if it is the kernel's INIT
  // again, with the answer the fed copy got (for this request's id) in
  // `reply`. That happens when the first daemon read INIT, handed it to
  // the supervisor and died before answering: the resend brings it back.
  // libfuse refuses a second INIT (EIO), and after that the kernel refuses
  // every request (ECONNREFUSED), so the daemon answers it from here.
  bool answer_again(const void* buf, std::size_t n, std::string& reply) const;

 private:
  bool armed_ = false;
  bool resend_ = true;
  std::string init_;
  std::uint64_t unique_ = 0;
  std::string reply_;  // libfuse's answer to the fed INIT
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool fed_ = false;
  bool answered_ = false;
};

// Whether this kernel resends requests on FUSE_NOTIFY_RESEND (6.9 on).
bool kernel_resends();
bool kernel_resends(const char* release);  // "6.18.4-..." (for tests)

// Asks the kernel to queue again every request read from `fuse_fd`'s
// connection and not answered.
Result<void> request_resend(int fuse_fd);

}  // namespace stfs
