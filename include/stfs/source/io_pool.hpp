// IoPool: threads that run reads of source bytes handed off by the FUSE
// loop, so that reads blocked on a stalled source (an NFS server away, a
// stopped FUSE daemon below us) never hold every thread of the loop:
// lookups, getattr, readdir and the JSON files are still answered.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace stfs {

class IoPool {
 public:
  // At most `threads` threads, started only when a job finds none idle: a
  // mount whose sources never stall never starts one.
  explicit IoPool(unsigned threads);
  ~IoPool();  // runs what is queued, then joins
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  void submit(std::function<void()> job);

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  unsigned max_;
  unsigned idle_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace stfs
