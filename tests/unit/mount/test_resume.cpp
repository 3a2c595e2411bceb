// A takeover's INIT (resume.hpp) and the supervisor's messages
// (control_messages.hpp), on synthetic kernel messages: no mount.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fuse.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>

#include "stfs/mount/control_messages.hpp"
#include "stfs/mount/resume.hpp"

namespace stfs {
namespace {

std::string init_request(std::uint64_t unique) {
  fuse_in_header h{};
  fuse_init_in in{};
  h.len = sizeof h + sizeof in;
  h.opcode = FUSE_INIT;
  h.unique = unique;
  in.major = 7;
  in.minor = 38;
  std::string s(reinterpret_cast<const char*>(&h), sizeof h);
  s.append(reinterpret_cast<const char*>(&in), sizeof in);
  return s;
}

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
  std::string other = init_request(10);
  other[offsetof(fuse_in_header, opcode)] = FUSE_LOOKUP;
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
