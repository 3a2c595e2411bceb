#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS
# (default 60; as many targets at once as CPUs), seeded from the real
# corpus and from every file the unit tests parse. Crashes land in fuzz/findings/; turn each into a regression
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

# One target: its run's summary lines go to build-fuzz/log-TARGET.
run_target() {
  local t=$1 work=build-fuzz/corpus-$1 seeds=$SEEDS opts=(-max_len=262144)
  mkdir -p "$work"
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
  build-fuzz/fuzz/"$t" "$work" "$seeds" -max_total_time="$SECONDS_EACH" "${opts[@]}" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix=fuzz/findings/"$t"- 2>&1 |
    grep -E '^(#[0-9]+\s+DONE|INFO: seed|stat::|==|SUMMARY|Done)' >"build-fuzz/log-$t" || true
}

# libFuzzer runs one process a target: as many targets at once as CPUs.
jobs=$(nproc)
for ((i = 0; i < ${#TARGETS[@]}; i += jobs)); do
  batch=("${TARGETS[@]:i:jobs}")
  echo "fuzz: ${batch[*]} for ${SECONDS_EACH}s each, side by side"
  for t in "${batch[@]}"; do run_target "$t" & done
  wait
  for t in "${batch[@]}"; do
    echo "fuzz: $t"
    cat "build-fuzz/log-$t"
  done
done
for t in "${TARGETS[@]}"; do
  if ls fuzz/findings/"$t"-* >/dev/null 2>&1; then
    echo "fuzz: $t found crashes: $(ls fuzz/findings/"$t"-*)"
    exit 1
  fi
done
echo "fuzz: no findings"
