// How the supervisor reads a serving daemon's death (supervisor.hpp): what
// to log, and whether it counts toward "a request kills every daemon it
// reaches".
//
// A crash signal or an exit with an error counts: a parser bug, the
// daemon's own seccomp filter (SIGSYS), a sanitizer's report. A kill from
// outside (SIGKILL, SIGTERM) never does: an operator or a test killing
// daemons must never make the supervisor give up. The kernel's OOM killer
// also sends SIGKILL, and a request that makes every daemon run out of
// memory would otherwise be taken over forever; so a SIGKILL counts when
// the kernel's count of OOM kills (/proc/vmstat's oom_kill, which memory
// cgroups' kills raise too) went up while the daemon lived. Another OOM
// kill elsewhere at that moment counts once, and giving up takes several
// in a row.
#pragma once

#include <cstdint>
#include <string>

namespace stfs {

// The kernel's OOM kills so far (`vmstat`: /proc/vmstat), 0 if unknown.
std::uint64_t oom_kills(const char* vmstat = "/proc/vmstat");

struct Death {
  bool counts = false;  // toward giving up
  std::string what;     // "killed by SEGV", "killed by KILL (out of memory)"
};

// `status` from waitpid; `oom_kills_at_start` and `oom_kills_now` from
// oom_kills() at the daemon's start and at its death.
Death read_death(int status, std::uint64_t oom_kills_at_start, std::uint64_t oom_kills_now);

// A wait status in words: "killed by SEGV", "exited with 3".
std::string describe_status(int status);

}  // namespace stfs
