// `stfs --check`, --help and --version through the real binary: what a user
// sees on stdout and stderr, and the exit codes of DESIGN.md §1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "run.hpp"
#include "st_writer.hpp"

namespace stfs {
namespace {

using test::run;
using test::st_bytes;
using test::TempDir;

TEST(CheckCli, ValidFilePrintsOkLineAndExitsZero) {
  auto r = run({STFS_BIN, "--check", STFS_SAMPLE});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            std::string("OK ") + STFS_SAMPLE + ": safetensors, 21 tensors, 258 KiB (BF16,F16,F32)\n");
}

TEST(CheckCli, InvalidFileNamesTheRuleAndExitsTwo) {
  TempDir dir;
  std::string bad =
      dir.write("bad.safetensors",
                st_bytes(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", "abc"));
  auto r = run({STFS_BIN, "--check", bad});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "INVALID " + bad +
                       ": invalid offset for tensor `w`: [1, 3) does not start "
                       "at 0 [InvalidOffset]\n");
}

TEST(CheckCli, MixedFilesPrintOneLineEachInOrder) {
  TempDir dir;
  std::string ok = dir.write("ok.safetensors", st_bytes("{}"));
  std::string small = dir.write("small.safetensors", "abc");
  std::string missing = dir.path() + "/missing.safetensors";
  auto r = run({STFS_BIN, "--check", ok, small, missing, ok});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "OK " + ok + ": safetensors, 0 tensors, 0 B ()\n" + "INVALID " + small +
                       ": header too small: file has 3 bytes, fewer than 8 [HeaderTooSmall]\n" +
                       "INVALID " + missing + ": cannot open: No such file or directory\n" + "OK " +
                       ok + ": safetensors, 0 tensors, 0 B ()\n");
}

TEST(CheckCli, DirectoryIsInvalid) {
  TempDir dir;
  auto r = run({STFS_BIN, "--check", dir.path()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "INVALID " + dir.path() + ": cannot read: Is a directory\n");
}

TEST(CheckCli, UsageErrorsExitOne) {
  auto r = run({STFS_BIN, "--check"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--check needs at least one FILE"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  r = run({STFS_BIN, "--no-such-option"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown option '--no-such-option'"), std::string::npos) << r.err;
  r = run({STFS_BIN});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("Try 'stfs --help'"), std::string::npos) << r.err;
}

TEST(CheckCli, HelpAndVersion) {
  auto r = run({STFS_BIN, "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("Usage: stfs [options] SOURCE MOUNTPOINT"), std::string::npos);
  EXPECT_NE(r.out.find("--check"), std::string::npos);
  EXPECT_NE(r.out.find("Exit codes"), std::string::npos);
  r = run({STFS_BIN, "--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("stfs ", 0), 0u);
  // The libfuse it runs with decides what -o direct_io allows.
  EXPECT_NE(r.out.find(" (libfuse 3."), std::string::npos) << r.out;
}

TEST(CheckCli, EveryCorpusFileIsOk) {
  std::string dir =
      std::getenv("STFS_CORPUS_DIR") ? std::getenv("STFS_CORPUS_DIR") : STFS_CORPUS_DIR;
  if (!std::filesystem::exists(dir)) {
    const char* req = std::getenv("STFS_REQUIRE_CORPUS");
    if (req && std::string(req) == "1") FAIL() << "corpus missing at " << dir;
    GTEST_SKIP() << "no corpus at " << dir;
  }
  std::vector<std::string> argv = {STFS_BIN, "--check"};
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.path().extension() == ".safetensors") argv.push_back(e.path().string());
  }
  ASSERT_GE(argv.size(), 22u);
  auto r = run(argv);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), static_cast<long>(argv.size() - 2));
  EXPECT_EQ(r.out.find("INVALID"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace stfs
