#include "stfs/mount/stop_signals.hpp"

#include <signal.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include <spdlog/spdlog.h>

namespace stfs {
namespace {

constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};
// Sent by the destructor to the stop thread: the loop has returned.
constexpr int kQuitSignal = SIGUSR1;
// Interrupts the serving thread's wait; its handler does nothing.
constexpr int kWakeSignal = SIGUSR2;
constexpr long kPokeNanos = 10'000'000;

extern "C" void on_wake_signal(int) {}

sigset_t waited_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kStopSignals) sigaddset(&set, sig);
  sigaddset(&set, kQuitSignal);
  return set;
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "SIGHUP";
  }
}

}  // namespace

StopSignals::StopSignals() : target_(pthread_self()) {
  const sigset_t set = waited_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Result<bool> StopSignals::start(ExitFn exit_fn, void* arg) {
  struct sigaction wake {};
  wake.sa_handler = on_wake_signal;
  sigemptyset(&wake.sa_mask);
  wake.sa_flags = 0;  // no SA_RESTART: the interrupted wait must return
  if (::sigaction(kWakeSignal, &wake, nullptr) != 0 || ::signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    int e = errno;
    return unexpected(Error{e, std::string("cannot install signal handlers: ") + std::strerror(e)});
  }
  exit_fn_ = exit_fn;
  arg_ = arg;
  thread_ = std::thread([this] { run(); });
  return true;
}

void StopSignals::run() {
  const sigset_t set = waited_set();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  if (sig == kQuitSignal) return;
  if (retiring_.load()) {
    spdlog::info("retiring: a new daemon takes the mount over");
  } else {
    spdlog::info("received {}, unmounting", signal_name(sig));
  }
  exit_fn_(arg_);
  // One interruption may land before the serving thread starts to wait:
  // keep interrupting until finish() says the loop has returned.
  const timespec poke{0, kPokeNanos};
  while (sigtimedwait(&set, nullptr, &poke) != kQuitSignal) {
    pthread_kill(target_, kWakeSignal);
  }
}

void StopSignals::retire() {
  if (!thread_.joinable()) return;
  retiring_.store(true);
  pthread_kill(thread_.native_handle(), SIGTERM);
}

void StopSignals::finish() {
  if (!thread_.joinable()) return;
  pthread_kill(thread_.native_handle(), kQuitSignal);
  thread_.join();
}

StopSignals::~StopSignals() {
  finish();
  // The wake handler stays: a poke still in flight must not end us.
  sigset_t stop;
  sigemptyset(&stop);
  for (int sig : kStopSignals) sigaddset(&stop, sig);
  pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
}

}  // namespace stfs
