// The order of a session's steps, without a mount: a driver that records
// the libfuse calls run_session() makes, and hooks that record theirs.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <sstream>
#include <string>
#include <vector>

#include "st_writer.hpp"
#include "stfs/mount/control_messages.hpp"
#include "stfs/mount/session_run.hpp"
#include "stfs/mount/session_state.hpp"
#include "stfs/mount/supervisor_link.hpp"

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
  Result<void> adopt(int fd) override {
    steps_.push_back("adopt");
    adopted.reset(fd);
    return {};
  }
  int device_fd() const override { return adopted.valid() ? adopted.get() : device.get(); }
  void route_device_reads() override { steps_.push_back("poll"); }
  Result<int> loop(bool, unsigned threads) override {
    steps_.push_back("loop");
    max_threads = threads;
    if (loop_fails) return unexpected(Error{ENOMEM, "no loop"});
    if (loop_waits) {
      // Serves until exit() (a stop signal or a retire), 10 s at most.
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(10), [this] { return exited_; });
    }
    return loop_result;
  }
  void exit() override {
    std::lock_guard lock(mu_);
    steps_.push_back("exit");
    exited_ = true;
    cv_.notify_all();
  }
  bool exited() const override { return false; }
  void unmount() override { steps_.push_back("unmount"); }
  void close() override { steps_.push_back("close"); }

  bool create_fails = false, mount_fails = false, loop_fails = false, loop_waits = false;
  int loop_result = 0;
  std::string options;
  unsigned max_threads = 0;
  UniqueFd device{::open("/dev/null", O_RDWR | O_CLOEXEC)};  // stands in for /dev/fuse
  UniqueFd adopted;

 private:
  Steps& steps_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool exited_ = false;
};

// The supervisor's end of a daemon's socket (supervisor.hpp), played by the
// test on a thread: records what the daemon says, answers an unmount, and
// sends what the test queues.
struct FakeSupervisor {
  FakeSupervisor() {
    int sp[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
    ours.reset(sp[0]);
    link = std::make_unique<SupervisorLink>(UniqueFd(sp[1]));
  }
  // Reads until the daemon's end closes or `until` arrives, answering U.
  void serve(char until = 0) {
    while (true) {
      auto m = receive_message(ours.get());
      if (!m || !*m) return;
      heard.push_back((*m)->tag);
      if ((*m)->tag == kMsgMounted) got_fd = (*m)->fd.valid(), token = (*m)->payload;
      if ((*m)->tag == kMsgUnmount) (void)send_message(ours.get(), kMsgDone, {});
      if ((*m)->tag == until) return;
    }
  }
  UniqueFd ours;
  std::unique_ptr<SupervisorLink> link;
  std::string heard;
  std::string token;
  bool got_fd = false;
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
  int run(Result<void> confined = {}, SupervisorLink* link = nullptr, int adopt = -1) {
    state = std::make_unique<SessionState>(*live, opts);
    state->link = link;
    SessionHooks hooks;
    hooks.confine = [this, confined]() -> Result<void> {
      steps.push_back("confine");
      return confined;
    };
    hooks.on_ready = [] {};
    hooks.on_stopping = [this] { steps.push_back("stopping"); };
    hooks.token = "hashed";
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
    const int rc = run_session(driver, *state, std::move(hooks), adopt);
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

namespace stfs {
namespace {

TEST(RunSession, ASupervisedDaemonReportsItsMountAndUnmountsThroughTheSupervisor) {
  Session s;
  s.opts.busy_poll_us = 0;  // INIT must still pass the link on its way
  FakeSupervisor sup;
  std::thread t([&] { sup.serve(); });
  EXPECT_EQ(s.run({}, sup.link.get()), 0);
  sup.link.reset();  // the daemon's end closes with the daemon
  t.join();
  EXPECT_EQ(s.steps, (Steps{"create", "mount", "poll", "confine", "loop", "stopping", "close"}));
  EXPECT_EQ(sup.heard, std::string{kMsgMounted} + kMsgUnmount);
  EXPECT_TRUE(sup.got_fd);
  EXPECT_EQ(sup.token, "hashed");
}

TEST(RunSession, ATakeoverAdoptsTheConnectionInsteadOfMounting) {
  Session s;
  FakeSupervisor sup;
  std::thread t([&] { sup.serve(); });
  EXPECT_EQ(s.run({}, sup.link.get(), ::open("/dev/null", O_RDWR | O_CLOEXEC)), 0);
  sup.link.reset();
  t.join();
  EXPECT_EQ(s.steps, (Steps{"create", "adopt", "confine", "loop", "stopping", "close"}));
  // Nothing to report (the supervisor has the connection), and the mount
  // it did not make is still unmounted through the supervisor at the end.
  EXPECT_EQ(sup.heard, std::string{kMsgUnmount});
}

TEST(RunSession, ARetiredDaemonEndsItsLoopAndUnmountsNothing) {
  Session s;
  s.driver.loop_waits = true;
  FakeSupervisor sup;
  std::thread t([&] {
    sup.serve(kMsgMounted);
    (void)send_message(sup.ours.get(), kMsgRetire, {});
    sup.serve();
  });
  EXPECT_EQ(s.run({}, sup.link.get()), 0);
  sup.link.reset();
  t.join();
  EXPECT_EQ(std::count(s.steps.begin(), s.steps.end(), "exit"), 1);
  EXPECT_EQ(std::count(s.steps.begin(), s.steps.end(), "unmount"), 0);
  EXPECT_EQ(std::count(s.steps.begin(), s.steps.end(), "stopping"), 0);
  EXPECT_EQ(sup.heard, std::string{kMsgMounted});  // no unmount asked
  EXPECT_TRUE(s.state->retiring.load());
  EXPECT_TRUE(s.logged("retiring: a new daemon takes the mount over")) << s.log.str();
}

}  // namespace
}  // namespace stfs
