#!/usr/bin/env bash
# Installs the Debian packages stfs needs (Debian 12 or 13), then configures
# and builds.
# Usage: scripts/setup.sh [BUILD_DIR] [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${1:-build}
shift || true

PACKAGES=(
  build-essential cmake pkg-config
  libfuse3-dev fuse3            # the FUSE library and fusermount3
  libselinux1-dev               # Debian 13's fuse3.pc names libselinux (harmless on 12)
  libsimdjson-dev               # header JSON
  libspdlog-dev                 # logging
  libseccomp-dev                # the daemon's system-call allow-list (sandbox)
  libgtest-dev                  # unit and integration tests
  libbenchmark-dev              # bench/bench_parse
  python3 python3-numpy         # sample generator and test helpers
  attr                          # getfattr, used by the run script and tests
  valgrind                      # the leak test of a whole mount session
  acl                           # setfacl, for the access-rule tests
  python3-torch                 # a real client: the README's torch recipes are tested
  bindfs squashfuse squashfs-tools  # FUSE sources standing in for NFS, sshfs, s3 mounts
)

# Hugging Face's own safetensors library, a real loader for
# tests/integration/test_loaders.py: packaged from Debian 13 on (the test
# skips on Debian 12 and says so).
if [ "$(. /etc/os-release 2>/dev/null; echo "${VERSION_ID%%.*}")" -ge 13 ] 2>/dev/null; then
  PACKAGES+=(python3-safetensors)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
  echo "setup: installing ${missing[*]}"
  "${SUDO[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends "${PACKAGES[@]}"
fi

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build "$BUILD_DIR" -j "$(nproc)"
echo "setup: built $BUILD_DIR/stfs"

# The default build is also installed: stfs in /usr/local/bin, the mount(8)
# helpers mount.stfs and mount.fuse.stfs in /usr/sbin, the systemd unit and
# the man pages. Other build dirs (sanitizer, fuzz) are never installed.
if [ "$BUILD_DIR" = build ] && [ "${STFS_NO_INSTALL:-0}" != 1 ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
  "${SUDO[@]}" cmake --install "$BUILD_DIR" >/dev/null
  echo "setup: installed stfs, mount.stfs and mount.fuse.stfs (cmake --install $BUILD_DIR)"
fi
