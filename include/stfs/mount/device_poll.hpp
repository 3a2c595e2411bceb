// Reading requests from /dev/fuse, with a short poll before sleeping.
//
// A FUSE request the daemon sleeps on wakes it through the scheduler; on a
// VM whose idle vCPUs halt (no guest halt polling) that costs up to 270 us,
// far more than a LOOKUP or a small READ takes to answer. A reader that
// opens many files waits for it twice a file. So after serving a request,
// one idle thread at a time polls the device for a moment before it
// sleeps: requests that follow soon are taken at once. Nothing here knows
// libfuse: the adapter routes libfuse's reads of the device to read().
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>

namespace stfs {

class DevicePoller {
 public:
  // `window`: how long a thread that just served a request polls before it
  // sleeps; zero never polls. Polling is off on a machine with one CPU,
  // where the requester cannot run while we poll.
  explicit DevicePoller(std::chrono::microseconds window);

  // One request from `fd` into `buf`, as read(2): -1 with errno set.
  ssize_t read(int fd, void* buf, std::size_t len);

  std::chrono::microseconds window() const { return window_; }

 private:
  // After this thread served a request: poll if nobody else serves or polls.
  void maybe_poll(int fd);
  // Polls `fd` until a request is there or another thread starts serving
  // (true), or the window has passed (false).
  bool poll_for_request(int fd);

  std::chrono::microseconds window_;
  std::atomic<bool> polling_{false};  // one poller at a time
  std::atomic<int> serving_{0};       // threads between a request and their next read
};

}  // namespace stfs
