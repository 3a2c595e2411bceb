// A takeover's INIT (resume.hpp), the device I/O that carries it
// (device_io.hpp, on a socket standing in for /dev/fuse), and the
// supervisor's messages (control_messages.hpp): no mount.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fuse.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "st_writer.hpp"
#include "stfs/mount/control_messages.hpp"
#include "stfs/mount/device_io.hpp"
#include "stfs/mount/resume.hpp"
#include "stfs/mount/session_state.hpp"

namespace stfs {
namespace {

using test::TempDir;

// A request of `opcode` with an INIT's body (only INIT's is read).
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

std::string init_request(std::uint64_t unique) { return request(FUSE_INIT, unique); }

// libfuse's reply to the request `unique`, as its writev passes it.
struct Reply {
  explicit Reply(std::uint64_t unique) {
    h.len = sizeof h + sizeof out;
    h.unique = unique;
    iov[0] = {&h, sizeof h};
    iov[1] = {&out, sizeof out};
  }
  fuse_out_header h{};
  fuse_init_out out{};
  iovec iov[2];
};

TEST(ResumeInit, UnarmedItLeavesEveryReadAndReplyAlone) {
  ResumeInit r;
  char buf[256];
  EXPECT_EQ(r.feed(buf, sizeof buf), -1);
  Reply reply(7);
  EXPECT_FALSE(r.swallow(reply.iov, 2));
  r.arm("not a request");  // too short: stays unarmed
  EXPECT_FALSE(r.armed());
}

TEST(ResumeInit, FeedsInitOnceAndDropsOnlyItsReply) {
  ResumeInit r;
  const std::string init = init_request(42);
  r.arm(init);
  ASSERT_TRUE(r.armed());
  char buf[256];
  ASSERT_EQ(r.feed(buf, sizeof buf), static_cast<ssize_t>(init.size()));
  EXPECT_EQ(std::string(buf, init.size()), init);
  // Another request's reply goes out; INIT's does not, once.
  Reply other(43);
  EXPECT_FALSE(r.swallow(other.iov, 2));
  Reply reply(42);
  EXPECT_TRUE(r.swallow(reply.iov, 2));
  EXPECT_TRUE(r.answered());
  EXPECT_FALSE(r.swallow(reply.iov, 2));
  // From now on every read goes to the device.
  EXPECT_EQ(r.feed(buf, sizeof buf), -1);
}

TEST(ResumeInit, OtherReadsWaitUntilInitIsAnswered) {
  ResumeInit r;
  r.arm(init_request(5));
  char buf[256];
  ASSERT_GT(r.feed(buf, sizeof buf), 0);
  std::atomic<bool> returned{false};
  std::thread reader([&] {
    char b[256];
    EXPECT_EQ(r.feed(b, sizeof b), -1);  // then reads the device
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(returned.load());  // a request read now would come before INIT
  Reply reply(5);
  EXPECT_TRUE(r.swallow(reply.iov, 2));
  reader.join();
  EXPECT_TRUE(returned.load());
}

TEST(ResumeInit, AnswersTheKernelsOwnInitAgainWithTheFedOnesAnswer) {
  // The first daemon read INIT, handed it on and died before answering:
  // the resend brings the kernel's INIT back after the fed copy's answer.
  ResumeInit r;
  const std::string init = init_request(9);
  r.arm(init);
  std::string reply;
  char buf[256];
  ASSERT_GT(r.feed(buf, sizeof buf), 0);
  EXPECT_FALSE(r.answer_again(init.data(), init.size(), reply));  // not answered yet
  Reply answer(9);
  answer.out.major = 7;
  answer.out.minor = 38;
  answer.out.max_write = 1 << 20;
  ASSERT_TRUE(r.swallow(answer.iov, 2));
  const std::uint64_t resent_id = 9 | (1ULL << 63);  // FUSE_UNIQUE_RESEND
  const std::string resent = init_request(resent_id);
  ASSERT_TRUE(r.answer_again(resent.data(), resent.size(), reply));
  ASSERT_EQ(reply.size(), sizeof(fuse_out_header) + sizeof(fuse_init_out));
  fuse_out_header h;
  fuse_init_out out;
  std::memcpy(&h, reply.data(), sizeof h);
  std::memcpy(&out, reply.data() + sizeof h, sizeof out);
  EXPECT_EQ(h.unique, resent_id);
  EXPECT_EQ(h.error, 0);
  EXPECT_EQ(h.len, reply.size());
  EXPECT_EQ(out.max_write, 1u << 20);
  // Any other request is libfuse's.
  const std::string other = request(FUSE_LOOKUP, 10);
  EXPECT_FALSE(r.answer_again(other.data(), other.size(), reply));
  EXPECT_FALSE(r.answer_again(other.data(), 4, reply));
  // An unarmed session (no takeover) leaves INIT to libfuse.
  ResumeInit plain;
  EXPECT_FALSE(plain.answer_again(init.data(), init.size(), reply));
}

TEST(ResumeInit, KnowsWhichKernelsResend) {
  EXPECT_TRUE(kernel_resends("6.9.0"));
  EXPECT_TRUE(kernel_resends("6.18.44-fc-v1272"));
  EXPECT_TRUE(kernel_resends("7.0.1"));
  EXPECT_FALSE(kernel_resends("6.8.12-amd64"));
  EXPECT_FALSE(kernel_resends("6.1.0-27-amd64"));  // Debian 12's
  EXPECT_FALSE(kernel_resends("5.19.0"));
  EXPECT_FALSE(kernel_resends("garbage"));
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

TEST(ControlMessages, CarryAPayloadAndADescriptor) {
  int sp[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
  UniqueFd a(sp[0]), b(sp[1]);
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(send_message(a.get(), kMsgMounted, "token", devnull.get()));
  auto m = receive_message(b.get());
  ASSERT_TRUE(m && *m);
  EXPECT_EQ((*m)->tag, kMsgMounted);
  EXPECT_EQ((*m)->payload, "token");
  ASSERT_TRUE((*m)->fd.valid());
  struct stat x {
  }, y{};
  ::fstat(devnull.get(), &x);
  ::fstat((*m)->fd.get(), &y);
  EXPECT_EQ(x.st_rdev, y.st_rdev);
  EXPECT_TRUE(::fcntl((*m)->fd.get(), F_GETFD) & FD_CLOEXEC);
  // A message without a descriptor, then the peer's end.
  ASSERT_TRUE(send_message(a.get(), kMsgServing, {}));
  m = receive_message(b.get());
  ASSERT_TRUE(m && *m);
  EXPECT_EQ((*m)->tag, kMsgServing);
  EXPECT_FALSE((*m)->fd.valid());
  a.reset();
  m = receive_message(b.get());
  ASSERT_TRUE(m);
  EXPECT_FALSE(*m);
}

TEST(ControlMessages, TakeoverPayloadsRoundTripAndRefuseShortOnes) {
  std::string token, init;
  const std::string packed = pack_takeover("file:1:2", init_request(1));
  ASSERT_TRUE(unpack_takeover(packed, token, init));
  EXPECT_EQ(token, "file:1:2");
  EXPECT_EQ(init, init_request(1));
  EXPECT_FALSE(unpack_takeover("ab", token, init));
  EXPECT_FALSE(unpack_takeover(packed.substr(0, 6), token, init));
  // No INIT: the dead daemon never read it; the new one reads it itself.
  ASSERT_TRUE(unpack_takeover(pack_takeover("t", ""), token, init));
  EXPECT_EQ(token, "t");
  EXPECT_TRUE(init.empty());
}

TEST(ControlMessages, SocketPathsArePerOwnerAndPerMountpoint) {
  EXPECT_TRUE(control_socket_path("/mnt/a", 0).starts_with("/run/stfs/"));
  EXPECT_NE(control_socket_path("/mnt/a", 0), control_socket_path("/mnt/b", 0));
  EXPECT_EQ(control_socket_path("/mnt/a", 0), control_socket_path("/mnt/a", 0));
  const std::string user = control_socket_path("/mnt/a", 4242);
  EXPECT_NE(user.find("4242"), std::string::npos);
  EXPECT_LT(user.size(), 108u);  // sun_path
}

}  // namespace
}  // namespace stfs
