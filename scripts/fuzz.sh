#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS
# (default 60), seeded from the real corpus and from every file the unit
# tests parse. Crashes land in fuzz/findings/; turn each into a regression
# file under tests/fuzz_regressions/.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_header fuzz_tree fuzz_folder fuzz_gguf)

# clang, and libclang-rt-14-dev for libFuzzer and the sanitizer runtimes.
if ! command -v clang++ >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null |
    grep -q "install ok installed"; then
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  "${SUDO[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends \
    clang libclang-rt-14-dev
fi
# The unit tests make seeds. Configured as scripts/test.sh configures it, so
# the test run that follows in CI reuses this build instead of redoing it.
scripts/setup.sh build -DSTFS_WERROR=ON >/dev/null
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DSTFS_FUZZ=ON \
  -DSTFS_BUILD_TESTS=OFF -DSTFS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${TARGETS[@]}"
# fuzz_folder's own build: the same, without trace-cmp. Comparison tracing
# took a quarter of each run of this target (perf) and, over 45 s runs,
# bought no coverage: the folder's structure is names and records, not
# magic values to solve. The parsers keep it (fuzz_header, fuzz_gguf,
# fuzz_tree). docs/RELIABILITY.md has the numbers.
if [[ " ${TARGETS[*]} " == *" fuzz_folder "* ]]; then
  cmake -S . -B build-fuzz-folder -DCMAKE_CXX_COMPILER=clang++ -DSTFS_FUZZ=ON \
    -DCMAKE_CXX_FLAGS=-fno-sanitize-coverage=trace-cmp \
    -DSTFS_BUILD_TESTS=OFF -DSTFS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz-folder -j "$(nproc)" --target fuzz_folder
fi

SEEDS=build-fuzz/seeds
mkdir -p "$SEEDS" fuzz/findings
corpus=${STFS_CORPUS_DIR:-../shared/corpus/real}
if [ -d "$corpus" ]; then
  find "$corpus" -name '*.safetensors' -exec cp -f {} "$SEEDS/" \;
fi
cp -f samples/*.safetensors tests/fuzz_regressions/* "$SEEDS/" 2>/dev/null || true
# fuzz_gguf's seeds: every GGUF file the unit tests parse, and the
# integration tests' writer's files.
GGUF_SEEDS=build-fuzz/seeds-gguf
mkdir -p "$GGUF_SEEDS"
STFS_SEED_DIR=$(pwd)/$SEEDS STFS_GGUF_SEED_DIR=$(pwd)/$GGUF_SEEDS build/tests/unit_tests >/dev/null
python3 tests/integration/gguf_writer.py --seeds "$GGUF_SEEDS" 
# fuzz_folder reads records, not safetensors files: its seeds are folders.
FOLDER_SEEDS=build-fuzz/seeds-folder
mkdir -p "$FOLDER_SEEDS"
if [ -d "$corpus/sharded-safetensorsjl" ]; then
  python3 fuzz/make_folder_seed.py "$corpus/sharded-safetensorsjl" "$FOLDER_SEEDS/sharded"
  python3 fuzz/make_folder_seed.py "$corpus/sharded-safetensorsjl" "$FOLDER_SEEDS/sharded-link" --link
fi
python3 fuzz/make_folder_seed.py samples "$FOLDER_SEEDS/sample"
python3 fuzz/make_folder_seed.py samples "$FOLDER_SEEDS/sample-tree" --tree
# A folder of the corpus's small files, which fits fuzz_folder's max_len whole.
small=$(mktemp -d)
trap 'rm -rf "$small"' EXIT
if [ -d "$corpus" ]; then
  find "$corpus" -maxdepth 1 -name '*.safetensors' -size -6k -exec cp -f {} "$small/" \;
fi
printf '{"model_type": "llama"}\n' > "$small/config.json"
python3 fuzz/make_folder_seed.py "$small" "$FOLDER_SEEDS/small"
python3 fuzz/make_folder_seed.py "$small" "$FOLDER_SEEDS/small-tree" --tree

for t in "${TARGETS[@]}"; do
  work=build-fuzz/corpus-$t
  mkdir -p "$work"
  echo "fuzz: $t for ${SECONDS_EACH}s"
  seeds=$SEEDS
  opts=(-max_len=262144)
  if [ "$t" = fuzz_folder ]; then
    # A folder of small files: its structure is what this target fuzzes
    # (file bodies are fuzz_header's), and entropic scheduling's per-run
    # bookkeeping of its ~11,000 features costs as much as the run itself
    # (docs/RELIABILITY.md).
    seeds=$FOLDER_SEEDS
    opts=(-max_len=16384 -entropic=0)
  elif [ "$t" = fuzz_gguf ]; then
    seeds=$GGUF_SEEDS
  fi
  bin=build-fuzz/fuzz/$t
  [ "$t" = fuzz_folder ] && bin=build-fuzz-folder/fuzz/$t
  "$bin" "$work" "$seeds" -max_total_time="$SECONDS_EACH" "${opts[@]}" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix=fuzz/findings/$t- 2>&1 | grep -E '^(#[0-9]+\s+DONE|INFO: seed|stat::|==|SUMMARY|Done)' || true
  if ls fuzz/findings/$t-* >/dev/null 2>&1; then
    echo "fuzz: $t found crashes: $(ls fuzz/findings/$t-*)"
    exit 1
  fi
done
echo "fuzz: no findings"
