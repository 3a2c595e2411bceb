// Mapping: a move-only, read-only MAP_SHARED mapping of a whole file.
//
// The daemon never reads through it: it hands addresses to the kernel
// (fuse_reply_buf), which copies from the source's page-cache pages. A page
// past a truncation then fails that copy with EFAULT instead of raising
// SIGBUS in the daemon.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "stfs/base/result.hpp"

namespace stfs {

class Mapping {
 public:
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& o) noexcept
      : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept;
  ~Mapping();

  // Maps `size` bytes of `fd` from offset 0. A size of 0 gives an empty
  // mapping (mmap refuses length 0).
  static Result<Mapping> map(int fd, std::uint64_t size);

  const char* data() const { return static_cast<const char*>(addr_); }
  std::uint64_t size() const { return size_; }

 private:
  void* addr_ = nullptr;
  std::uint64_t size_ = 0;
};

}  // namespace stfs
