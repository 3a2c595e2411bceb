#!/usr/bin/env bash
# Builds (installing packages first if needed) and runs the whole test
# suite, real mounts included, through ctest. Warnings are errors here.
#
# Usage: scripts/test.sh [--sanitize|--tsan] [BUILD_DIR]
#   --sanitize   Debug build with AddressSanitizer and UBSan (default
#                BUILD_DIR build-asan); any report fails the run.
#   --tsan       Debug build with ThreadSanitizer (build-tsan), running the
#                concurrency tests: many readers, signals and faults under load.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=(-DSTFS_WERROR=ON)
BUILD_DIR=build
if [ "${1:-}" = "--sanitize" ]; then
  shift
  BUILD_DIR=build-asan
  extra+=(-DSTFS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DSTFS_BUILD_BENCH=OFF)
  export STFS_SANITIZER=asan
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0}
  # The release run kills from outside for 30 s, SIGKILLs every 200 ms for
  # 20 s and remounts 60 times; here a third to a half of that takes every
  # path under the sanitizer.
  export STFS_OUTSIDE_KILL_SECONDS=${STFS_OUTSIDE_KILL_SECONDS:-10}
  export STFS_KILL_SECONDS=${STFS_KILL_SECONDS:-10}
  export STFS_REMOUNT_CYCLES=${STFS_REMOUNT_CYCLES:-20}
fi
filter=()
if [ "${1:-}" = "--tsan" ]; then
  shift
  BUILD_DIR=build-tsan
  extra+=(-DSTFS_TSAN=ON -DCMAKE_BUILD_TYPE=Debug -DSTFS_BUILD_BENCH=OFF)
  export STFS_SANITIZER=tsan
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
  export STFS_OUTSIDE_KILL_SECONDS=${STFS_OUTSIDE_KILL_SECONDS:-10}
  export STFS_KILL_SECONDS=${STFS_KILL_SECONDS:-10}
  export STFS_REMOUNT_CYCLES=${STFS_REMOUNT_CYCLES:-20}
  filter=(-R 'takeover\.|mount\.SampleMount|mount\.Truncation|mount\.Lifecycle|faults\.SourceChanges|faults\.DaemonDeath|faults\.Cycles|folders\.|views\.')
fi
BUILD_DIR=${1:-$BUILD_DIR}
scripts/setup.sh "$BUILD_DIR" "${extra[@]}"

# The shared corpus sits beside the repository; CI makes its absence fatal.
if [ -z "${STFS_CORPUS_DIR:-}" ] && [ -d ../shared/corpus/real ]; then
  STFS_CORPUS_DIR=$(cd ../shared/corpus/real && pwd)
  export STFS_CORPUS_DIR
fi

cd "$BUILD_DIR"
ctest --output-on-failure --timeout 300 -j "$(nproc)" "${filter[@]}"
