#include "stfs/mount/session_run.hpp"

#include <spdlog/spdlog.h>

#include <optional>

#include "stfs/mount/options.hpp"
#include "stfs/mount/resume.hpp"
#include "stfs/mount/session_state.hpp"
#include "stfs/mount/stop_signals.hpp"
#include "stfs/mount/supervisor_link.hpp"

namespace stfs {
namespace {

// Loop threads beyond `threads=` that no source read may take.
constexpr unsigned kReservedThreads = 2;

// Unmounts on every way out once mounted, then closes the session, both
// while the stop signals are still blocked. With a supervisor, it unmounts
// (a confined daemon may not, and a takeover daemon did not mount); a
// daemon that retires for a new one unmounts nothing.
struct Unmounter {
  Unmounter(FuseDriver& d, SessionState& s) : driver(d), c(s) {}
  Unmounter(const Unmounter&) = delete;
  Unmounter& operator=(const Unmounter&) = delete;
  ~Unmounter() {
    if (c.link) c.link->stop();
    if (mounted && !c.retiring.load()) {
      if (c.link) {
        c.link->unmount();
      } else {
        driver.unmount();
      }
    }
    driver.close();
  }
  FuseDriver& driver;
  SessionState& c;
  bool mounted = false;
};

}  // namespace

int run_session(FuseDriver& driver, SessionState& c, SessionHooks hooks, int adopt) {
  const MountOptions& opts = *c.opts;
  StopSignals stop;  // first: every thread started below inherits its mask
  c.on_ready = std::move(hooks.on_ready);
  c.on_source_gone = std::move(hooks.on_source_gone);
  Unmounter u(driver, c);

  if (auto r = driver.create(kernel_mount_options(opts), opts.debug); !r) {
    spdlog::error("{}", r.error().message);
    return 3;
  }
  if (adopt >= 0) {
    if (auto r = driver.adopt(adopt); !r) {
      spdlog::error("cannot take {} over: {}", opts.mountpoint, r.error().message);
      return 3;
    }
    // No INIT to feed: the first daemon died before answering the kernel's,
    // which is then still queued, or read and held; a resend brings it back
    // to the queue, and this daemon answers it.
    if (!c.resume.armed()) {
      if (auto r = request_resend(driver.device_fd()); !r) spdlog::warn("{}", r.error().message);
    }
  } else {
    if (auto r = driver.mount(opts.mountpoint); !r) {
      spdlog::error("cannot mount {} on {}: {}", opts.source, opts.mountpoint, r.error().message);
      return 3;
    }
    // busy_poll_us=0 (or one CPU) leaves libfuse's own device reads alone,
    // unless -o direct_io needs to see INIT go by (init_reply.hpp), or a
    // supervisor needs INIT for a later takeover.
    if (c.poller.window().count() > 0 || c.opts->direct_io || c.link) driver.route_device_reads();
  }
  u.mounted = true;
  c.device_fd.store(driver.device_fd());
  if (c.link && adopt < 0) c.link->mounted(driver.device_fd(), hooks.token);
  c.read_ahead.prepare();
  // Confined before any other thread starts: they inherit it.
  if (hooks.confine) {
    if (auto r = hooks.confine(); !r) {
      spdlog::error("cannot confine the daemon of {}: {}", opts.mountpoint, r.error().message);
      return 3;
    }
  }
  if (auto r = stop.start([](void* d) { static_cast<FuseDriver*>(d)->exit(); }, &driver); !r) {
    spdlog::error("{}", r.error().message);
    return 3;
  }
  c.reads.start();
  if (c.link) {
    c.link->start(
        [&c, &stop] {
          c.retiring.store(true);
          stop.retire();
        },
        [&c] {
          if (auto r = request_resend(c.device_fd.load()); !r) spdlog::warn("{}", r.error().message);
        });
  }

  const Result<int> res = driver.loop(opts.single_thread, opts.threads + kReservedThreads);
  // The loop has returned: no more interruptions, and no exit() once the
  // session is closed.
  stop.finish();
  if (!res) {
    spdlog::error("{}", res.error().message);
    return 3;
  }
  if (hooks.on_stopping && !c.retiring.load()) hooks.on_stopping();
  c.reads.drain();  // answers what is queued while the session still exists
  // Retired: libfuse's loop dropped what its threads had read as it ended;
  // the new daemon gets those now rather than at our exit.
  if (c.retiring.load()) (void)request_resend(c.device_fd.load());
  // A signal ends the loop with 0 here; an error in the loop is logged.
  if (*res != 0 && !driver.exited()) {
    spdlog::error("FUSE loop for {} ended with error {}", opts.mountpoint, *res);
  }
  return 0;
}

}  // namespace stfs
