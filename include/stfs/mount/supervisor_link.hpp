// A serving daemon's end of its supervisor's socket (supervisor.hpp).
//
// The first daemon reports the mount (the /dev/fuse descriptor, its device
// and resume token) and the kernel's INIT; a daemon started for a takeover
// receives both instead of mounting. Either one later hears "retire" (an
// upgrade: stop taking requests, answer those held, exit without
// unmounting) and "resend", on a thread of its own, and asks the
// supervisor to unmount at exit: a confined daemon may not.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "stfs/base/result.hpp"
#include "stfs/base/unique_fd.hpp"

namespace stfs {

// What a takeover daemon is handed: the connection and what it needs to
// resume it.
struct Handover {
  UniqueFd fuse;      // the mount's /dev/fuse descriptor
  std::string token;  // the first daemon's resume token (mount_token())
  std::string init;   // the kernel's INIT request, as read from the device
  // A takeover after a death resends at once; an upgrade waits until the
  // daemon it replaces has retired (kMsgResend).
  bool resend_at_start = true;
};

class SupervisorLink {
 public:
  // The environment variable that hands a started daemon its socket.
  static constexpr const char* kEnv = "STFS_SUPERVISOR_FD";
  // The socket named by kEnv, if any; the variable is removed, so nothing
  // the daemon runs inherits it.
  static std::optional<UniqueFd> from_environment();

  explicit SupervisorLink(UniqueFd sock);
  ~SupervisorLink();
  SupervisorLink(const SupervisorLink&) = delete;
  SupervisorLink& operator=(const SupervisorLink&) = delete;

  // A takeover daemon's first message; waits at most `timeout_ms`.
  Result<Handover> receive_handover(int timeout_ms);
  // Once mounted: the connection and the token a takeover checks.
  void mounted(int fuse_fd, std::string_view token);
  // A request read from the device: the first INIT is reported, once.
  void saw_request(const void* buf, std::size_t n);
  // The daemon serves (after a takeover: INIT fed, resend asked).
  void serving();
  // A state for systemd ("READY=1\nSTATUS=..."): the supervisor, the
  // unit's main process, sends it on.
  void notify(std::string_view state);
  // Listens for retire and resend until stop(); call once confined.
  void start(std::function<void()> on_retire, std::function<void()> on_resend);
  void stop();
  // Asks the supervisor to unmount our mount; returns once it has (10 s at
  // most). False if the supervisor is gone.
  bool unmount();

 private:
  void listen();
  UniqueFd sock_;
  UniqueFd wake_read_;
  UniqueFd wake_write_;
  std::atomic<bool> init_sent_{false};
  std::function<void()> on_retire_;
  std::function<void()> on_resend_;
  std::thread thread_;
};

// The resume token: what a takeover must find unchanged to serve the same
// inode numbers. A file source's numbers are its entries' order, so its
// identity (device, inode, size, mtime); a folder's are hashes of path and
// identity, so only the kind.
std::string mount_token(const std::string& source, bool hashed_inos);

}  // namespace stfs
