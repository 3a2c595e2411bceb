// Serving a Filesystem through libfuse's low-level API. The implementation
// (fuse_adapter.cpp) is the only file that includes fuse_lowlevel.h.
#pragma once

#include <functional>

#include "stfs/filesystem.hpp"
#include "stfs/options.hpp"

namespace stfs {

// Mounts `fs` at opts.mountpoint and serves it until it is unmounted or a
// SIGTERM, SIGINT or SIGHUP arrives; then unmounts. `on_ready` runs once,
// from the loop, when the kernel's INIT arrives (the mount answers).
// Returns 0 after a clean run, 3 if the mount failed.
int serve(Filesystem& fs, const MountOptions& opts, std::function<void()> on_ready);

}  // namespace stfs
