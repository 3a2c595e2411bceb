// Serving a Filesystem through libfuse's low-level API. The implementation
// (fuse_adapter.cpp) is the only file that includes fuse_lowlevel.h.
#pragma once

#include <functional>
#include <string>

#include "stfs/base/result.hpp"
#include "stfs/mount/live.hpp"
#include "stfs/mount/options.hpp"
#include "stfs/mount/supervisor_link.hpp"

namespace stfs {

struct SessionHooks {
  // Runs once mounted, before the first request and before any thread of
  // the session starts: the daemon confines itself (sandbox.hpp). A
  // failure ends the mount.
  std::function<Result<void>()> confine;
  // Runs once, from the loop, when the kernel's INIT arrives (the mount
  // answers).
  std::function<void()> on_ready;
  // Runs once the loop has ended, before unmounting.
  std::function<void()> on_stopping;
  // A source answered ESTALE or vanished: the folder should be read again.
  // Called from request threads; must not block.
  std::function<void()> on_source_gone;
  // What a takeover must find unchanged (supervisor_link.hpp's mount_token).
  std::string token;
};

// Mounts `live` at opts.mountpoint and serves it until it is unmounted or a
// SIGTERM, SIGINT or SIGHUP arrives; then unmounts. Returns 0 after a clean
// run, 3 if the mount failed.
// With `link`, a supervisor holds the connection too (supervisor.hpp); with
// `takeover`, the connection is an earlier daemon's and is served without
// mounting.
int serve(LiveFs& live, const MountOptions& opts, SessionHooks hooks,
          SupervisorLink* link = nullptr, Handover* takeover = nullptr);

// The libfuse this binary runs with ("3.14.0"), for --version.
const char* libfuse_version();

}  // namespace stfs
