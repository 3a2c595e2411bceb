// SplicePipe: this thread's pipe, which holds one READ's source bytes as
// references to the source's page-cache pages (splice), for the reply to
// the kernel to copy from.
//
// Filled through the source descriptor's own read path, a cold source is
// read with the kernel's readahead in large folios, where faults on a
// mapping read it page by page (order-0 folios on Linux 6.18); and no
// page is mapped into the daemon, so nothing is populated per request.
// docs/PERFORMANCE.md has the numbers.
#pragma once
#include <cstddef>
#include <cstdint>

#include "stfs/base/result.hpp"
#include "stfs/base/unique_fd.hpp"

namespace stfs {

class SplicePipe {
 public:
  // This thread's pipe; nullptr if the kernel will not make one as large
  // as a READ (pipe-max-size, the user's pipe quota): the caller replies
  // another way then.
  static SplicePipe* for_this_thread();
  // The largest READ to ask the kernel for, so that it fits this pipe and
  // the one libfuse splices the reply through (with its header), both
  // within pipe-max-size; 0 if this thread has no pipe.
  static std::size_t largest_request();

  // Whether `size` bytes at `offset` of a file fit: a slot per page.
  bool fits(std::uint64_t offset, std::size_t size) const;
  // Splices exactly `size` bytes at `offset` of `fd` into the pipe: EIO
  // if the file ends first (truncated), EAGAIN if the pipe is full, else
  // the splice's errno. The pipe is empty again after a failure.
  Result<void> fill(int fd, std::uint64_t offset, std::size_t size);
  // The end the reply reads from.
  int read_end() const { return r_.get(); }
  // After the reply: anything a failed send left is discarded, so that
  // no later READ sends stale bytes.
  void settle();

 private:
  SplicePipe() = default;
  void reset();

  UniqueFd r_, w_;
  std::size_t capacity_ = 0;
};

}  // namespace stfs
