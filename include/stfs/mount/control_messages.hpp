// Messages between a serving daemon and its supervisor (supervisor.hpp), and
// between `stfs --restart` and the supervisor: one SOCK_SEQPACKET datagram
// each, a tag byte then a payload, with at most one descriptor attached.
// Free of libfuse and of the source: the supervisor parses nothing else.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "stfs/base/result.hpp"
#include "stfs/base/unique_fd.hpp"

namespace stfs {

// Daemon -> supervisor.
inline constexpr char kMsgMounted = 'M';  // payload: resume token; fd: /dev/fuse
inline constexpr char kMsgInit = 'I';     // payload: the kernel's INIT request
inline constexpr char kMsgServing = 'R';  // a daemon serves (after a takeover: resent)
inline constexpr char kMsgUnmount = 'U';  // unmount our mount, then answer kMsgDone
inline constexpr char kMsgNotify = 'N';   // payload: an sd_notify state for systemd
// Supervisor -> daemon.
inline constexpr char kMsgTakeover = 'T';  // payload: resume token + INIT; fd: /dev/fuse
inline constexpr char kMsgUpgrade = 'P';   // as T, for --restart: resend only when told
inline constexpr char kMsgRetire = 'X';    // stop taking requests, answer held ones, exit
inline constexpr char kMsgResend = 'S';    // ask the kernel to resend what was in flight
inline constexpr char kMsgDone = 'u';      // the unmount asked for is done
// `stfs --restart` <-> supervisor.
inline constexpr char kMsgRestart = 'r';  // client: replace the daemon
inline constexpr char kMsgAnswer = 'a';   // supervisor: "ok ..." or "error ..."

// Largest message: INIT (fuse_in_header + fuse_init_in, 104 bytes today)
// plus a token, with room to spare.
inline constexpr std::size_t kMaxMessage = 4096;

struct Message {
  char tag = 0;
  std::string payload;
  UniqueFd fd;  // the attached descriptor, if any
};

// Sends one message; `fd` >= 0 is attached (SCM_RIGHTS). Never raises SIGPIPE.
Result<void> send_message(int sock, char tag, std::string_view payload, int fd = -1);

// Receives one message, blocking. std::nullopt at end of stream (the peer
// is gone); an error for anything else. Descriptors arrive close-on-exec.
Result<std::optional<Message>> receive_message(int sock);

// The takeover's payload: the token the first daemon reported, then INIT
// (none when the daemon died before it read the kernel's INIT: the new
// daemon reads it from the device itself).
std::string pack_takeover(std::string_view token, std::string_view init);
bool unpack_takeover(std::string_view payload, std::string& token, std::string& init);

// Where the supervisor of `mountpoint` (canonical) listens when mounted by
// `uid`: /run/stfs/ for root, /run/user/UID/stfs/ (or /tmp/stfs-UID/) for
// a user; the file is a hash of the mountpoint.
std::string control_socket_path(const std::string& mountpoint, uid_t uid);

// The supervisor's end: listens at `path` (a stale socket there is
// replaced; the new one is made mode 0600). The caller checked the folder.
Result<UniqueFd> listen_control_socket(const std::string& path);
// `stfs --restart`'s end: connects to the supervisor listening at `path`.
Result<UniqueFd> connect_control_socket(const std::string& path);

}  // namespace stfs
