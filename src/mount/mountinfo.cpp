#include "stfs/mount/mountinfo.hpp"

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
    found = MountEntry{f[2], path, f[dash + 1], unescape_mountinfo(f[dash + 2])};
  }
  return found;
}

Result<void> set_read_ahead_kb(const std::string& path, unsigned kb) {
  auto m = find_mount(path);
  if (!m) return unexpected(Error{ENOENT, "no mount at " + path + " in /proc/self/mountinfo"});
  std::string knob = "/sys/class/bdi/" + m->device + "/read_ahead_kb";
  std::ofstream out(knob);
  out << kb << '\n';
  out.flush();
  if (!out) {
    int e = errno;
    return unexpected(Error{e, "cannot write " + knob + ": " + std::strerror(e)});
  }
  return {};
}

}  // namespace stfs
