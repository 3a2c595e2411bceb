// A daemon's death, read for the supervisor (daemon_death.hpp).
#include "stfs/mount/daemon_death.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <cstring>  // sigabbrev_np
#include <fstream>

namespace stfs {
namespace {

bool crash_signal(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGABRT ||
         sig == SIGSYS;
}

}  // namespace

std::uint64_t oom_kills(const char* vmstat) {
  std::ifstream f(vmstat);
  std::string name;
  std::uint64_t value = 0;
  while (f >> name >> value) {
    if (name == "oom_kill") return value;
  }
  return 0;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return std::string("killed by ") + sigabbrev_np(WTERMSIG(status));
  return "exited with " + std::to_string(WEXITSTATUS(status));
}

Death read_death(int status, std::uint64_t oom_kills_at_start, std::uint64_t oom_kills_now) {
  Death d;
  d.what = describe_status(status);
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    if (crash_signal(sig)) {
      d.counts = true;
    } else if (sig == SIGKILL && oom_kills_now > oom_kills_at_start) {
      d.counts = true;
      d.what += " (out of memory: the kernel's OOM killer)";
    }
  } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    d.counts = true;
  }
  return d;
}

}  // namespace stfs
