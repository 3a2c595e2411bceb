// Absolute, canonical paths as strings: their parent, and whether one lies
// at or beneath another. No filesystem access.
#pragma once

#include <string>
#include <string_view>

namespace stfs {

// "/a/b" -> "/a"; "/a" and "/" -> "/".
inline std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// Whether `path` is `dir` or lies beneath it ("/a/bc" is not beneath "/a/b").
inline bool path_within(std::string_view path, std::string_view dir) {
  if (dir == "/") return true;
  return path == dir ||
         (path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/');
}

}  // namespace stfs
