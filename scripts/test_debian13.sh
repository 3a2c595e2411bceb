#!/usr/bin/env bash
# Builds and runs the whole suite, real mounts included, inside a Debian 13
# (trixie) chroot: gcc 14, libfuse 3.17, spdlog 1.15, simdjson 3.12,
# GoogleTest 1.16. Needs root (debootstrap, chroot, bind mounts).
#
# The chroot is made once with debootstrap and cached at $STFS_DEBIAN13_ROOT
# (default /var/tmp/stfs-debian13); scripts/setup.sh inside it installs the
# same packages as on Debian 12. /dev, /proc and /sys are bound for the
# run and unbound on exit, failure included; nothing stays mounted.
# Usage: scripts/test_debian13.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ROOT=${STFS_DEBIAN13_ROOT:-/var/tmp/stfs-debian13}
MIRROR=${STFS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SHARED=${STFS_SHARED_DIR:-$REPO/../shared}

if [ "$(id -u)" -ne 0 ]; then
  echo "test_debian13: needs root (debootstrap, chroot, mounts)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
fi

if [ ! -e "$ROOT/.stfs-ready" ]; then
  echo "test_debian13: creating the chroot at $ROOT (once)"
  rm -rf "$ROOT.tmp"
  debootstrap --variant=minbase trixie "$ROOT.tmp" "$MIRROR" >/dev/null
  rm -rf "$ROOT"
  mv "$ROOT.tmp" "$ROOT"
  touch "$ROOT/.stfs-ready"
fi

mounted=()
cleanup() {
  local rc=$?
  # Any FUSE mount a failed test left inside the chroot goes first.
  awk -v r="$ROOT/" 'index($2, r) == 1 && $3 ~ /^fuse/ {print $2}' /proc/mounts |
    while read -r m; do fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" || true; done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount -l "${mounted[$i]}" 2>/dev/null || true
  done
  exit "$rc"
}
trap cleanup EXIT INT TERM
bind() {  # bind SRC DEST [mount args]
  local src=$1 dest=$2
  shift 2
  mkdir -p "$dest"
  mount "$@" "$src" "$dest"
  mounted+=("$dest")
}
bind /dev "$ROOT/dev" --bind
bind /dev/pts "$ROOT/dev/pts" --bind
bind proc "$ROOT/proc" -t proc
bind /sys "$ROOT/sys" --bind
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
# fusermount3 -u reads /etc/mtab, which a booted Debian has (systemd-tmpfiles
# makes the link) and a minbase chroot does not.
[ -e "$ROOT/etc/mtab" ] || ln -s ../proc/self/mounts "$ROOT/etc/mtab"

# A fresh copy of the tree (tracked files and work in progress, no build
# dirs) and of ../shared beside it, as CI lays them out.
rm -rf "$ROOT/work"
mkdir -p "$ROOT/work/main"
tar -C "$REPO" --exclude='./build*' --exclude=./.git --exclude=./fuzz/findings -cf - . |
  tar -C "$ROOT/work/main" -xf -
if [ -d "$SHARED" ]; then
  # Its real path: ../shared may itself be a link, which would dangle (or
  # loop) inside the chroot.
  cp -a "$(cd "$SHARED" && pwd -P)" "$ROOT/work/shared"
fi

echo "test_debian13: building and testing in Debian $(cat "$ROOT/etc/debian_version")"
# The takeover tests' long runs (30 s of outside kills, 20 s of a SIGKILL
# every 200 ms, 60 remounts) are the release stage's; here a third to a half
# of each takes the same paths through libfuse 3.17.
chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 STFS_REQUIRE_CORPUS="${STFS_REQUIRE_CORPUS:-}" \
  STFS_REQUIRE_FUSE="${STFS_REQUIRE_FUSE:-}" CI="${CI:-}" STFS_REQUIRE_SAFETENSORS=1 \
  STFS_OUTSIDE_KILL_SECONDS="${STFS_OUTSIDE_KILL_SECONDS:-10}" \
  STFS_KILL_SECONDS="${STFS_KILL_SECONDS:-10}" STFS_REMOUNT_CYCLES="${STFS_REMOUNT_CYCLES:-20}" \
  /bin/bash -c 'cd /work/main && scripts/test.sh'
