// The supervisor: the process that keeps a mount alive across daemons.
//
// Forked before the source is opened, it holds the mount's /dev/fuse
// descriptor and the kernel's INIT (both reported by the first daemon) and
// nothing of the source: it parses nothing. Each serving daemon is its
// child. When a daemon dies with the connection still up, it starts the
// program at the path the mount was started from, with the same arguments,
// and hands it the connection (supervisor_link.hpp): the new daemon
// rebuilds the tree, confines itself and asks the kernel to resend what
// was in flight (resume.hpp). `stfs --restart MOUNTPOINT` does the same
// for a live daemon, which retires once the new one serves.
//
// It also unmounts for the daemon (a confined daemon may not), and only its
// own mount: one whose device matches while its own connection is still up
// (the kernel frees the device number only with the connection's
// superblock, so a reused number cannot match). A request that crashes
// every daemon it reaches ends in an unmount after kMaxCrashes tries.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "stfs/base/unique_fd.hpp"

namespace stfs {

struct SupervisorConfig {
  UniqueFd first_link;  // the first daemon's socket
  pid_t first = -1;     // the first daemon, our child
  std::string mountpoint;
  std::string exe;                // the program the mount was started from
  std::vector<std::string> argv;  // and its arguments, as given
  std::string cwd;                // where they were given (relative paths)
  bool auto_unmount = false;      // -o auto_unmount
  bool confine = true;            // -o sandbox=on (off: valgrind, LeakSanitizer)
  bool background = false;        // detach and log to syslog once mounted
};

// Consecutive crashes (a daemon killed by SIGSEGV, SIGBUS, SIGILL, SIGFPE,
// SIGABRT or SIGSYS, or that exited with an error, within
// kCrashWindowSeconds of starting to serve), after which the mount ends.
inline constexpr int kMaxCrashes = 3;
inline constexpr int kCrashWindowSeconds = 10;

// Runs until the mount is gone and no daemon is left. Returns the exit code
// of the mount command: the first daemon's own if it ended before mounting,
// 0 once a mounted session ends, 3 if the mount ended because no daemon
// could serve it.
int run_supervisor(SupervisorConfig config);

// `stfs --restart MOUNTPOINT`: asks the mount's supervisor for a new
// daemon; prints the answer; returns an exit code.
int run_restart(const std::string& mountpoint);

}  // namespace stfs
