#!/usr/bin/env bash
# The main job on the bundled sample model: build if needed, then validate it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/stfs ] || scripts/setup.sh build
SAMPLE=samples/tiny-llama.safetensors
build/stfs --check "$SAMPLE"
