#!/usr/bin/env bash
# Builds (installing packages first if needed) and runs the whole test
# suite through ctest. Warnings are errors here.
# Usage: scripts/test.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${1:-build}
scripts/setup.sh "$BUILD_DIR" -DSTFS_WERROR=ON

# The shared corpus sits beside the repository; CI makes its absence fatal.
if [ -z "${STFS_CORPUS_DIR:-}" ] && [ -d ../shared/corpus/real ]; then
  export STFS_CORPUS_DIR=$(cd ../shared/corpus/real && pwd)
fi

cd "$BUILD_DIR"
ctest --output-on-failure --timeout 300 -j "$(nproc)"
