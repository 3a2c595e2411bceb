// auto_unmount done by stfs itself, the same on every libfuse.
//
// libfuse 3.14 honours -o auto_unmount only by mounting through fusermount3;
// libfuse 3.17 mounts directly as root and then starts a watcher of its own
// that did not clean up after SIGKILL in our Debian 13 runs. So stfs keeps
// the option from libfuse and forks its own watcher, before mounting so no
// SIGKILL can fall between the two: it holds the read end of a pipe whose
// write end only the daemon holds. After mounting, the daemon writes the
// mount's device number into the pipe. When the pipe closes (the daemon
// ended, however it ended), the watcher unmounts the mountpoint lazily, but
// only the mount the daemon made: the announced device, or, if the daemon
// died before announcing it, a fuse.stfs mount that was not there before.
#pragma once

#include <string>

#include "stfs/base/result.hpp"

namespace stfs {

// Call before mounting. Returns the pipe's write end (O_CLOEXEC), which the
// daemon keeps open for as long as it serves.
Result<int> start_unmount_watcher(const std::string& mountpoint);

// Call once mounted: tells the watcher which mount is ours.
void announce_mount(int watcher_fd, const std::string& mountpoint);

}  // namespace stfs
