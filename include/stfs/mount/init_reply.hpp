// Asking the kernel to map direct_io files, where libfuse cannot ask.
//
// Under -o direct_io the kernel refuses shared mappings of a file opened
// with FOPEN_DIRECT_IO (ENODEV: the safetensors library, numpy.memmap and
// torch.load(mmap=True) all map) unless the daemon's INIT reply carries
// FUSE_DIRECT_IO_ALLOW_MMAP (protocol 7.39, kernel 6.6). libfuse asks for it
// from 3.16; 3.14 (Debian 12) cannot: its want flags stop at bit 31 and the
// flag is bit 36. So the session's device I/O (fuse_adapter.cpp) shows this
// class the requests it reads and the replies it writes: it notes whether
// the kernel's INIT offers the flag, and adds it to libfuse's INIT reply
// when asked to. It reads the kernel's own structures (<linux/fuse.h>), not
// libfuse's, and sees no other message.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace stfs {

class InitReply {
 public:
  // A request just read from the device; only INIT is looked at, and
  // nothing after INIT's reply.
  void saw_request(const void* buf, std::size_t n);
  // Whether the kernel's INIT offered FUSE_DIRECT_IO_ALLOW_MMAP.
  bool offers_direct_io_mmap() const { return offered_.load(std::memory_order_acquire); }
  // From the init callback: add the flag to the reply (if offered).
  void ask_direct_io_mmap() { wanted_.store(true, std::memory_order_release); }
  // A reply about to be written: INIT's, if asked and offered, is pointed
  // at a copy of itself that carries the flag. Returns whether it did.
  bool amend(iovec* iov, int count);

 private:
  std::atomic<bool> done_{false};  // INIT answered: nothing more to look at
  std::atomic<bool> offered_{false};
  std::atomic<bool> wanted_{false};
  std::atomic<std::uint64_t> unique_{0};     // INIT's request id
  alignas(8) unsigned char reply_[64] = {};  // the amended fuse_init_out
};

}  // namespace stfs
