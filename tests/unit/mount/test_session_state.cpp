// The FUSE session's state without a mount: the generation that answers
// for a held inode, open files, where reads run, and the kernel's -o list.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "st_writer.hpp"
#include "stfs/mount/session_state.hpp"

namespace stfs {
namespace {

using test::TempDir;

std::shared_ptr<Filesystem> folder_fs(const std::string& root) {
  auto t = Tree::for_directory(root);
  EXPECT_TRUE(t) << t.error().message;
  auto f = Filesystem::create(std::move(t).value());
  EXPECT_TRUE(f);
  return std::shared_ptr<Filesystem>(std::move(f).value());
}

TEST(HeldInodes, AReplacedFileIsAnsweredFromItsGenerationUntilForgotten) {
  TempDir dir;
  dir.write("a.txt", "one");
  auto first = folder_fs(dir.path());
  LiveFs live(first, /*dynamic=*/true);
  HeldInodes held(live);
  const Ino old_ino = first->tree().find_child(kRootIno, "a.txt");
  ASSERT_NE(old_ino, 0u);
  held.remember(old_ino, first);
  held.remember(old_ino, first);
  // The file is replaced: a new generation, a new inode number.
  dir.write("a.txt", "two, longer");
  auto second = folder_fs(dir.path());
  live.replace(second);
  ASSERT_NE(second->tree().find_child(kRootIno, "a.txt"), old_ino);
  EXPECT_EQ(held.answering(old_ino), first);
  EXPECT_EQ(held.answering(kRootIno), second);  // the current tree has it
  held.forget(old_ino, 1);
  EXPECT_EQ(held.answering(old_ino), first);
  held.forget(old_ino, 1);
  EXPECT_EQ(held.answering(old_ino), second);  // forgotten: the current one
}

TEST(HeldInodes, AFileSourceKeepsNothing) {
  TempDir dir;
  dir.write("a.txt", "x");
  auto fs = folder_fs(dir.path());
  LiveFs live(fs, /*dynamic=*/false);
  HeldInodes held(live);
  held.remember(12345, fs);
  live.replace(folder_fs(dir.path()));
  EXPECT_EQ(held.answering(12345), live.current());
}

TEST(SessionState, OnlyAFileSourceWithoutDirectIoOpensWithoutMessages) {
  TempDir dir;
  dir.write("a.txt", "x");
  auto fs = folder_fs(dir.path());
  LiveFs fixed(fs, /*dynamic=*/false), changing(fs, /*dynamic=*/true);
  MountOptions plain, direct;
  direct.direct_io = true;
  EXPECT_TRUE(SessionState(fixed, plain).stateless_opens);
  // A folder or polled file keeps a generation per open file.
  EXPECT_FALSE(SessionState(changing, plain).stateless_opens);
  // direct_io is a flag of each open.
  EXPECT_FALSE(SessionState(fixed, direct).stateless_opens);
}

TEST(OpenFiles, KeepTheirGenerationAndAreFreedAtTheEnd) {
  TempDir dir;
  dir.write("a.txt", "x");
  auto fs = folder_fs(dir.path());
  std::weak_ptr<Filesystem> weak = fs;
  {
    OpenFiles files;
    const std::uint64_t a = files.open(fs);
    files.open(fs);  // never released: freed with `files`
    ASSERT_NE(files.find(a), nullptr);
    EXPECT_EQ(files.find(a), fs);
    EXPECT_EQ(files.count(), 2u);
    files.release(a);
    EXPECT_EQ(files.find(a), nullptr);
    EXPECT_EQ(files.count(), 1u);
    files.release(a);  // twice: nothing
    EXPECT_EQ(files.count(), 1u);
    fs.reset();
    EXPECT_FALSE(weak.expired());
  }
  EXPECT_TRUE(weak.expired());
}

// A handle carries no pointer: one this session did not issue (an earlier
// daemon's, after a takeover) is not found, whatever its bits.
TEST(OpenFiles, HandlesAreNotPointersAndForeignOnesAreRefused) {
  TempDir dir;
  dir.write("a.txt", "x");
  auto fs = folder_fs(dir.path());
  OpenFiles files;
  OpenFiles earlier;
  const std::uint64_t theirs = earlier.open(fs);
  EXPECT_NE(files.tag(), earlier.tag());
  EXPECT_EQ(files.find(theirs), nullptr);
  files.release(theirs);  // ignored
  const std::uint64_t mine = files.open(fs);
  EXPECT_EQ(mine >> 32, files.tag());
  EXPECT_NE(files.find(mine), nullptr);
  // Same tag, a slot never issued, or past every chunk.
  EXPECT_EQ(files.find(mine + 1), nullptr);
  EXPECT_EQ(files.find((std::uint64_t{files.tag()} << 32) | 0xffffffffu), nullptr);
  EXPECT_EQ(files.find(0), nullptr);
  EXPECT_EQ(files.find(reinterpret_cast<std::uint64_t>(&fs)), nullptr);
  // Slots are reused after release, under the same tag.
  files.release(mine);
  EXPECT_EQ(files.open(fs), mine);
}

TEST(ReadDispatch, RunsInlineUpToTheLimitThenOnThePool) {
  ReadDispatch none(0, 2);
  none.start();
  std::atomic<int> done{0};
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  none.run([&] {
    on_caller = std::this_thread::get_id() == caller;
    ++done;
  });
  none.drain();
  EXPECT_EQ(done, 1);
  EXPECT_FALSE(on_caller);
  ReadDispatch one(1, 2);
  one.start();
  one.run([&] {
    on_caller = std::this_thread::get_id() == caller;
    // A second read while this one runs goes to the pool.
    one.run([&] { ++done; });
  });
  EXPECT_TRUE(on_caller);
  one.drain();
  EXPECT_EQ(done, 2);
}

TEST(ReadDispatch, RunsInlineUntilStarted) {
  // Before the sandbox the pool has no threads: reads run on the caller.
  ReadDispatch d(0, 2);
  const auto caller = std::this_thread::get_id();
  bool on_caller = false;
  d.run([&] { on_caller = std::this_thread::get_id() == caller; });
  EXPECT_TRUE(on_caller);
  d.drain();
}

TEST(KernelMountOptions, ReadOnlyWithTheSourceEscaped) {
  MountOptions o;
  o.source = "/m/a,b\\c";
  o.fuse_options = {"allow_other"};
  EXPECT_EQ(kernel_mount_options(o),
            "ro,nodev,nosuid,default_permissions,subtype=stfs,fsname=/m/a\\,b\\\\c,allow_other");
  o.fsname = "model";
  EXPECT_EQ(kernel_mount_options(o),
            "ro,nodev,nosuid,default_permissions,subtype=stfs,fsname=model,allow_other");
}

}  // namespace
}  // namespace stfs
