// The supervisor process's state (supervisor.hpp), shared by its two
// files: supervisor.cpp (daemons, takeovers, signals, unmounting) and
// supervisor_restart.cpp (the control socket and `stfs --restart`).
// Internal to the mount layer: nothing else includes it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "stfs/base/unique_fd.hpp"
#include "stfs/mount/daemon_death.hpp"
#include "stfs/mount/supervisor.hpp"

namespace stfs::supervisor_detail {

using Clock = std::chrono::steady_clock;

// How long a daemon started by --restart may take to serve.
constexpr auto kRestartTimeout = std::chrono::seconds(60);

struct Daemon {
  pid_t pid = -1;
  UniqueFd link;
  bool serving = false;
  bool upgrade = false;  // started by --restart: resends when told
  Clock::time_point serving_since{};
  std::uint64_t oom_kills_at_start = oom_kills();  // daemon_death.hpp
};

class Supervisor {
 public:
  explicit Supervisor(SupervisorConfig c) : c_(std::move(c)) {
    current_.emplace();
    current_->pid = c_.first;
    current_->link = std::move(c_.first_link);
  }
  int run();

 private:
  void on_signal();
  void on_child(pid_t pid, int status);
  void on_message(Daemon& d, bool incoming);
  void drain(Daemon& d, bool incoming);
  void on_client();
  void answer_client(const std::string& text);
  void start_restart(UniqueFd client);
  void finish_upgrade(Daemon& d);
  void take_over(const std::string& why);
  std::optional<Daemon> spawn(bool upgrade);
  bool conn_alive() const;
  std::string cannot_resume() const;
  void unmount_ours();
  void give_up(const std::string& why);
  void listen_for_clients();
  void release_connection() { fuse_.reset(); }

  SupervisorConfig c_;
  std::optional<Daemon> current_;
  std::optional<Daemon> incoming_;  // a --restart's new daemon, until it serves
  UniqueFd fuse_;
  std::string device_;
  std::string token_;
  std::string init_;
  UniqueFd signals_;
  UniqueFd listener_;
  std::string socket_path_;
  ino_t socket_ino_ = 0;
  UniqueFd client_;
  Clock::time_point restart_deadline_{};
  bool mounted_ = false;
  bool ready_ = false;  // a daemon has served: systemd has heard READY=1
  bool stopping_ = false;
  bool gave_up_ = false;
  int crashes_ = 0;
  int exit_code_ = 0;
};

}  // namespace stfs::supervisor_detail
