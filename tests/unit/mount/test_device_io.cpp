// A session's device reads and writes (device_io.hpp) on a socket that
// stands in for /dev/fuse: what a takeover feeds, drops and answers.
#include <gtest/gtest.h>
#include <linux/fuse.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "st_writer.hpp"
#include "stfs/base/unique_fd.hpp"
#include "stfs/mount/device_io.hpp"
#include "stfs/mount/session_state.hpp"

namespace stfs {
namespace {

using test::TempDir;

std::string request(std::uint32_t opcode, std::uint64_t unique) {
  fuse_in_header h{};
  fuse_init_in in{};
  h.len = sizeof h + sizeof in;
  h.opcode = opcode;
  h.unique = unique;
  in.major = 7;
  in.minor = 38;
  std::string s(reinterpret_cast<const char*>(&h), sizeof h);
  s.append(reinterpret_cast<const char*>(&in), sizeof in);
  return s;
}

struct Device {
  Device() {
    dir.write("a.txt", "x");
    auto f = Filesystem::create(Tree::for_directory(dir.path()).value());
    live = std::make_unique<LiveFs>(std::shared_ptr<Filesystem>(std::move(f).value()), true);
    opts.mountpoint = dir.path() + "/mnt";
    opts.busy_poll_us = 0;
    state = std::make_unique<SessionState>(*live, opts);
    int sp[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
    daemon.reset(sp[0]);
    kernel.reset(sp[1]);
  }
  // What the "kernel" end received next.
  std::string received() {
    char buf[4096];
    const ssize_t n = ::recv(kernel.get(), buf, sizeof buf, MSG_DONTWAIT);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
  void send(const std::string& m) {
    ASSERT_EQ(::send(kernel.get(), m.data(), m.size(), 0), static_cast<ssize_t>(m.size()));
  }
  TempDir dir;
  std::unique_ptr<LiveFs> live;
  MountOptions opts;
  std::unique_ptr<SessionState> state;
  UniqueFd daemon, kernel;
};

fuse_out_header header_of(const std::string& reply) {
  fuse_out_header h{};
  if (reply.size() >= sizeof h) std::memcpy(&h, reply.data(), sizeof h);
  return h;
}

TEST(DeviceIo, ATakeoverAnswersTheKernelsResentInitAndPassesTheRestToLibfuse) {
  Device d;
  const std::string init = request(FUSE_INIT, 2);
  d.state->resume.arm(init);
  // The fed INIT first, from no device read.
  char buf[4096];
  ASSERT_EQ(device_read(d.daemon.get(), buf, sizeof buf, d.state.get()),
            static_cast<ssize_t>(init.size()));
  EXPECT_EQ(std::string(buf, init.size()), init);
  // libfuse's answer is dropped; a resend is asked for instead.
  fuse_out_header h{};
  fuse_init_out out{};
  h.len = sizeof h + sizeof out;
  h.unique = 2;
  out.major = 7;
  out.minor = 38;
  out.max_readahead = 1 << 17;
  iovec iov[2] = {{&h, sizeof h}, {&out, sizeof out}};
  EXPECT_EQ(device_writev(d.daemon.get(), iov, 2, d.state.get()), static_cast<ssize_t>(h.len));
  const std::string notify = d.received();
  ASSERT_EQ(notify.size(), sizeof(fuse_out_header));
  EXPECT_EQ(header_of(notify).unique, 0u);
  EXPECT_EQ(header_of(notify).error, 7);  // FUSE_NOTIFY_RESEND
  EXPECT_EQ(d.received(), "");            // and nothing else
  // The kernel resends its own INIT (the dead daemon never answered it),
  // then a LOOKUP. The INIT is answered here as the fed one was; libfuse,
  // which would refuse a second INIT, sees only the LOOKUP.
  const std::uint64_t resent = 2 | (1ULL << 63);
  d.send(request(FUSE_INIT, resent));
  const std::string lookup = request(FUSE_LOOKUP, resent + 2);
  d.send(lookup);
  ASSERT_EQ(device_read(d.daemon.get(), buf, sizeof buf, d.state.get()),
            static_cast<ssize_t>(lookup.size()));
  EXPECT_EQ(std::string(buf, lookup.size()), lookup);
  const std::string answer = d.received();
  ASSERT_EQ(answer.size(), sizeof h + sizeof out);
  EXPECT_EQ(header_of(answer).unique, resent);
  EXPECT_EQ(header_of(answer).error, 0);
  fuse_init_out got{};
  std::memcpy(&got, answer.data() + sizeof h, sizeof got);
  EXPECT_EQ(got.max_readahead, 1u << 17);
  // An ordinary reply goes out as written.
  h.unique = resent + 2;
  h.len = sizeof h;
  EXPECT_EQ(device_writev(d.daemon.get(), iov, 1, d.state.get()), static_cast<ssize_t>(sizeof h));
  EXPECT_EQ(header_of(d.received()).unique, resent + 2);
}

TEST(DeviceIo, WithoutATakeoverInitIsLibfuses) {
  Device d;
  const std::string init = request(FUSE_INIT, 2);
  d.send(init);
  char buf[4096];
  ASSERT_EQ(device_read(d.daemon.get(), buf, sizeof buf, d.state.get()),
            static_cast<ssize_t>(init.size()));
  EXPECT_EQ(d.received(), "");
}

}  // namespace
}  // namespace stfs
