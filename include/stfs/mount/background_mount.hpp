// A mount without -f: the command forks, and its parent returns only once
// the mount answers or the child has failed (daemon.hpp's run_mount).
#pragma once

#include "stfs/mount/options.hpp"

namespace stfs {

// Forks; the parent waits for the daemon's report (one byte through a
// pipe: 0 once the kernel's INIT has been answered, else the exit code),
// checks that the mount answers, and returns the command's exit code; the
// child returns -1 and goes on, holding the pipe's write end in `ready_fd`.
int wait_in_parent(const MountOptions& o, int& ready_fd);

}  // namespace stfs
