// The order of a session's steps, without a mount: a driver that records
// the libfuse calls run_session() makes, and hooks that record theirs.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "st_writer.hpp"
#include "stfs/mount/session_run.hpp"

namespace stfs {
namespace {

using test::TempDir;
using Steps = std::vector<std::string>;

Result<void> fails(const char* what) { return unexpected(Error{EIO, what}); }

class RecordingDriver final : public FuseDriver {
 public:
  explicit RecordingDriver(Steps& steps) : steps_(steps) {}
  Result<void> create(const std::string& kernel_options, bool) override {
    steps_.push_back("create");
    options = kernel_options;
    return create_fails ? fails("no session") : Result<void>{};
  }
  Result<void> mount(const std::string&) override {
    steps_.push_back("mount");
    return mount_fails ? fails("no fuse here") : Result<void>{};
  }
  void route_device_reads() override { steps_.push_back("poll"); }
  Result<int> loop(bool, unsigned threads) override {
    steps_.push_back("loop");
    max_threads = threads;
    if (loop_fails) return unexpected(Error{ENOMEM, "no loop"});
    return loop_result;
  }
  void exit() override { steps_.push_back("exit"); }
  bool exited() const override { return false; }
  void unmount() override { steps_.push_back("unmount"); }
  void close() override { steps_.push_back("close"); }

  bool create_fails = false, mount_fails = false, loop_fails = false;
  int loop_result = 0;
  std::string options;
  unsigned max_threads = 0;

 private:
  Steps& steps_;
};

// One session over a small folder, with recording hooks; the log it wrote.
struct Session {
  Session() {
    dir.write("a.txt", "x");
    auto t = Tree::for_directory(dir.path());
    auto f = Filesystem::create(std::move(t).value());
    live = std::make_unique<LiveFs>(std::shared_ptr<Filesystem>(std::move(f).value()), false);
    opts.source = "/models/m.safetensors";
    opts.mountpoint = dir.path() + "/mnt";
    opts.sandbox = false;
    opts.threads = 3;
  }
  int run(Result<void> confined = {}) {
    state = std::make_unique<SessionState>(*live, opts);
    SessionHooks hooks;
    hooks.confine = [this, confined]() -> Result<void> {
      steps.push_back("confine");
      return confined;
    };
    hooks.on_ready = [] {};
    hooks.on_stopping = [this] { steps.push_back("stopping"); };
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
    const int rc = run_session(driver, *state, std::move(hooks));
    spdlog::set_default_logger(previous);
    return rc;
  }

  // Whether the session's log holds `text`.
  bool logged(const std::string& text) const { return log.str().find(text) != std::string::npos; }

  TempDir dir;
  std::unique_ptr<LiveFs> live;
  MountOptions opts;
  Steps steps;
  RecordingDriver driver{steps};
  std::unique_ptr<SessionState> state;
  std::ostringstream log;
};

TEST(RunSession, MountsThenConfinesThenServesAndUnmountsLast) {
  Session s;
  EXPECT_EQ(s.run(), 0);
  // The poller steps aside on a single CPU (device_poll.hpp).
  Steps want{"create", "mount", "poll", "confine", "loop", "stopping", "unmount", "close"};
  if (s.state->poller.window().count() == 0) want.erase(want.begin() + 2);
  EXPECT_EQ(s.steps, want);
  EXPECT_EQ(s.driver.options, kernel_mount_options(s.opts));
  // threads= serve sources; the loop keeps more for everything else.
  EXPECT_GT(s.driver.max_threads, s.opts.threads);
  EXPECT_TRUE(s.state->on_ready);
  EXPECT_EQ(s.log.str(), "");
}

TEST(RunSession, AFailedConfinementEndsTheMountBeforeServing) {
  Session s;
  EXPECT_EQ(s.run(fails("no seccomp")), 3);
  EXPECT_EQ(s.steps.end()[-2], "unmount");
  EXPECT_EQ(std::count(s.steps.begin(), s.steps.end(), "loop"), 0);
  EXPECT_TRUE(s.logged("cannot confine the daemon of " + s.opts.mountpoint + ": no seccomp"))
      << s.log.str();
}

TEST(RunSession, AFailedMountNamesSourceAndMountpointAndLeavesNothingToUnmount) {
  Session s;
  s.driver.mount_fails = true;
  EXPECT_EQ(s.run(), 3);
  EXPECT_EQ(s.steps, (Steps{"create", "mount", "close"}));
  EXPECT_TRUE(
      s.logged("cannot mount /models/m.safetensors on " + s.opts.mountpoint + ": no fuse here"))
      << s.log.str();
}

TEST(RunSession, AFailedSessionStopsBeforeMounting) {
  Session s;
  s.driver.create_fails = true;
  EXPECT_EQ(s.run(), 3);
  EXPECT_EQ(s.steps, (Steps{"create", "close"}));
  EXPECT_TRUE(s.logged("no session")) << s.log.str();
}

TEST(RunSession, ALoopThatCannotStartUnmounts) {
  Session s;
  s.driver.loop_fails = true;
  EXPECT_EQ(s.run(), 3);
  EXPECT_EQ(s.steps.end()[-2], "unmount");
  EXPECT_EQ(std::count(s.steps.begin(), s.steps.end(), "stopping"), 0);
  EXPECT_TRUE(s.logged("no loop")) << s.log.str();
}

TEST(RunSession, ALoopErrorIsLoggedAndTheMountStillEndsCleanly) {
  Session s;
  s.driver.loop_result = -EIO;
  EXPECT_EQ(s.run(), 0);
  EXPECT_EQ(s.steps.end()[-2], "unmount");
  EXPECT_TRUE(s.logged("FUSE loop for " + s.opts.mountpoint + " ended with error")) << s.log.str();
}

TEST(RunSession, WithoutBusyPollingLibfuseReadsTheDeviceItself) {
  Session s;
  s.opts.busy_poll_us = 0;
  EXPECT_EQ(s.run(), 0);
  EXPECT_EQ(s.steps, (Steps{"create", "mount", "confine", "loop", "stopping", "unmount", "close"}));
}

TEST(RunSession, DirectIoRoutesTheDeviceEvenWithoutBusyPolling) {
  // INIT must pass InitReply on its way (init_reply.hpp), before confining.
  Session s;
  s.opts.busy_poll_us = 0;
  s.opts.direct_io = true;
  EXPECT_EQ(s.run(), 0);
  EXPECT_EQ(s.steps, (Steps{"create", "mount", "poll", "confine", "loop", "stopping", "unmount",
                            "close"}));
}

}  // namespace
}  // namespace stfs
