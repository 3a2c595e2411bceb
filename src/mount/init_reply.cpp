// InitReply: the kernel's INIT offer, and the flag added to libfuse's reply
// (init_reply.hpp).
#include "stfs/mount/init_reply.hpp"

#include <linux/fuse.h>

#include <cstring>

namespace stfs {
namespace {

// FUSE_DIRECT_IO_ALLOW_MMAP is bit 36 of the 64 INIT flags, so bit 4 of
// flags2; Debian 12's <linux/fuse.h> (7.38) predates it.
constexpr std::uint32_t kDirectIoAllowMmap2 = 1u << (36 - 32);
#ifdef FUSE_DIRECT_IO_ALLOW_MMAP
static_assert(FUSE_DIRECT_IO_ALLOW_MMAP == (std::uint64_t{kDirectIoAllowMmap2} << 32));
#endif

// Where flags2 sits in both INIT messages (the layout of protocol 7.36 on).
constexpr std::size_t kInFlags2 = offsetof(fuse_init_in, flags2);
constexpr std::size_t kOutFlags2 = offsetof(fuse_init_out, flags2);
static_assert(kOutFlags2 + sizeof(std::uint32_t) <= 64);

}  // namespace

void InitReply::saw_request(const void* buf, std::size_t n) {
  if (done_.load(std::memory_order_relaxed) || n < sizeof(fuse_in_header)) return;
  fuse_in_header h;
  std::memcpy(&h, buf, sizeof h);
  if (h.opcode != FUSE_INIT) return;
  const auto* body = static_cast<const unsigned char*>(buf) + sizeof h;
  const std::size_t len = n - sizeof h;
  std::uint32_t flags = 0, flags2 = 0;
  if (len >= offsetof(fuse_init_in, flags) + sizeof flags) {
    std::memcpy(&flags, body + offsetof(fuse_init_in, flags), sizeof flags);
  }
  // flags2 means something only with FUSE_INIT_EXT (kernel 5.17 on).
  if ((flags & FUSE_INIT_EXT) && len >= kInFlags2 + sizeof flags2) {
    std::memcpy(&flags2, body + kInFlags2, sizeof flags2);
  }
  unique_.store(h.unique, std::memory_order_relaxed);
  offered_.store((flags & FUSE_INIT_EXT) && (flags2 & kDirectIoAllowMmap2),
                 std::memory_order_release);
}

bool InitReply::amend(iovec* iov, int count) {
  if (done_.load(std::memory_order_relaxed)) return false;
  if (count < 2 || iov[0].iov_len < sizeof(fuse_out_header)) return false;
  fuse_out_header h;
  std::memcpy(&h, iov[0].iov_base, sizeof h);
  if (h.unique != unique_.load(std::memory_order_relaxed) || h.unique == 0) return false;
  done_.store(true, std::memory_order_relaxed);
  // An error, an old kernel's short reply, or nothing to add: as it is.
  if (h.error != 0 || !wanted_.load(std::memory_order_acquire) || !offers_direct_io_mmap() ||
      iov[1].iov_len < kOutFlags2 + sizeof(std::uint32_t) || iov[1].iov_len > sizeof reply_) {
    return false;
  }
  std::memcpy(reply_, iov[1].iov_base, iov[1].iov_len);
  std::uint32_t flags = 0, flags2 = 0;
  std::memcpy(&flags, reply_ + offsetof(fuse_init_out, flags), sizeof flags);
  std::memcpy(&flags2, reply_ + kOutFlags2, sizeof flags2);
  flags |= FUSE_INIT_EXT;
  flags2 |= kDirectIoAllowMmap2;
  std::memcpy(reply_ + offsetof(fuse_init_out, flags), &flags, sizeof flags);
  std::memcpy(reply_ + kOutFlags2, &flags2, sizeof flags2);
  iov[1].iov_base = reply_;
  return true;
}

}  // namespace stfs
