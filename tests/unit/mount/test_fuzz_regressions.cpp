// Every file in tests/fuzz_regressions once crashed a fuzzer: parse it and
// build its whole tree; the test passes if nothing crashes (ASan/UBSan in CI).
#include <gtest/gtest.h>

#include <filesystem>

#include "stfs/mount/filesystem.hpp"
#include "stfs/source/model.hpp"
#include "stfs/namespace/tree.hpp"

namespace stfs {
namespace {

TEST(FuzzRegressions, EveryFileParsesOrFailsCleanly) {
  namespace fs = std::filesystem;
  int seen = 0;
  for (const auto& e : fs::directory_iterator(STFS_FUZZ_REGRESSIONS)) {
    if (e.path().extension() == ".md") continue;
    SCOPED_TRACE(e.path().string());
    ++seen;
    auto m = Model::open(e.path().string());
    if (!m) {
      EXPECT_FALSE(m.error().message.empty());
      continue;
    }
    auto t = Tree::for_model(std::move(m).value());
    if (!t) continue;
    auto f = Filesystem::create(std::move(t).value());
    ASSERT_TRUE(f.has_value());
    for (Ino ino = 1; ino <= (*f)->tree().node_count(); ++ino) {
      EXPECT_TRUE((*f)->getattr(ino).has_value());
    }
  }
  RecordProperty("files", seen);
}

}  // namespace
}  // namespace stfs
