// The source layer's read policy (read_reply.hpp): which bytes come from
// the mapping and which through pread, gathering, truncation, and what
// complete() does after the send.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include "st_writer.hpp"
#include "stfs/source/model.hpp"
#include "stfs/source/read_reply.hpp"

namespace stfs {
namespace {

using test::pattern_bytes;
using test::TempDir;

// What the reply sends: its pieces, or what waits in its pipe (read out,
// as the send would).
std::string bytes(const ReadReply& r) {
  std::string out;
  if (r.pipe_fd() >= 0) {
    out.resize(r.size());
    std::size_t got = 0;
    while (got < out.size()) {
      const ssize_t n = ::read(r.pipe_fd(), out.data() + got, out.size() - got);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    out.resize(got);
  }
  for (const iovec& v : r.pieces()) out.append(static_cast<const char*>(v.iov_base), v.iov_len);
  EXPECT_EQ(out.size(), r.size());
  return out;
}

bool in_mapping(const Model& m, const iovec& v) {
  const char* p = static_cast<const char*>(v.iov_base);
  return m.mapping().data() && p >= m.mapping().data() &&
         p + v.iov_len <= m.mapping().data() + m.mapping().size();
}

class ReadReplyTest : public ::testing::Test {
 protected:
  // One U8 tensor of 256 KiB.
  void SetUp() override {
    data_ = pattern_bytes(256 << 10, 7);
    path_ = dir_.write("m.safetensors", test::st_file({{"w", "U8", {data_.size()}, data_}}));
  }
  Model open(SourcePolicy policy) {
    auto m = Model::open(path_);
    EXPECT_TRUE(m) << m.error().message;
    EXPECT_TRUE(m->prepare(policy));
    return std::move(m).value();
  }
  std::uint64_t start(const Model& m) const { return m.header().data_start(); }

  TempDir dir_;
  std::string path_;
  std::string data_;
};

TEST_F(ReadReplyTest, KeepModeServesFromTheMapping) {
  Model m = open({ReadPath::kMmap, false});
  ReadReply r;
  r.add_memory("head", 4);
  r.add_source(m, start(m) + 10, 100);
  ASSERT_TRUE(r.finish());
  ASSERT_EQ(r.pieces().size(), 2u);
  EXPECT_TRUE(in_mapping(m, r.pieces()[1]));
  EXPECT_EQ(bytes(r), "head" + data_.substr(10, 100));
  EXPECT_FALSE(r.complete(0));
}

TEST_F(ReadReplyTest, DropModeReadsSmallRequestsWithPread) {
  Model m = open({ReadPath::kMmap, true});
  ReadReply small;
  small.add_source(m, start(m), 64 << 10);
  ASSERT_TRUE(small.finish());
  ASSERT_EQ(small.pieces().size(), 1u);
  EXPECT_FALSE(in_mapping(m, small.pieces()[0]));
  EXPECT_EQ(bytes(small), data_.substr(0, 64 << 10));
  // Past the small-read size, spliced from the page cache.
  ReadReply large;
  large.add_source(m, start(m), (64 << 10) + 1);
  ASSERT_TRUE(large.finish());
  EXPECT_TRUE(large.pieces().empty());
  EXPECT_GE(large.pipe_fd(), 0);
  EXPECT_EQ(bytes(large), data_.substr(0, (64 << 10) + 1));
  EXPECT_FALSE(large.complete(0));
}

TEST_F(ReadReplyTest, LargeRangesAreSplicedInEitherMode) {
  for (bool drop : {false, true}) {
    Model m = open({ReadPath::kMmap, drop});
    // Unaligned, and more than one pipe's worth over the loop.
    for (std::uint64_t off : {std::uint64_t{0}, std::uint64_t{4095}, std::uint64_t{77777}}) {
      const std::size_t size = data_.size() - off;
      ReadReply r;
      r.add_source(m, start(m) + off, size);
      ASSERT_TRUE(r.finish());
      ASSERT_GE(r.pipe_fd(), 0);
      EXPECT_EQ(r.size(), size);
      EXPECT_EQ(bytes(r), data_.substr(off, size)) << "drop " << drop << " at " << off;
      EXPECT_FALSE(r.complete(0));
    }
  }
}

TEST_F(ReadReplyTest, BytesAFailedSendLeftAreNeverSentLater) {
  Model m = open({ReadPath::kMmap, false});
  ReadReply failed;
  failed.add_source(m, start(m), 100 << 10);
  ASSERT_TRUE(failed.finish());
  ASSERT_GE(failed.pipe_fd(), 0);
  // The send failed (the request was interrupted): nothing was read.
  EXPECT_FALSE(failed.complete(-ENOENT));
  ReadReply next;
  next.add_source(m, start(m) + 1000, 90 << 10);
  ASSERT_TRUE(next.finish());
  EXPECT_EQ(bytes(next), data_.substr(1000, 90 << 10));
  EXPECT_FALSE(next.complete(0));
}

TEST_F(ReadReplyTest, AMappedSourceWithAHeaderPieceStaysMapped) {
  // Two parts (an NPY header and the bytes): pieces, from the mapping.
  Model m = open({ReadPath::kMmap, false});
  ReadReply r;
  r.add_memory("head", 4);
  r.add_source(m, start(m), 128 << 10);
  ASSERT_TRUE(r.finish());
  EXPECT_LT(r.pipe_fd(), 0);
  ASSERT_EQ(r.pieces().size(), 2u);
  EXPECT_TRUE(in_mapping(m, r.pieces()[1]));
  EXPECT_EQ(bytes(r), "head" + data_.substr(0, 128 << 10));
}

TEST_F(ReadReplyTest, PreadSourcesAreReadIntoTheBuffer) {
  Model m = open({ReadPath::kPread, false});
  EXPECT_EQ(m.mapping().data(), nullptr);
  ReadReply r;
  r.add_source(m, start(m) + 5, 200 << 10);
  ASSERT_TRUE(r.finish());
  ASSERT_EQ(r.pieces().size(), 1u);
  EXPECT_EQ(bytes(r), data_.substr(5, 200 << 10));
}

TEST_F(ReadReplyTest, ManyPiecesAreGatheredIntoOne) {
  Model m = open({ReadPath::kMmap, false});
  ReadReply r;
  std::string want;
  for (std::size_t i = 0; i < 1500; ++i) {
    if (i % 2) {
      r.add_memory("x", 1);
      want += 'x';
    } else {
      r.add_source(m, start(m) + i * 3, 3);
      want += data_.substr(i * 3, 3);
    }
  }
  ASSERT_TRUE(r.finish());
  ASSERT_EQ(r.pieces().size(), 1u);
  EXPECT_FALSE(in_mapping(m, r.pieces()[0]));
  EXPECT_EQ(bytes(r), want);
}

TEST_F(ReadReplyTest, TruncatedSourceFailsWithEioNamingIt) {
  Model m = open({ReadPath::kMmap, true});
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(start(m) + 1000)), 0);
  ReadReply r;
  r.add_source(m, start(m) + 900, 200);
  auto done = r.finish();
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().errnum, EIO);
  EXPECT_TRUE(done.error().log);
  EXPECT_FALSE(done.error().source_gone);
  EXPECT_NE(done.error().message.find(path_), std::string::npos);
  EXPECT_EQ(m.intact(), start(m) + 1000);
  // What is left still reads.
  ReadReply ok;
  ok.add_source(m, start(m), 1000);
  ASSERT_TRUE(ok.finish());
  EXPECT_EQ(bytes(ok), data_.substr(0, 1000));
}

TEST_F(ReadReplyTest, PreadOfAShrunkSourceFails) {
  Model m = open({ReadPath::kPread, true});
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(start(m) + 1000)), 0);
  ReadReply r;
  r.add_source(m, start(m) + 900, 200);
  auto done = r.finish();
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().errnum, EIO);
  EXPECT_TRUE(done.error().log);
  EXPECT_EQ(m.intact(), start(m) + 1000);  // the short read marked it
}

TEST_F(ReadReplyTest, EfaultFromTheMappingMarksTheSource) {
  Model m = open({ReadPath::kMmap, false});
  ReadReply r;
  r.add_source(m, start(m), 64 << 10);  // small enough for the mapping
  ASSERT_TRUE(r.finish());
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(start(m) + 4096)), 0);
  auto message = r.complete(-EFAULT);
  ASSERT_TRUE(message);
  EXPECT_NE(message->find("shrank to " + std::to_string(start(m) + 4096)), std::string::npos);
  EXPECT_EQ(m.intact(), start(m) + 4096);
  // Another failed send is not a truncation.
  EXPECT_FALSE(r.complete(-ENOENT));
}

TEST(ReadReplyConverted, F16BecomesF32) {
  TempDir dir;
  // 1.0, -2.0, 0.5 in IEEE half precision, little-endian.
  const std::string half("\x00\x3c\x00\xc0\x00\x38", 6);
  auto path = dir.write("h.safetensors", test::st_file({{"h", "F16", {3}, half}}));
  auto m = Model::open(path);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->prepare());
  const float want[3] = {1.0f, -2.0f, 0.5f};
  ReadReply r;
  // Bytes 2..10 of the float32 rendering: a cut through two elements.
  const auto dec = f32_decoder(m->header().tensors[0]);
  ASSERT_TRUE(dec);
  ASSERT_TRUE(r.converted(*m, *dec, m->header().data_start(), 2, 8));
  EXPECT_EQ(bytes(r), std::string(reinterpret_cast<const char*>(want) + 2, 8));
}

}  // namespace
}  // namespace stfs
