#!/usr/bin/env bash
# The performance benchmark of issue 4 (not a test). Installs what it needs
# (squashfuse, squashfs-tools, fio), builds if needed, and prints one table
# of medians with ratios measured side by side in the same run.
# Usage: scripts/bench.sh [RUNS]   (default 5; needs root for drop_caches)
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in squashfuse squashfs-tools fio; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  "${SUDO[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends "${need[@]}"
fi
[ -x build/stfs ] || scripts/setup.sh build
exec /usr/bin/python3 scripts/bench.py --stfs build/stfs --runs "${1:-5}"
