// Every real file in the shared corpus validates with the tensor count and
// dtypes its MANIFEST.tsv lists. The corpus is found through STFS_CORPUS_DIR
// (CMake cache or environment); it may be absent in a user's clone, but
// STFS_REQUIRE_CORPUS=1 (set by CI) turns that skip into a failure.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "stfs/source/model.hpp"

namespace stfs {
namespace {

namespace fs = std::filesystem;

std::string corpus_dir() {
  if (const char* e = std::getenv("STFS_CORPUS_DIR"); e && *e) return e;
  return STFS_CORPUS_DIR;
}

bool corpus_required() {
  const char* e = std::getenv("STFS_REQUIRE_CORPUS");
  return e && std::string(e) == "1";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

TEST(Corpus, EveryManifestFileValidatesWithItsCountAndDtypes) {
  fs::path dir = corpus_dir();
  fs::path manifest = dir / "MANIFEST.tsv";
  if (!fs::exists(manifest)) {
    if (corpus_required()) FAIL() << "corpus missing at " << dir << " (STFS_REQUIRE_CORPUS=1)";
    GTEST_SKIP() << "no corpus at " << dir;
  }
  std::ifstream in(manifest);
  std::string line;
  std::getline(in, line);
  auto cols = split(line, '\t');
  ASSERT_GE(cols.size(), 8u);
  ASSERT_EQ(cols[0], "file");
  ASSERT_EQ(cols[6], "tensor_count");
  ASSERT_EQ(cols[7], "dtypes");
  int checked = 0;
  while (std::getline(in, line)) {
    auto f = split(line, '\t');
    if (f.size() < 8 || f[0].ends_with(".json")) continue;
    SCOPED_TRACE(f[0]);
    auto m = Model::open((dir / f[0]).string());
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(std::to_string(m->header().tensors.size()), f[6]);
    std::string want = f[7] == "-" ? "" : f[7];
    EXPECT_EQ(dtype_summary(m->header()), want);
    EXPECT_EQ(static_cast<std::uint64_t>(m->st().st_size), std::stoull(f[4]));
    ++checked;
  }
  EXPECT_GE(checked, 20);
}

TEST(Corpus, BundledSampleValidates) {
  auto m = Model::open(STFS_SAMPLE);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(dtype_summary(m->header()), "BF16,F16,F32");
  ASSERT_TRUE(m->header().has_metadata);
  EXPECT_EQ(m->header().metadata,
            (std::vector<std::pair<std::string, std::string>>{{"format", "pt"}}));
  EXPECT_LE(m->st().st_size, 2 * 1024 * 1024);
}

}  // namespace
}  // namespace stfs
