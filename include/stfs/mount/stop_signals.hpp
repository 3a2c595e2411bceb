// SIGINT, SIGTERM and SIGHUP end the FUSE loop, every time.
//
// libfuse's own handlers only set the session's exit flag and rely on the
// signal interrupting the thread that waits: a signal that lands between
// that thread's check of the flag and its wait (sem_wait in the
// multi-threaded loop, read in the single-threaded one) is lost, and the
// daemon serves on. ThreadSanitizer defers handlers to the thread's next
// intercepted call, which widened that window until CI hit it.
//
// So no handler runs for them: the signals are blocked in every thread of
// the session, and one small thread takes them with sigwait. It sets the
// exit flag and then interrupts the serving thread with a no-op signal
// every few milliseconds until the loop has returned.
#pragma once

#include <atomic>

#include <pthread.h>

#include <thread>

#include "stfs/base/result.hpp"

namespace stfs {

class StopSignals {
 public:
  using ExitFn = void (*)(void* arg);

  // Blocks the signals in this thread. Construct it on the serving thread
  // before it starts any other: those inherit the blocked signals. A signal
  // that comes before start() waits, and is taken then.
  StopSignals();
  // finish(), then unblocks the signals: one more ends the process the
  // default way.
  ~StopSignals();

  // Starts the stop thread; `exit_fn(arg)` runs on it when a signal comes.
  Result<bool> start(ExitFn exit_fn, void* arg);
  // Call when the loop has returned: stops the thread and its interruptions.
  void finish();
  // Ends the loop as a signal would, for a handover to a new daemon (the
  // supervisor's "retire"): logged as such.
  void retire();

  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  void run();

  pthread_t target_;
  ExitFn exit_fn_ = nullptr;
  void* arg_ = nullptr;
  std::thread thread_;
  std::atomic<bool> retiring_{false};
};

}  // namespace stfs
