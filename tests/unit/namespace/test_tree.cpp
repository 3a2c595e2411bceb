// Tree and Filesystem without a mount: inode layout, lookups, readdir
// offsets, read replies, truncation bookkeeping, xattrs, attributes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "st_writer.hpp"
#include "stfs/mount/filesystem.hpp"
#include "stfs/format/json_writer.hpp"
#include "stfs/namespace/tree.hpp"

namespace stfs {
namespace {

using test::pattern_bytes;
using test::Spec;
using test::TempDir;

class TreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    specs_ = {{"b.weight", "F32", {2, 3}, pattern_bytes(24, 1)},
              {"a/b", "U8", {5}, pattern_bytes(5, 2)},
              {"__header__.json", "BF16", {2}, pattern_bytes(4, 3)},
              {"empty", "F16", {0, 7}, ""}};
    path_ = dir_.write("m.safetensors", test::st_file(specs_, R"({"format":"pt"})"));
    ASSERT_EQ(::chmod(path_.c_str(), 0640), 0);
    auto m = Model::open(path_);
    ASSERT_TRUE(m) << m.error().message;
    auto t = Tree::for_model(std::move(m).value());
    ASSERT_TRUE(t) << t.error().message;
    auto f = Filesystem::create(std::move(t).value());
    ASSERT_TRUE(f) << f.error().message;
    fs_ = std::move(f).value();
  }

  // The bytes a READ reply would send.
  static std::string bytes(const ReadReply& r) {
    std::string out;
    for (const iovec& v : r.pieces()) out.append(static_cast<const char*>(v.iov_base), v.iov_len);
    EXPECT_EQ(out.size(), r.size());
    return out;
  }

  std::vector<std::string> list(Ino ino, std::uint64_t offset = 0) {
    std::vector<std::string> out;
    auto r = fs_->readdir(ino, offset, [&](const DirEntry& e) {
      out.emplace_back(e.name);
      return true;
    });
    EXPECT_TRUE(r);
    return out;
  }

  TempDir dir_;
  std::string path_;
  std::vector<Spec> specs_;
  std::unique_ptr<Filesystem> fs_;
};

TEST_F(TreeTest, RootListsSortedMappedNamesWithDots) {
  EXPECT_EQ(list(kRootIno),
            (std::vector<std::string>{".", "..", "%5F_header__.json", "__header__.json",
                                      "__metadata__.json", "a%2Fb", "b.weight", "empty"}));
  // Offsets resume after the entry they were given for.
  EXPECT_EQ(list(kRootIno, 5), (std::vector<std::string>{"a%2Fb", "b.weight", "empty"}));
  EXPECT_TRUE(list(kRootIno, 8).empty());
  EXPECT_TRUE(list(kRootIno, 1000).empty());
}

TEST_F(TreeTest, InodesAreDenseInNameOrder) {
  const Tree& t = fs_->tree();
  EXPECT_EQ(t.node_count(), 7u);
  EXPECT_EQ(t.find_child(kRootIno, "%5F_header__.json"), 2u);
  EXPECT_EQ(t.find_child(kRootIno, "empty"), 7u);
  EXPECT_EQ(t.find_child(kRootIno, "missing"), 0u);
  EXPECT_EQ(t.find_child(2, "x"), 0u);  // not a directory
}

TEST_F(TreeTest, LookupAndGetattr) {
  auto st = fs_->lookup(kRootIno, "b.weight");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->st_size, 24);
  EXPECT_EQ(st->st_mode, S_IFREG | 0440);
  EXPECT_EQ(st->st_blocks, 1);
  EXPECT_EQ(st->st_blksize, 1 << 20);
  EXPECT_EQ(st->st_nlink, 1u);
  EXPECT_EQ(fs_->lookup(kRootIno, "nope").error().errnum, ENOENT);
  EXPECT_EQ(fs_->lookup(st->st_ino, "x").error().errnum, ENOTDIR);
  EXPECT_EQ(fs_->lookup(kRootIno, std::string(256, 'x')).error().errnum, ENAMETOOLONG);
  EXPECT_EQ(fs_->getattr(99).error().errnum, ENOENT);
  EXPECT_EQ(fs_->getattr(0).error().errnum, ENOENT);
  auto root = fs_->getattr(kRootIno);
  ASSERT_TRUE(root);
  EXPECT_EQ(root->st_mode, S_IFDIR | 0550);
  struct stat src {};
  ASSERT_EQ(::stat(path_.c_str(), &src), 0);
  EXPECT_EQ(root->st_mtim.tv_sec, src.st_mtim.tv_sec);
  EXPECT_EQ(root->st_uid, src.st_uid);
}

TEST_F(TreeTest, OpenRefusesWrites) {
  Ino f = fs_->tree().find_child(kRootIno, "b.weight");
  EXPECT_TRUE(fs_->open(f, O_RDONLY));
  EXPECT_EQ(fs_->open(f, O_WRONLY).error().errnum, EROFS);
  EXPECT_EQ(fs_->open(f, O_RDWR).error().errnum, EROFS);
  EXPECT_EQ(fs_->open(f, O_RDONLY | O_TRUNC).error().errnum, EROFS);
  EXPECT_EQ(fs_->open(kRootIno, O_RDONLY).error().errnum, EISDIR);
  EXPECT_TRUE(fs_->opendir(kRootIno));
  EXPECT_EQ(fs_->opendir(f).error().errnum, ENOTDIR);
}

TEST_F(TreeTest, ReadsClampToTheTensor) {
  Ino f = fs_->tree().find_child(kRootIno, "b.weight");
  auto p = fs_->read(f, 0, 1 << 20);
  ASSERT_TRUE(p);
  EXPECT_EQ(bytes(*p), specs_[0].data);
  p = fs_->read(f, 20, 100);
  ASSERT_TRUE(p);
  EXPECT_EQ(bytes(*p), specs_[0].data.substr(20));
  p = fs_->read(f, 24, 100);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->size(), 0u);
  EXPECT_TRUE(p->pieces().empty());
  p = fs_->read(fs_->tree().find_child(kRootIno, "empty"), 0, 100);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->size(), 0u);
  EXPECT_EQ(fs_->read(kRootIno, 0, 1).error().errnum, EISDIR);
  EXPECT_EQ(fs_->read(99, 0, 1).error().errnum, ENOENT);
}

TEST_F(TreeTest, JsonFiles) {
  Ino h = fs_->tree().find_child(kRootIno, "__header__.json");
  EXPECT_TRUE(fs_->in_memory(h));
  EXPECT_FALSE(fs_->in_memory(fs_->tree().find_child(kRootIno, "b.weight")));
  auto p = fs_->read(h, 0, 1 << 20);
  ASSERT_TRUE(p);
  std::string text = bytes(*p);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.find(R"("__metadata__":{"format":"pt"})"), std::string::npos);
  EXPECT_NE(text.find(R"("a/b":{"dtype":"U8","shape":[5],"data_offsets":[24,29]})"),
            std::string::npos);
  Ino m = fs_->tree().find_child(kRootIno, "__metadata__.json");
  p = fs_->read(m, 0, 100);
  ASSERT_TRUE(p);
  EXPECT_EQ(bytes(*p), "{\"format\":\"pt\"}\n");
}

TEST_F(TreeTest, Xattrs) {
  Ino f = fs_->tree().find_child(kRootIno, "a%2Fb");
  EXPECT_EQ(*fs_->getxattr(f, "user.stfs.name"), "a/b");
  EXPECT_EQ(*fs_->getxattr(f, "user.stfs.dtype"), "U8");
  EXPECT_EQ(*fs_->getxattr(f, "user.stfs.shape"), "[5]");
  EXPECT_EQ(*fs_->getxattr(f, "user.stfs.data_offsets"), "[24,29]");
  const auto& h = fs_->tree().model(0).header();
  EXPECT_EQ(*fs_->getxattr(f, "user.stfs.offset"), std::to_string(h.data_start() + 24));
  EXPECT_EQ(fs_->getxattr(f, "user.other").error().errnum, ENODATA);
  EXPECT_EQ(fs_->getxattr(f, "security.selinux").error().errnum, EOPNOTSUPP);
  EXPECT_EQ(fs_->getxattr(f, "system.posix_acl_access").error().errnum, EOPNOTSUPP);
  EXPECT_EQ(fs_->getxattr(kRootIno, "user.stfs.name").error().errnum, ENODATA);
  static const char kAll[] =
      "user.stfs.name\0user.stfs.dtype\0user.stfs.shape\0user.stfs.data_offsets\0"
      "user.stfs.offset\0";
  EXPECT_EQ(*fs_->listxattr(f), std::string(kAll, sizeof kAll - 1));
  EXPECT_EQ(*fs_->listxattr(kRootIno), "");
}

TEST_F(TreeTest, Statfs) {
  auto s = fs_->statfs();
  EXPECT_EQ(s.f_namemax, 255u);
  EXPECT_EQ(s.f_files, 7u);
  EXPECT_TRUE(s.f_flag & ST_RDONLY);
}

TEST_F(TreeTest, SourceFaultShrinksWhatIsServed) {
  const auto& h = fs_->tree().model(0).header();
  // Keep b.weight (bytes 0-24 of the buffer), lose a/b.
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(h.data_start() + 24)), 0);
  fs_->tree().model(0).fault();
  EXPECT_EQ(fs_->tree().model(0).intact(), h.data_start() + 24);
  EXPECT_TRUE(fs_->read(fs_->tree().find_child(kRootIno, "b.weight"), 0, 24));
  auto lost = fs_->read(fs_->tree().find_child(kRootIno, "a%2Fb"), 0, 5);
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().errnum, EIO);
  // Growing back does not bring ranges back: they may hold other bytes.
  ASSERT_EQ(::truncate(path_.c_str(), static_cast<off_t>(h.file_size)), 0);
  fs_->tree().model(0).fault();
  EXPECT_EQ(fs_->tree().model(0).intact(), h.data_start() + 24);
}

TEST(TreeOptions, OwnerAndUmaskOverrides) {
  TempDir dir;
  auto path = dir.write("m.safetensors", test::st_file({{"w", "U8", {1}, "x"}}));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  AttrOptions a;
  a.uid = 1234;
  a.gid = 5678;
  a.umask = 0027;
  auto t = Tree::for_model(std::move(Model::open(path)).value(), a);
  ASSERT_TRUE(t);
  struct stat st = t->attr(t->find_child(kRootIno, "w"));
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_mode, S_IFREG | 0440);
  EXPECT_EQ(t->attr(kRootIno).st_mode, S_IFDIR | 0550);
}

// A polled file source: inode numbers follow the file's identity, so a
// replaced file never inherits the numbers (and the kernel's cached pages)
// of the old one.
TEST(TreeOptions, HashedFileSourceNumbersFollowTheFile) {
  TempDir dir;
  auto path = dir.write("m.safetensors", test::st_file({{"w", "U8", {1}, "x"}}));
  auto build = [&] {
    auto t = Tree::for_model(std::move(Model::open(path)).value(), {}, {}, std::nullopt, true);
    EXPECT_TRUE(t);
    return std::move(t).value();
  };
  Tree a = build();
  Tree b = build();
  EXPECT_TRUE(a.hashed_inos());
  const Ino w = a.find_child(kRootIno, "w");
  ASSERT_NE(w, 0u);
  EXPECT_GT(w, a.node_count());  // a hash, not a position
  EXPECT_EQ(b.find_child(kRootIno, "w"), w);
  EXPECT_EQ(a.node(w)->size, 1u);
  dir.write("m.safetensors", test::st_file({{"w", "U8", {2}, "yz"}}));
  Tree c = build();
  EXPECT_NE(c.find_child(kRootIno, "w"), w);
}

}  // namespace
}  // namespace stfs
