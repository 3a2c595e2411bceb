// auto_unmount done by stfs itself, the same on every libfuse.
//
// libfuse 3.14 honours -o auto_unmount only by mounting through fusermount3;
// libfuse 3.17 mounts directly as root and then starts a watcher of its own
// that did not clean up after SIGKILL in our Debian 13 runs. So stfs keeps
// the option from libfuse and forks its own watcher right after mounting:
// it holds the read end of a pipe whose write end only the daemon holds,
// and when that closes (the daemon ended, however it ended) it unmounts
// the mountpoint lazily, but only if the mount there is still the one the
// daemon made (same device number).
#pragma once

#include <string>

#include "stfs/result.hpp"

namespace stfs {

// Call after the mount exists. Returns once the watcher runs; the daemon
// must keep running with the returned pipe end open (it is O_CLOEXEC).
Result<int> start_unmount_watcher(const std::string& mountpoint);

}  // namespace stfs
