// Reading /proc/self/mountinfo, and the per-mount readahead knob it leads to.
#pragma once

#include <optional>
#include <string>

#include "stfs/base/result.hpp"
#include "stfs/base/unique_fd.hpp"

namespace stfs {

struct MountEntry {
  std::string device;  // "maj:min"
  std::string mountpoint;
  std::string fstype;  // "fuse.stfs"
  std::string source;
  std::string super_options;  // "ro,user_id=0,group_id=0,..."
};

// The topmost mount at exactly `path` (already canonical), if any. Reads
// only /proc, never the path itself, so it is safe before a FUSE loop runs.
std::optional<MountEntry> find_mount(const std::string& path);

// Decodes mountinfo's octal escapes ("\040" is a space).
std::string unescape_mountinfo(std::string_view field);

// Opens /sys/class/bdi/<maj:min>/read_ahead_kb of the mount at `path` for
// writing. Done before the sandbox; the value is written after the
// kernel's INIT, which sets the readahead from its own reply.
Result<UniqueFd> open_read_ahead_knob(const std::string& path);

// Writes `kb` to a knob opened above.
Result<void> write_read_ahead_kb(int knob, unsigned kb);

}  // namespace stfs
