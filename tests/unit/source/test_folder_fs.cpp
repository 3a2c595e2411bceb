// FolderFs: the one directory lister, and the in-memory folder the folder
// fuzzer scans, checked against what the system's filesystem gives.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "st_writer.hpp"
#include "stfs/namespace/tree.hpp"
#include "stfs/source/folder_fs.hpp"
#include "stfs/source/path_walk.hpp"

namespace stfs {
namespace {

using test::TempDir;

TEST(ListDir, SortedWithoutDotsAndNamesTheFolderOnError) {
  TempDir dir;
  dir.write("b", "");
  dir.write("a", "");
  ASSERT_EQ(::mkdir((dir.path() + "/c").c_str(), 0755), 0);
  auto names = list_dir(dir.path());
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "c"}));
  auto missing = list_dir(dir.path() + "/nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().errnum, ENOENT);
  EXPECT_NE(missing.error().message.find(dir.path() + "/nope"), std::string::npos);
}

TEST(MemoryFolderFs, ListsLinksAndOpensLikeADisk) {
  MemoryFolderFs mem;
  ASSERT_TRUE(mem.add_dir("/m"));
  ASSERT_TRUE(mem.add_dir("/m/sub"));
  ASSERT_TRUE(mem.add_file("/m/b.txt", "bytes"));
  ASSERT_TRUE(mem.add_file("/m-x", "beside, not inside"));
  ASSERT_TRUE(mem.add_link("/m/sub/l", "../b.txt"));
  EXPECT_FALSE(mem.add_file("/m/b.txt", "again"));  // taken
  EXPECT_FALSE(mem.add_file("/m/none/f", "x"));     // no parent
  EXPECT_FALSE(mem.add_dir("/m/b.txt/d"));          // parent is a file
  EXPECT_EQ(*mem.list("/m"), (std::vector<std::string>{"b.txt", "sub"}));
  EXPECT_EQ(*mem.list("/"), (std::vector<std::string>{"m", "m-x"}));
  EXPECT_EQ(mem.list("/m/b.txt").error().errnum, ENOTDIR);
  EXPECT_EQ(*mem.readlink("/m/sub/l"), "../b.txt");
  EXPECT_EQ(mem.acl("/m").error().errnum, ENODATA);
  // A walk follows the link; the open is checked against the walk.
  PathWalker walker({}, mem);
  auto w = walker.walk("/m/sub/l");
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(w->path, "/m/b.txt");
  struct stat st {};
  auto fd = walker.open_regular(*w, st);
  ASSERT_TRUE(fd) << fd.error().message;
  char buf[8] = {};
  EXPECT_EQ(::pread(fd->get(), buf, sizeof buf, 0), 5);
  EXPECT_EQ(std::string(buf), "bytes");
  EXPECT_EQ(mem.open("/m/sub").error().errnum, EISDIR);
}

TEST(MemoryFolderFs, AFolderScanSeesWhatADiskFolderGives) {
  const std::string model = test::st_file({{"w", "U8", {3}, "abc"}});
  TempDir dir;
  dir.write("a.safetensors", model);
  dir.write("bad.safetensors", "not a model");
  dir.write("readme.md", "hi");
  MemoryFolderFs mem;
  ASSERT_TRUE(mem.add_dir("/m"));
  ASSERT_TRUE(mem.add_file("/m/a.safetensors", model));
  ASSERT_TRUE(mem.add_file("/m/bad.safetensors", "not a model"));
  ASSERT_TRUE(mem.add_file("/m/readme.md", "hi"));
  FolderOptions in_memory;
  in_memory.fs = &mem;
  auto from_mem = Tree::for_directory("/m", in_memory);
  auto from_disk = Tree::for_directory(dir.path());
  ASSERT_TRUE(from_mem && from_disk);
  ASSERT_EQ(from_mem->node_count(), from_disk->node_count());
  for (std::uint64_t pos = 1; pos <= from_mem->node_count(); ++pos) {
    EXPECT_EQ(from_mem->node_at(pos)->name, from_disk->node_at(pos)->name);
    EXPECT_EQ(from_mem->node_at(pos)->size, from_disk->node_at(pos)->size);
  }
  EXPECT_EQ(from_mem->tensor_count(), 1u);
}

// A MemoryFolderFs whose listing of one folder fails (EACCES).
class Unlistable final : public FolderFs {
 public:
  Unlistable(const MemoryFolderFs& mem, std::string dir) : mem_(mem), dir_(std::move(dir)) {}
  Result<std::vector<std::string>> list(const std::string& dir) const override {
    if (dir == dir_) return unexpected(Error{EACCES, "cannot list " + dir + ": Permission denied"});
    return mem_.list(dir);
  }
  Result<struct stat> lstat(const std::string& path) const override { return mem_.lstat(path); }
  Result<std::string> readlink(const std::string& path) const override {
    return mem_.readlink(path);
  }
  Result<std::string> acl(const std::string& path) const override { return mem_.acl(path); }
  Result<UniqueFd> open(const std::string& path) const override { return mem_.open(path); }

 private:
  const MemoryFolderFs& mem_;
  std::string dir_;
};

TEST(FolderScan, AnUnlistableSourceIsAnErrorAndAnUnlistableSubfolderIsLeftOut) {
  const std::string model = test::st_file({{"w", "U8", {3}, "abc"}});
  MemoryFolderFs mem;
  ASSERT_TRUE(mem.add_dir("/m"));
  ASSERT_TRUE(mem.add_dir("/m/sub"));
  ASSERT_TRUE(mem.add_file("/m/a.safetensors", model));
  ASSERT_TRUE(mem.add_file("/m/sub/b.safetensors", model));
  // The source itself: an error (a rebuild keeps what it serves), never
  // an empty folder.
  Unlistable root(mem, "/m");
  FolderOptions opts;
  opts.fs = &root;
  auto t = Tree::for_directory("/m", opts);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().errnum, EACCES);
  EXPECT_NE(t.error().message.find("cannot list /m"), std::string::npos);
  // A folder inside: left out, the rest served.
  Unlistable sub(mem, "/m/sub");
  opts.fs = &sub;
  auto u = Tree::for_directory("/m", opts);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->tensor_count(), 1u);
}

}  // namespace
}  // namespace stfs
