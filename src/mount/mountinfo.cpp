#include "stfs/mount/mountinfo.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace stfs {

std::string unescape_mountinfo(std::string_view f) {
  std::string out;
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i] == '\\' && i + 3 < f.size() && f[i + 1] >= '0' && f[i + 1] <= '3' && f[i + 2] >= '0' &&
        f[i + 2] <= '7' && f[i + 3] >= '0' && f[i + 3] <= '7') {
      out += static_cast<char>((f[i + 1] - '0') * 64 + (f[i + 2] - '0') * 8 + (f[i + 3] - '0'));
      i += 3;
    } else {
      out += f[i];
    }
  }
  return out;
}

std::optional<MountEntry> find_mount(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::optional<MountEntry> found;
  while (std::getline(in, line)) {
    // id parent maj:min root mountpoint options [optional...] - fstype source superopts
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    if (f.size() < 7) continue;
    if (unescape_mountinfo(f[4]) != path) continue;
    std::size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 2 >= f.size()) continue;
    found = MountEntry{f[2], path, f[dash + 1], unescape_mountinfo(f[dash + 2]),
                       dash + 3 < f.size() ? f[dash + 3] : std::string()};
  }
  return found;
}

Result<UniqueFd> open_read_ahead_knob(const std::string& path) {
  auto m = find_mount(path);
  if (!m) return unexpected(Error{ENOENT, "no mount at " + path + " in /proc/self/mountinfo"});
  const std::string knob = "/sys/class/bdi/" + m->device + "/read_ahead_kb";
  UniqueFd fd(::open(knob.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    int e = errno;
    return unexpected(Error{e, "cannot open " + knob + ": " + std::strerror(e)});
  }
  return fd;
}

Result<void> write_read_ahead_kb(int knob, unsigned kb) {
  const std::string v = std::to_string(kb) + "\n";
  if (::pwrite(knob, v.data(), v.size(), 0) != static_cast<ssize_t>(v.size())) {
    int e = errno;
    return unexpected(Error{e, std::string("cannot write read_ahead_kb: ") + std::strerror(e)});
  }
  return {};
}

}  // namespace stfs
