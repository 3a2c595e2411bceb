// SplicePipe (splice_pipe.hpp): exact fills, the end of a file, and an
// empty pipe after every failure.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "st_writer.hpp"
#include "stfs/base/unique_fd.hpp"
#include "stfs/source/splice_pipe.hpp"

namespace stfs {
namespace {

std::string drain(const SplicePipe& p, std::size_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(p.read_end(), out.data() + got, n - got);
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

class SplicePipeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = test::pattern_bytes(3 << 20, 11);
    fd_ = UniqueFd(::open(dir_.write("f", data_).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid());
    pipe_ = SplicePipe::for_this_thread();
    ASSERT_NE(pipe_, nullptr) << "no 1 MiB pipe on this machine";
  }
  test::TempDir dir_;
  std::string data_;
  UniqueFd fd_;
  SplicePipe* pipe_ = nullptr;
};

TEST_F(SplicePipeTest, FillsExactlyTheRangeAskedFor) {
  for (std::uint64_t off :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{4097}, std::uint64_t{(2 << 20) + 123}}) {
    const std::size_t size = 300000;
    ASSERT_TRUE(pipe_->fits(off, size));
    ASSERT_TRUE(pipe_->fill(fd_.get(), off, size));
    EXPECT_EQ(drain(*pipe_, size), data_.substr(off, size)) << off;
    pipe_->settle();
  }
}

TEST_F(SplicePipeTest, TheLargestRequestFitsAtAnyOffset) {
  const std::size_t largest = SplicePipe::largest_request();
  ASSERT_GT(largest, 0u);
  EXPECT_EQ(largest % 4096, 0u);
  EXPECT_TRUE(pipe_->fits(4095, largest));
  ASSERT_TRUE(pipe_->fill(fd_.get(), 4095, largest));
  EXPECT_EQ(drain(*pipe_, largest), data_.substr(4095, largest));
  // Past the pipe's size: the caller must reply another way.
  EXPECT_FALSE(pipe_->fits(0, 4 << 20));
}

TEST_F(SplicePipeTest, AFileThatEndsEarlyIsEioAndLeavesThePipeEmpty) {
  auto r = pipe_->fill(fd_.get(), data_.size() - 1000, 5000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum, EIO);
  EXPECT_NE(r.error().message.find(std::to_string(data_.size())), std::string::npos)
      << r.error().message;
  // The 1000 bytes it got are gone: the next fill reads only its own.
  ASSERT_TRUE(pipe_->fill(fd_.get(), 10, 100));
  EXPECT_EQ(drain(*pipe_, 1000), data_.substr(10, 100));
}

TEST_F(SplicePipeTest, SettleDiscardsWhatASendLeft) {
  ASSERT_TRUE(pipe_->fill(fd_.get(), 0, 8192));
  EXPECT_EQ(drain(*pipe_, 100), data_.substr(0, 100));
  pipe_->settle();
  ASSERT_TRUE(pipe_->fill(fd_.get(), 50000, 10));
  EXPECT_EQ(drain(*pipe_, 1000), data_.substr(50000, 10));
}

TEST_F(SplicePipeTest, ADescriptorThatCannotSpliceFailsWithItsErrno) {
  UniqueFd dir(::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  auto r = pipe_->fill(dir.get(), 0, 4096);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().errnum, 0);
  ASSERT_TRUE(pipe_->fill(fd_.get(), 7, 7));
  EXPECT_EQ(drain(*pipe_, 100), data_.substr(7, 7));
}

}  // namespace
}  // namespace stfs
