// Parsing cost of a generated header with 100,000 tensors (issue 2).
// scripts/bench_parse.sh runs this beside Python's json.loads on the same
// header and prints the ratio.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <unistd.h>

#include "stfs/source/model.hpp"
#include "stfs/format/safetensors.hpp"
#include "stfs/namespace/tree.hpp"

namespace {

// Same shape as a real checkpoint: dotted names, F16 [64, 64] each.
std::string make_header_json(int n) {
  std::string h = R"({"__metadata__":{"format":"pt"})";
  const std::uint64_t bytes = 64 * 64 * 2;
  for (int i = 0; i < n; ++i) {
    std::uint64_t b = bytes * static_cast<std::uint64_t>(i);
    h += ",\"model.layers." + std::to_string(i / 10) + ".mlp.proj_" + std::to_string(i % 10) +
         R"(.weight":{"dtype":"F16","shape":[64,64],"data_offsets":[)" + std::to_string(b) + "," +
         std::to_string(b + bytes) + "]}";
  }
  return h + "}";
}

constexpr int kTensors = 100'000;

void BM_ParseHeader100k(benchmark::State& state) {
  // As the daemon does: the header read into a buffer with the parser's
  // padding after it.
  static const std::string buf = make_header_json(kTensors) + std::string(stfs::kJsonPadding, ' ');
  const std::string_view json(buf.data(), buf.size() - stfs::kJsonPadding);
  const std::uint64_t file_size = 8 + json.size() + 64ULL * 64 * 2 * kTensors;
  // One parser kept across iterations, as Python keeps its allocator's
  // arenas: both sides measure a warm steady state.
  stfs::HeaderParser parser;
  for (auto _ : state) {
    auto r = parser.parse_padded(json, file_size);
    if (!r) state.SkipWithError(r.error().message.c_str());
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * json.size()));
}
BENCHMARK(BM_ParseHeader100k)->Unit(benchmark::kMillisecond);

// A fresh parser per header, as `stfs --check` on a single file does: its
// buffers are allocated and faulted in every time.
void BM_ParseHeader100kColdParser(benchmark::State& state) {
  static const std::string buf = make_header_json(kTensors) + std::string(stfs::kJsonPadding, ' ');
  const std::string_view json(buf.data(), buf.size() - stfs::kJsonPadding);
  const std::uint64_t file_size = 8 + json.size() + 64ULL * 64 * 2 * kTensors;
  for (auto _ : state) {
    auto r = stfs::parse_header_json_padded(json, file_size);
    if (!r) state.SkipWithError(r.error().message.c_str());
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_ParseHeader100kColdParser)->Unit(benchmark::kMillisecond);

}  // namespace

// The whole namespace for the same 100,000 tensors: open + parse + tree
// (name mapping, sorting, __header__.json), as a mount does before it
// appears.
void BM_ModelAndTree100k(benchmark::State& state) {
  // Written once, removed at exit (the function runs several times).
  struct TempFile {
    std::string path;
    ~TempFile() { std::remove(path.c_str()); }
  };
  static const TempFile file{[] {
    std::string json = make_header_json(kTensors);
    while (json.size() % 8) json += ' ';
    std::string p = "/tmp/stfs-bench-tree-" + std::to_string(getpid()) + ".safetensors";
    std::ofstream f(p, std::ios::binary);
    std::uint64_t n = json.size();
    for (int i = 0; i < 8; ++i) f.put(static_cast<char>((n >> (8 * i)) & 0xff));
    f << json;
    f.seekp(static_cast<std::streamoff>(8 + n + 64ULL * 64 * 2 * kTensors - 1));
    f.put('\0');
    return p;
  }()};
  const std::string& path = file.path;
  for (auto _ : state) {
    auto m = stfs::Model::open(path);
    if (!m) {
      state.SkipWithError(m.error().message.c_str());
      break;
    }
    auto t = stfs::Tree::for_model(std::move(m).value());
    if (!t) {
      state.SkipWithError(t.error().message.c_str());
      break;
    }
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_ModelAndTree100k)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  // --dump=PATH writes the header so other parsers can time the same bytes.
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--dump=", 0) == 0) {
      std::ofstream(a.substr(7), std::ios::binary) << make_header_json(kTensors);
      return 0;
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
