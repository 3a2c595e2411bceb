// InitReply: the kernel's INIT offer is read from the request, and only
// INIT's successful reply gains FUSE_DIRECT_IO_ALLOW_MMAP, only when asked.
#include <gtest/gtest.h>
#include <linux/fuse.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "stfs/mount/init_reply.hpp"

namespace stfs {
namespace {

constexpr std::uint32_t kAllowMmap2 = 1u << 4;  // bit 36 of the 64 flags
constexpr std::uint64_t kInit = 2;              // INIT's request id

std::vector<unsigned char> request(std::uint32_t opcode, std::uint32_t flags, std::uint32_t flags2,
                                   std::uint64_t unique = kInit,
                                   std::size_t body = sizeof(fuse_init_in)) {
  std::vector<unsigned char> b(sizeof(fuse_in_header) + body);
  fuse_in_header h{};
  h.len = static_cast<std::uint32_t>(b.size());
  h.opcode = opcode;
  h.unique = unique;
  std::memcpy(b.data(), &h, sizeof h);
  fuse_init_in in{};
  in.major = 7;
  in.minor = 38;
  in.flags = flags;
  in.flags2 = flags2;
  std::memcpy(b.data() + sizeof h, &in, std::min(body, sizeof in));
  return b;
}

// A reply as libfuse lays it out: the header, then the INIT answer.
struct Reply {
  fuse_out_header h{};
  fuse_init_out out{};
  iovec iov[2];
  explicit Reply(std::uint64_t unique = kInit, std::int32_t error = 0,
                 std::size_t size = sizeof(fuse_init_out)) {
    h.unique = unique;
    h.error = error;
    out.major = 7;
    out.minor = 38;
    out.flags = 0x1234;  // what libfuse agreed to, kept as it is
    out.max_write = 1 << 20;
    iov[0] = iovec{&h, sizeof h};
    iov[1] = iovec{&out, size};
  }
  fuse_init_out sent() const {
    fuse_init_out o{};
    std::memcpy(&o, iov[1].iov_base, iov[1].iov_len);
    return o;
  }
};

TEST(InitReply, AddsTheFlagWhenOfferedAndAsked) {
  InitReply r;
  auto in = request(FUSE_INIT, FUSE_INIT_EXT, kAllowMmap2 | 1u);
  r.saw_request(in.data(), in.size());
  ASSERT_TRUE(r.offers_direct_io_mmap());
  r.ask_direct_io_mmap();
  Reply out;
  EXPECT_TRUE(r.amend(out.iov, 2));
  const fuse_init_out o = out.sent();
  EXPECT_EQ(o.flags, 0x1234u | FUSE_INIT_EXT);
  EXPECT_EQ(o.flags2, kAllowMmap2);
  EXPECT_EQ(o.max_write, 1u << 20);  // the rest as libfuse wrote it
  EXPECT_EQ(o.minor, 38u);
  EXPECT_EQ(out.out.flags2, 0u);  // libfuse's own copy untouched
  // Every later reply goes out as it is.
  Reply next(kInit + 2);
  EXPECT_FALSE(r.amend(next.iov, 2));
  EXPECT_EQ(next.iov[1].iov_base, &next.out);
}

TEST(InitReply, NotAskedOrNotOfferedLeavesTheReply) {
  for (bool asked : {false, true}) {
    InitReply r;
    // A kernel before 6.6 offers no such bit; one before 5.17 sends no flags2.
    auto in = request(FUSE_INIT, asked ? FUSE_INIT_EXT : 0u, asked ? 0u : kAllowMmap2);
    r.saw_request(in.data(), in.size());
    EXPECT_FALSE(r.offers_direct_io_mmap());
    if (asked) r.ask_direct_io_mmap();
    Reply out;
    EXPECT_FALSE(r.amend(out.iov, 2));
    EXPECT_EQ(out.iov[1].iov_base, &out.out);
    EXPECT_EQ(out.out.flags, 0x1234u);
  }
  InitReply offered_not_asked;
  auto in = request(FUSE_INIT, FUSE_INIT_EXT, kAllowMmap2);
  offered_not_asked.saw_request(in.data(), in.size());
  Reply out;
  EXPECT_FALSE(offered_not_asked.amend(out.iov, 2));
  EXPECT_EQ(out.iov[1].iov_base, &out.out);
}

TEST(InitReply, OnlyInitsOwnSuccessfulFullReply) {
  auto offered = [] {
    auto r = std::make_unique<InitReply>();
    auto in = request(FUSE_INIT, FUSE_INIT_EXT, kAllowMmap2);
    r->saw_request(in.data(), in.size());
    r->ask_direct_io_mmap();
    return r;
  };
  {
    auto r = offered();
    Reply other(kInit + 2);  // another request's reply
    EXPECT_FALSE(r->amend(other.iov, 2));
    Reply notify(0);  // a notification
    EXPECT_FALSE(r->amend(notify.iov, 2));
    Reply init;  // INIT's still gains it
    EXPECT_TRUE(r->amend(init.iov, 2));
  }
  {
    auto r = offered();
    Reply failed(kInit, -EPROTO);
    EXPECT_FALSE(r->amend(failed.iov, 2));
  }
  {
    auto r = offered();
    Reply old(kInit, 0, 24);  // a reply without flags2 (protocol < 7.23)
    EXPECT_FALSE(r->amend(old.iov, 2));
    EXPECT_EQ(old.iov[1].iov_base, &old.out);
  }
  {
    auto r = offered();
    Reply init;
    EXPECT_FALSE(r->amend(init.iov, 1));  // no body
  }
}

TEST(InitReply, OtherRequestsAndShortBuffersAreIgnored) {
  InitReply r;
  auto lookup = request(FUSE_LOOKUP, FUSE_INIT_EXT, kAllowMmap2);
  r.saw_request(lookup.data(), lookup.size());
  EXPECT_FALSE(r.offers_direct_io_mmap());
  auto tiny = request(FUSE_INIT, FUSE_INIT_EXT, kAllowMmap2);
  r.saw_request(tiny.data(), sizeof(fuse_in_header) - 1);
  EXPECT_FALSE(r.offers_direct_io_mmap());
  // An INIT too short to hold flags2 offers nothing.
  auto short_init =
      request(FUSE_INIT, FUSE_INIT_EXT, kAllowMmap2, kInit, offsetof(fuse_init_in, flags2));
  r.saw_request(short_init.data(), short_init.size());
  EXPECT_FALSE(r.offers_direct_io_mmap());
}

}  // namespace
}  // namespace stfs
