#include "stfs/mount/device_poll.hpp"

#include <poll.h>
#include <sched.h>
#include <unistd.h>

namespace stfs {
namespace {

bool one_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return ::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < 2;
}

// Whether this thread took a request with its last read and has not read
// again since: it was serving until now.
thread_local bool t_served = false;

}  // namespace

DevicePoller::DevicePoller(std::chrono::microseconds window)
    : window_(one_cpu() ? std::chrono::microseconds{0} : window) {}

ssize_t DevicePoller::read(int fd, void* buf, std::size_t len) {
  if (t_served) {
    t_served = false;
    const int others = serving_.fetch_sub(1, std::memory_order_acq_rel) - 1;
    // Only a thread that just finished, with nobody else serving (a
    // reader is waiting on us, not streaming past us) and nobody polling.
    if (window_.count() > 0 && others == 0 && !polling_.exchange(true, std::memory_order_acq_rel)) {
      poll_for_request(fd, std::chrono::steady_clock::now());
      polling_.store(false, std::memory_order_release);
    }
  }
  const ssize_t n = ::read(fd, buf, len);
  if (n > 0) {
    t_served = true;
    serving_.fetch_add(1, std::memory_order_acq_rel);
  }
  return n;
}

void DevicePoller::poll_for_request(int fd, std::chrono::steady_clock::time_point from) {
  const auto until = from + window_;
  pollfd p{fd, POLLIN, 0};
  do {
    const int r = ::poll(&p, 1, 0);
    // A request, an unmount (POLLERR) or a signal: read() tells which.
    if (r != 0) return;
    // Another thread took a request: ours would contend with it for a CPU.
    if (serving_.load(std::memory_order_acquire) > 0) return;
    // Anything else runnable on this CPU goes first.
    ::sched_yield();
  } while (std::chrono::steady_clock::now() < until);
}

}  // namespace stfs
