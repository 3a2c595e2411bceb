// The order in which a FUSE session starts, serves and stops, free of
// libfuse so it can be tested without a mount. fuse_adapter.cpp supplies
// the libfuse calls (FuseDriver); run_session() decides when each runs:
// the unmount watcher before the mount, confinement before any thread,
// the stop signals around the loop, and the unmount and the session's
// close on every way out.
#pragma once

#include <string>

#include "stfs/base/result.hpp"
#include "stfs/mount/fuse_session.hpp"
#include "stfs/mount/session_state.hpp"

namespace stfs {

// The libfuse calls of one session. Each failure carries the message to log.
class FuseDriver {
 public:
  virtual ~FuseDriver() = default;
  // A session for the kernel mount options `kernel_options`.
  virtual Result<void> create(const std::string& kernel_options, bool debug) = 0;
  virtual Result<void> mount(const std::string& mountpoint) = 0;
  // A takeover: serve the connection `fd` (mounted by an earlier daemon)
  // instead of mounting; the device reads are then the session's own.
  virtual Result<void> adopt(int fd) = 0;
  // The session's /dev/fuse descriptor, once mounted or adopted.
  virtual int device_fd() const = 0;
  // libfuse's loop reads the device through the session's poller.
  virtual void route_device_reads() = 0;
  // Runs the loop until the session exits; returns libfuse's result.
  virtual Result<int> loop(bool single_thread, unsigned max_threads) = 0;
  // Asks the loop to end; called from the stop thread.
  virtual void exit() = 0;
  virtual bool exited() const = 0;
  // libfuse's own unmount (an unconfined daemon's).
  virtual void unmount() = 0;
  // Destroys the session, after any unmount; safe to call twice.
  virtual void close() = 0;
};

// Mounts through `driver` and serves `c` until the loop ends; serve()'s
// body (fuse_session.hpp): 0 after a clean run, 3 if the mount failed.
// With a supervisor (c.link), the mount is reported to it, and at exit it
// unmounts; with a takeover (`adopt` >= 0) the connection is adopted and
// the INIT in c.resume is fed to the session.
int run_session(FuseDriver& driver, SessionState& c, SessionHooks hooks, int adopt = -1);

}  // namespace stfs
