// `stfs --restart MOUNTPOINT`: the client of a mount's supervisor
// (supervisor.hpp). It finds the supervisor's socket from the mount's
// owner, asks for a new daemon and prints the answer.
#include <limits.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "stfs/mount/control_messages.hpp"
#include "stfs/mount/mountinfo.hpp"
#include "stfs/mount/supervisor.hpp"

namespace stfs {

int run_restart(const std::string& mountpoint) {
  char buf[PATH_MAX];
  if (!::realpath(mountpoint.c_str(), buf)) {
    std::fprintf(stderr, "stfs: cannot restart %s: %s\n", mountpoint.c_str(), std::strerror(errno));
    return 3;
  }
  const std::string mp = buf;
  const auto m = find_mount(mp);
  if (!m || m->fstype != "fuse.stfs") {
    std::fprintf(stderr, "stfs: cannot restart %s: no stfs mount there\n", mp.c_str());
    return 3;
  }
  // The owner's supervisor listens under the owner's folder.
  uid_t owner = ::getuid();
  if (const auto pos = m->super_options.find("user_id="); pos != std::string::npos) {
    owner = static_cast<uid_t>(std::strtoul(m->super_options.c_str() + pos + 8, nullptr, 10));
  }
  const std::string path = control_socket_path(mp, owner);
  auto conn = connect_control_socket(path);
  if (!conn) {
    std::fprintf(stderr,
                 "stfs: cannot restart %s: its supervisor does not answer on %s: %s (a mount "
                 "made by an stfs without a supervisor cannot be restarted)\n",
                 mp.c_str(), path.c_str(), conn.error().message.c_str());
    return 3;
  }
  const UniqueFd s = std::move(*conn);
  if (!send_message(s.get(), kMsgRestart, mp)) {
    std::fprintf(stderr, "stfs: cannot restart %s: the supervisor closed the connection\n",
                 mp.c_str());
    return 3;
  }
  auto a = receive_message(s.get());
  if (!a || !*a || (*a)->tag != kMsgAnswer) {
    std::fprintf(stderr, "stfs: cannot restart %s: the supervisor gave no answer\n", mp.c_str());
    return 3;
  }
  const std::string& text = (*a)->payload;
  if (text.starts_with("ok")) {
    std::printf("stfs: %s\n", text.c_str() + (text.starts_with("ok: ") ? 4 : 0));
    return 0;
  }
  std::fprintf(stderr, "stfs: cannot restart %s: %s\n", mp.c_str(),
               text.c_str() + (text.starts_with("error: ") ? 7 : 0));
  return 3;
}

}  // namespace stfs
