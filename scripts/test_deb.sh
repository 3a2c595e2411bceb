#!/usr/bin/env bash
# Builds the Debian package with cpack, installs it with dpkg -i, checks the
# units with systemd-analyze verify, mounts through `mount -t stfs` from the
# package, and removes the package again. Prints "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAILED: $1"; fail=$((fail + 1)); }

# Packages from a build configured for /usr and from one left at the default
# prefix (/usr/local): cpack must give the same package from either.
# The README's build (scripts/setup.sh) is such a build: reuse it when there.
default_build=build-deb-default
if [ -f build/CMakeCache.txt ] && grep -q '^CMAKE_INSTALL_PREFIX:PATH=/usr/local$' build/CMakeCache.txt; then
  default_build=build
else
  cmake -S . -B "$default_build" -DSTFS_BUILD_TESTS=OFF -DSTFS_BUILD_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
fi
cmake --build "$default_build" -j "$(nproc)" >/dev/null || exit 1
rm -f "$default_build"/stfs_*.deb
if (cd "$default_build" && cpack -G DEB >/dev/null); then
  ok "cpack -G DEB from a default-prefix build ($default_build)"
  ddeb=$(ls "$default_build"/stfs_*.deb | head -1)
  listing=$(dpkg-deb -c "$ddeb")
  grep -q "./usr/sbin/mount.stfs -> ../bin/stfs" <<<"$listing" && ok "default build: relative helper link" \
    || bad "default build: helper link: $(grep mount.stfs <<<"$listing")"
  grep -q "./usr/share/man/man8/mount.fuse.stfs.8 -> mount.stfs.8" <<<"$listing" \
    && ok "default build: man link" || bad "default build: man link"
  dpkg-deb --fsys-tarfile "$ddeb" | tar -xOf - ./lib/systemd/system/stfs@.service |
    grep -q "^ExecStart=/usr/bin/stfs " && ok "default build: unit runs /usr/bin/stfs" \
    || bad "default build: unit ExecStart"
else
  bad "cpack -G DEB from a default-prefix build"
fi

cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DSTFS_BUILD_TESTS=OFF \
  -DSTFS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build build-deb -j "$(nproc)" >/dev/null || exit 1
(cd build-deb && cpack -G DEB >/dev/null) || exit 1
deb=$(ls build-deb/stfs_*.deb | head -1)
deps=$(dpkg-deb -f "$deb" Depends)
echo "package: $deb"
echo "depends: $deps"
for d in fuse3 libfuse3-3; do
  [[ "$deps" == *"$d"* ]] && ok "depends on $d" || bad "depends on $d"
done

work=$(mktemp -d /tmp/stfs-deb.XXXXXX)
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
  dpkg -r stfs >/dev/null 2>&1
  # Put back the helpers of a prior `cmake --install build`, if any.
  [ -x build/stfs ] && cmake --install build >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/mnt"
if dpkg -i "$deb" >/dev/null; then ok "dpkg -i"; else bad "dpkg -i"; fi
[ "$(readlink -f /usr/sbin/mount.stfs)" = /usr/bin/stfs ] && ok "mount.stfs -> /usr/bin/stfs" || bad "mount.stfs link"
[ -f /lib/systemd/system/stfs@.service ] && ok "unit installed" || bad "unit installed"
cp systemd/mnt-model.mount "$work/"
if systemd-analyze verify /lib/systemd/system/stfs@.service "$work/mnt-model.mount"; then
  ok "systemd-analyze verify"
else
  bad "systemd-analyze verify"
fi
# The hardened unit's exposure (README "Security model"): 9.6 before.
score=$(systemd-analyze security --offline=yes /lib/systemd/system/stfs@.service 2>/dev/null |
  awk '/Overall exposure level/ {print $(NF-2)}')
if [ -n "$score" ] && awk -v s="$score" 'BEGIN {exit !(s <= 3.0)}'; then
  ok "systemd-analyze security: $score (at most 3.0)"
else
  bad "systemd-analyze security: '$score', want at most 3.0"
fi
ls /usr/share/man/man1/stfs.1* /usr/share/man/man8/mount.stfs.8* >/dev/null 2>&1 \
  && ok "man pages installed" || bad "man pages installed"
if mount -t stfs "$(pwd)/samples/tiny-llama.safetensors" "$work/mnt"; then
  ok "mount -t stfs"
  findmnt -n -o FSTYPE,SOURCE "$work/mnt" | grep -q "fuse.stfs $(pwd)/samples/tiny-llama.safetensors" \
    && ok "findmnt shows fuse.stfs and the source" || bad "findmnt"
  cmp <(cat "$work/mnt/__metadata__.json") <(printf '{"format":"pt"}\n') && ok "reads" || bad "reads"
  # An upgrade (the same package again: postinst configure with the old
  # version) gives the mount a new daemon, and it still serves.
  sup=
  for p in $(pgrep -x stfs-supervise); do grep -qF "$work/mnt" "/proc/$p/cmdline" && sup=$p; done
  old=$(pgrep -P "$sup")
  if dpkg -i "$deb" >/dev/null; then ok "dpkg -i over itself"; else bad "dpkg -i over itself"; fi
  new=$(pgrep -P "$sup")
  [ -n "$new" ] && [ "$new" != "$old" ] && ok "the upgrade restarted the daemon ($old -> $new)" \
    || bad "the upgrade restarted the daemon ($old -> '$new')"
  cmp <(cat "$work/mnt/__metadata__.json") <(printf '{"format":"pt"}\n') && ok "reads after the upgrade" \
    || bad "reads after the upgrade"
  umount "$work/mnt" && ok "umount" || bad "umount"
else
  bad "mount -t stfs"
fi
dpkg -r stfs >/dev/null && ok "dpkg -r" || bad "dpkg -r"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
