// How the supervisor reads a daemon's death (daemon_death.hpp).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "st_writer.hpp"
#include "stfs/mount/daemon_death.hpp"

namespace stfs {
namespace {

using test::TempDir;

// A real wait status: a child that dies as `how` says.
int status_of(int sig, int code = 0) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (sig) {
      ::signal(sig, SIG_DFL);
      ::kill(::getpid(), sig);
    }
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(DaemonDeath, CrashesAndErrorsCountKillsFromOutsideDoNot) {
  EXPECT_TRUE(read_death(status_of(SIGSEGV), 0, 0).counts);
  EXPECT_TRUE(read_death(status_of(SIGABRT), 0, 0).counts);
  EXPECT_TRUE(read_death(status_of(SIGSYS), 0, 0).counts);  // its own seccomp filter
  EXPECT_TRUE(read_death(status_of(0, 3), 0, 0).counts);
  EXPECT_FALSE(read_death(status_of(0, 0), 0, 0).counts);
  EXPECT_FALSE(read_death(status_of(SIGTERM), 0, 0).counts);
  const Death killed = read_death(status_of(SIGKILL), 5, 5);
  EXPECT_FALSE(killed.counts);
  EXPECT_EQ(killed.what, "killed by KILL");
  EXPECT_EQ(read_death(status_of(SIGSEGV), 0, 0).what, "killed by SEGV");
  EXPECT_EQ(read_death(status_of(0, 3), 0, 0).what, "exited with 3");
}

TEST(DaemonDeath, ASigkillWhileTheOomKillerKilledIsOutOfMemory) {
  const Death d = read_death(status_of(SIGKILL), 5, 6);
  EXPECT_TRUE(d.counts);
  EXPECT_NE(d.what.find("out of memory"), std::string::npos) << d.what;
  // Other signals are what they are, whatever the OOM count did.
  EXPECT_FALSE(read_death(status_of(SIGTERM), 5, 6).counts);
}

TEST(DaemonDeath, ReadsTheOomCountFromVmstat) {
  TempDir dir;
  const std::string path = dir.path() + "/vmstat";
  std::ofstream(path) << "nr_free_pages 123\noom_kill 42\nnr_foo 7\n";
  EXPECT_EQ(oom_kills(path.c_str()), 42u);
  std::ofstream(path) << "nr_free_pages 123\n";
  EXPECT_EQ(oom_kills(path.c_str()), 0u);
  EXPECT_EQ(oom_kills((dir.path() + "/none").c_str()), 0u);
  // This kernel's own file has the field.
  std::ifstream vmstat("/proc/vmstat");
  std::string all((std::istreambuf_iterator<char>(vmstat)), std::istreambuf_iterator<char>());
  if (all.find("\noom_kill ") != std::string::npos) {
    const std::size_t at = all.find("\noom_kill ") + 10;
    EXPECT_GE(oom_kills(), std::stoull(all.substr(at)));
  }
}

}  // namespace
}  // namespace stfs
