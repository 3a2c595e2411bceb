// The unmount watcher: a small process, forked before mounting, that
// unmounts the daemon's mount for it.
//
// The confined daemon (sandbox.hpp) may neither umount nor exec
// fusermount3, so at exit it asks the watcher to unmount and waits for its
// answer. With -o auto_unmount the watcher also unmounts when the daemon
// dies, however it died. libfuse 3.14 honours auto_unmount only by mounting
// through fusermount3, and 3.17's own watcher did not clean up after
// SIGKILL in our Debian 13 runs, hence our own.
//
// It holds the read end of a pipe whose write end only the daemon holds.
// After mounting, the daemon writes the mount's device number into it; at
// exit, "unmount". The watcher unmounts lazily, and only the mount the
// daemon made: the announced device, or, if the daemon died before
// announcing it, a fuse.stfs mount that was not there before.
#pragma once

#include <string>

#include "stfs/base/result.hpp"
#include "stfs/base/unique_fd.hpp"

namespace stfs {

struct UnmountWatcher {
  UniqueFd to_watcher;    // kept open for as long as the daemon serves
  UniqueFd from_watcher;  // the answer to "unmount"
};

// Call before mounting. `on_death`: unmount when the daemon ends without
// asking (-o auto_unmount).
Result<UnmountWatcher> start_unmount_watcher(const std::string& mountpoint, bool on_death);

// Call once mounted: tells the watcher which mount is ours.
void announce_mount(const UnmountWatcher& w, const std::string& mountpoint);

// Asks the watcher to unmount now; returns once it has answered (or is gone).
void unmount_through_watcher(UnmountWatcher& w);

}  // namespace stfs
