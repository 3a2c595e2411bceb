#include "stfs/mount/session_run.hpp"

#include <spdlog/spdlog.h>

#include <optional>

#include "stfs/mount/auto_unmount.hpp"
#include "stfs/mount/stop_signals.hpp"

namespace stfs {
namespace {

// Loop threads beyond `threads=` that no source read may take.
constexpr unsigned kReservedThreads = 2;

// Unmounts on every way out once mounted, then closes the session, both
// while the stop signals are still blocked. A confined daemon may not
// unmount: its watcher does (auto_unmount.hpp); libfuse's unmount would be
// killed by the filter.
struct Unmounter {
  explicit Unmounter(FuseDriver& d) : driver(d) {}
  Unmounter(const Unmounter&) = delete;
  Unmounter& operator=(const Unmounter&) = delete;
  ~Unmounter() {
    if (mounted && confined && watcher) {
      unmount_through_watcher(*watcher);
    } else if (mounted) {
      driver.unmount();
    }
    driver.close();
  }
  FuseDriver& driver;
  std::optional<UnmountWatcher> watcher;
  bool mounted = false;
  bool confined = false;
};

}  // namespace

int run_session(FuseDriver& driver, SessionState& c, SessionHooks hooks) {
  const MountOptions& opts = *c.opts;
  StopSignals stop;  // first: every thread started below inherits its mask
  c.on_ready = std::move(hooks.on_ready);
  c.on_source_gone = std::move(hooks.on_source_gone);
  Unmounter u(driver);

  if (auto r = driver.create(kernel_mount_options(opts), opts.debug); !r) {
    spdlog::error("{}", r.error().message);
    return 3;
  }
  // The watcher starts before the mount exists (auto_unmount.hpp). The
  // confined daemon needs it to unmount; -o auto_unmount, to outlive us.
  if (opts.auto_unmount || opts.sandbox) {
    auto w = start_unmount_watcher(opts.mountpoint, opts.auto_unmount);
    if (!w) {
      spdlog::error("cannot mount {} on {}: unmount watcher: {}", opts.source, opts.mountpoint,
                    w.error().message);
      return 3;
    }
    u.watcher = std::move(*w);
  }
  if (auto r = driver.mount(opts.mountpoint); !r) {
    spdlog::error("cannot mount {} on {}: {}", opts.source, opts.mountpoint, r.error().message);
    return 3;
  }
  u.mounted = true;
  // busy_poll_us=0 (or one CPU) leaves libfuse's own device reads alone,
  // unless -o direct_io needs to see INIT go by (init_reply.hpp).
  if (c.poller.window().count() > 0 || c.opts->direct_io) driver.route_device_reads();
  if (u.watcher) announce_mount(*u.watcher, opts.mountpoint);
  c.read_ahead.prepare();
  // Confined before any other thread starts: they inherit it.
  if (hooks.confine) {
    u.confined = opts.sandbox;  // from here on, even if confining fails midway
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

  const Result<int> res = driver.loop(opts.single_thread, opts.threads + kReservedThreads);
  // The loop has returned: no more interruptions, and no exit() once the
  // session is closed.
  stop.finish();
  if (!res) {
    spdlog::error("{}", res.error().message);
    return 3;
  }
  if (hooks.on_stopping) hooks.on_stopping();
  c.reads.drain();  // answers what is queued while the session still exists
  // A signal ends the loop with 0 here; an error in the loop is logged.
  if (*res != 0 && !driver.exited()) {
    spdlog::error("FUSE loop for {} ended with error {}", opts.mountpoint, *res);
  }
  return 0;
}

}  // namespace stfs
