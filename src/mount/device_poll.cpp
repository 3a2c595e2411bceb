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

// Whether a request waits on `fd` (or it is unmounted, or a signal came:
// the read that follows tells which).
bool request_waits(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
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
    serving_.fetch_sub(1);
    maybe_poll(fd);
  }
  const ssize_t n = ::read(fd, buf, len);
  if (n > 0) {
    t_served = true;
    serving_.fetch_add(1);
  }
  return n;
}

void DevicePoller::maybe_poll(int fd) {
  if (window_.count() <= 0) return;
  // Only with nobody else serving (a reader is waiting on us, not
  // streaming past us) and nobody polling. The flag and the count are
  // sequentially consistent: a thread that finishes while we hold the
  // flag declines to poll, and we see its count drop after we let go.
  while (serving_.load() == 0 && !polling_.exchange(true)) {
    const bool expired = !poll_for_request(fd);
    polling_.store(false);
    if (expired || serving_.load() != 0) return;
    // A request came, or another thread took one and is done already
    // (it found us polling and went to sleep): read the one that is
    // there, or poll on in that thread's place.
    if (request_waits(fd)) return;
  }
}

bool DevicePoller::poll_for_request(int fd) {
  const auto until = std::chrono::steady_clock::now() + window_;
  do {
    if (request_waits(fd)) return true;
    // Another thread took a request: ours would contend with it for a CPU.
    if (serving_.load() > 0) return true;
    // Anything else runnable on this CPU goes first.
    ::sched_yield();
  } while (std::chrono::steady_clock::now() < until);
  return false;
}

}  // namespace stfs
