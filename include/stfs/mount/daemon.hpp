// The mount command's lifecycle: validate the source and the mountpoint,
// build the tree, then serve in the foreground (-f) or in a daemon child.
#pragma once

#include "stfs/mount/options.hpp"

namespace stfs {

// Exit codes of DESIGN.md §1.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;
inline constexpr int kExitInvalidSource = 2;
inline constexpr int kExitMountFailed = 3;

// Without -f, returns in the parent only once the mount answers (0) or the
// child has failed (its code), so `stfs src mnt && ls mnt` never races. A
// failure leaves nothing mounted and no process behind.
int run_mount(MountOptions opts);

}  // namespace stfs
