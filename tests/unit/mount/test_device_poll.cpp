// DevicePoller over a pipe standing in for /dev/fuse: what it reads, and
// whether a thread that just served a request polls (runs) or sleeps,
// which a user sees as the daemon's CPU time.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "stfs/mount/device_poll.hpp"

namespace stfs {
namespace {

using namespace std::chrono_literals;

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
  void send(const std::string& s) const {
    ASSERT_EQ(::write(w, s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
};

// The scheduler state of thread `tid` ('R' running or runnable, 'S' asleep).
char state_of(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? '?' : stat[paren + 2];
}

bool several_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return ::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2;
}

// A thread that reads `requests` + 1 requests from `p` through `poller`,
// each "served" at once; the test watches it between reads.
struct Server {
  std::atomic<pid_t> tid{0};
  std::atomic<int> served{0};
  std::string last;
  std::thread t;
  Server(DevicePoller& poller, const Pipe& p, int requests) {
    t = std::thread([&poller, &p, this, requests] {
      tid = static_cast<pid_t>(::syscall(SYS_gettid));
      char buf[64];
      for (int i = 0; i <= requests; ++i) {
        const ssize_t n = poller.read(p.r, buf, sizeof buf);
        if (n <= 0) return;
        last.assign(buf, static_cast<std::size_t>(n));
        ++served;
      }
    });
  }
  void wait_served(int n) const {
    for (int i = 0; i < 5000 && served.load() < n; ++i) std::this_thread::sleep_for(1ms);
    ASSERT_EQ(served.load(), n);
  }
  ~Server() {
    if (t.joinable()) t.join();
  }
};

TEST(DevicePoller, ReadsARequestAndPassesErrorsOn) {
  DevicePoller poller(1000us);
  Pipe p;
  p.send("request");
  char buf[16];
  ASSERT_EQ(poller.read(p.r, buf, sizeof buf), 7);
  EXPECT_EQ(std::string(buf, 7), "request");
  errno = 0;
  EXPECT_EQ(poller.read(-1, buf, sizeof buf), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST(DevicePoller, AThreadThatJustServedPollsForTheWindowThenSleeps) {
  if (!several_cpus()) GTEST_SKIP() << "polling is off with one CPU";
  DevicePoller poller(std::chrono::microseconds(600'000));
  Pipe p;
  Server s(poller, p, 2);
  p.send("one");
  s.wait_served(1);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(state_of(s.tid), 'R') << "not polling 100 ms into a 600 ms window";
  // A request that comes while it polls is taken.
  p.send("two");
  s.wait_served(2);
  EXPECT_EQ(s.last, "two");
  // Its last read polls too, then sleeps once the window has passed.
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(state_of(s.tid), 'S') << "still polling after the window";
  p.send("end");
  s.wait_served(3);
}

TEST(DevicePoller, AThreadThatServedNothingAndAZeroWindowSleepAtOnce) {
  Pipe p;
  DevicePoller fresh(std::chrono::microseconds(600'000));
  Server idle(fresh, p, 0);  // its only read has served nothing before it
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(state_of(idle.tid), 'S');
  p.send("end");
  idle.wait_served(1);

  DevicePoller off(std::chrono::microseconds(0));
  EXPECT_EQ(off.window().count(), 0);
  Server s(off, p, 1);
  p.send("one");
  s.wait_served(1);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(state_of(s.tid), 'S');
  p.send("end");
  s.wait_served(2);
}

TEST(DevicePoller, OneThreadPollsAtATime) {
  if (!several_cpus()) GTEST_SKIP() << "polling is off with one CPU";
  DevicePoller poller(std::chrono::microseconds(800'000));
  Pipe p1, p2;
  Server a(poller, p1, 1);
  p1.send("a");
  a.wait_served(1);
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(state_of(a.tid), 'R');
  Server b(poller, p2, 1);
  p2.send("b");
  b.wait_served(1);
  std::this_thread::sleep_for(100ms);
  // Either a polls on and b, done while a polled, sleeps; or a saw b
  // take a request and slept, and b polls now that it is done.
  const int polling = (state_of(a.tid) == 'R') + (state_of(b.tid) == 'R');
  EXPECT_EQ(polling, 1) << "a " << state_of(a.tid) << ", b " << state_of(b.tid);
  p1.send("end");
  p2.send("end");
  a.wait_served(2);
  b.wait_served(2);
}

TEST(DevicePoller, OneCpuNeverPolls) {
  // Constructed on a thread bound to one CPU, as the daemon on such a
  // machine would be: the requester could not run while it polled.
  std::chrono::microseconds window{-1};
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(static_cast<int>(::sched_getcpu()), &one);
    ASSERT_EQ(::sched_setaffinity(0, sizeof one, &one), 0);
    window = DevicePoller(1000us).window();
  });
  t.join();
  EXPECT_EQ(window.count(), 0);
  if (several_cpus()) {
    EXPECT_EQ(DevicePoller(1000us).window().count(), 1000);
  }
}

}  // namespace
}  // namespace stfs
