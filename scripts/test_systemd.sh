#!/usr/bin/env bash
# Runs the hardened stfs@.service under a real systemd: a Debian 12 root
# booted with systemd-nspawn -b (this VM's PID 1 is not systemd). Checks
# that `systemctl start` reaches active (Type=notify) with the status text,
# that `systemctl reload` and a SIGKILL of the daemon under readers give
# them no error (the supervisor takes the mount over),
# that the mount serves the right bytes with the sandbox on, that `stop`
# unmounts, that Restart=on-failure brings it back after a SIGKILL with no
# stale mount, and that `mount -t stfs` and an fstab line with
# x-systemd.automount work on the same root. Prints "N passed, N failed".
#
# The root is made once with debootstrap and cached at $STFS_SYSTEMD_ROOT
# (default /var/tmp/stfs-debian12-systemd); the package is the one
# scripts/test_deb.sh builds (build-deb/), built here if missing. The
# container is stopped and every mount it made is gone on exit, failure
# included. Needs root.
# Usage: scripts/test_systemd.sh
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ROOT=${STFS_SYSTEMD_ROOT:-/var/tmp/stfs-debian12-systemd}
MIRROR=${STFS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
pass=0 fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAILED: $1"; fail=$((fail + 1)); }

if [ "$(id -u)" -ne 0 ]; then
  echo "test_systemd: needs root (debootstrap, systemd-nspawn)" >&2
  exit 1
fi
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if ((${#need[@]})); then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi

# The package of this tree (an incremental build when test_deb.sh ran).
if [ ! -f build-deb/CMakeCache.txt ]; then
  cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DSTFS_BUILD_TESTS=OFF \
    -DSTFS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
fi
cmake --build build-deb -j "$(nproc)" >/dev/null || exit 1
rm -f build-deb/stfs_*.deb
(cd build-deb && cpack -G DEB >/dev/null) || exit 1
deb=$(ls build-deb/stfs_*.deb | head -1)

if [ ! -e "$ROOT/.stfs-ready" ]; then
  echo "test_systemd: creating the Debian 12 root at $ROOT (once)"
  rm -rf "$ROOT.tmp"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,fuse3 bookworm \
    "$ROOT.tmp" "$MIRROR" >/dev/null || exit 1
  rm -rf "$ROOT"
  mv "$ROOT.tmp" "$ROOT"
  touch "$ROOT/.stfs-ready"
fi

# The package, installed with its dependencies from Debian's archive.
cp "$deb" "$ROOT/tmp/stfs.deb"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
if ! chroot "$ROOT" dpkg -s stfs >/dev/null 2>&1 ||
   ! cmp -s "$deb" "$ROOT/var/tmp/stfs-installed.deb"; then
  chroot "$ROOT" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends /tmp/stfs.deb' >/dev/null || exit 1
  cp "$deb" "$ROOT/var/tmp/stfs-installed.deb"
fi
mkdir -p "$ROOT/models" "$ROOT/etc/stfs"
cp samples/tiny-llama.safetensors "$ROOT/models/tiny.safetensors"
printf 'SOURCE=/models/tiny.safetensors\nOPTIONS=-o allow_other\n' >"$ROOT/etc/stfs/mnt-model.conf"
# systemd supports automount units only where /dev/autofs exists: a kernel
# built without autofs has none (this VM's, from 2026-12-02). nspawn then
# cannot bind it, and the automount checks are skipped, saying why.
[ -e /dev/autofs ] || modprobe autofs4 >/dev/null 2>&1 || true
autofs=()
[ -e /dev/autofs ] && autofs=(--bind=/dev/autofs)
sed -i '/x-systemd.automount/d' "$ROOT/etc/fstab" 2>/dev/null
if ((${#autofs[@]})); then
  echo "/models/tiny.safetensors /mnt/auto stfs ro,allow_other,x-systemd.automount,nofail 0 0" \
    >>"$ROOT/etc/fstab"
fi
# No getty or network in the way of "running".
ln -sf /dev/null "$ROOT/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$ROOT/etc/systemd/system/systemd-networkd-wait-online.service"

log=$(mktemp /tmp/stfs-nspawn.XXXXXX)
systemd-nspawn -q -D "$ROOT" -b --register=no --keep-unit --bind=/dev/fuse "${autofs[@]}" \
  --console=pipe >"$log" 2>&1 </dev/null &
nspawn=$!
cleanup() {
  if [ -n "${init:-}" ]; then
    nsenter -t "$init" -a systemctl stop stfs@mnt-model.service mnt-auto.mount >/dev/null 2>&1
    nsenter -t "$init" -a umount -l /mnt/manual >/dev/null 2>&1
  fi
  kill -TERM "$nspawn" 2>/dev/null  # nspawn powers the container off
  for _ in $(seq 1 100); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$nspawn" 2>/dev/null
  wait "$nspawn" 2>/dev/null
  rm -f "$log"
}
trap cleanup EXIT INT TERM

# The container's systemd: nspawn's child.
init=
for _ in $(seq 1 200); do
  init=$(pgrep -P "$nspawn" -x systemd | head -1)
  [ -n "$init" ] && break
  sleep 0.1
done
if [ -z "$init" ]; then
  bad "systemd-nspawn -b boots systemd"
  cat "$log"
  echo "$pass passed, $fail failed"
  exit 1
fi
in_ct() { nsenter -t "$init" -a "$@"; }
# Early in the boot systemctl finds no systemd yet ("offline": no
# /run/systemd/system) or cannot reach its bus (nothing printed); once it
# can, --wait returns when the boot is done: "running", or "degraded" if a
# unit of the container failed.
state=
start=$SECONDS
deadline=$((start + 120))
while [ "$SECONDS" -lt "$deadline" ]; do
  state=$(timeout $((deadline - SECONDS)) nsenter -t "$init" -a systemctl is-system-running \
    --wait 2>/dev/null)
  case "$state" in "" | offline) sleep 0.2 ;; *) break ;; esac
done
case "$state" in
  running | degraded) ok "systemd booted in the container ($state)" ;;
  *) bad "systemd booted in the container (is-system-running: '$state' after $((SECONDS - start)) s)" ;;
esac

want=$(python3 - "$REPO/samples/tiny-llama.safetensors" <<'EOF'
import json, struct, sys, hashlib
d = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", d[:8])[0]
h = json.loads(d[8:8 + n])
b, e = h["lm_head.weight"]["data_offsets"]
print(hashlib.sha256(d[8 + n + b:8 + n + e]).hexdigest())
EOF
)
serves() {  # serves MOUNTPOINT: the tensor's bytes through the mount
  [ "$(in_ct sha256sum "$1/lm_head.weight" 2>/dev/null | cut -d' ' -f1)" = "$want" ]
}
stfs_mounts() { in_ct findmnt -n -t fuse.stfs -o TARGET 2>/dev/null | grep -cx "$1"; }
unit=stfs@mnt-model.service

if in_ct systemctl start "$unit"; then ok "systemctl start $unit"; else bad "systemctl start"; fi
[ "$(in_ct systemctl is-active "$unit")" = active ] && ok "active (Type=notify)" || bad "active"
in_ct systemctl show -p StatusText --value "$unit" | grep -q "^serving .* tensors from /models/tiny.safetensors on /mnt/model" \
  && ok "status text" || bad "status text: $(in_ct systemctl show -p StatusText --value "$unit")"
serves /mnt/model && ok "the mount serves the right bytes" || bad "the mount serves"
pid=$(in_ct systemctl show -p MainPID --value "$unit")
daemon_of() {  # daemon_of SUPERVISOR: its stfs child (no procps in the root)
  in_ct sh -c 'for s in /proc/[0-9]*/stat; do
      read -r p c _ pp _ <"$s" 2>/dev/null || continue
      [ "$pp" = "$1" ] && [ "$c" = "(stfs)" ] && echo "$p"
    done' _ "$1" | head -1
}
if [ -n "$pid" ] && [ "$pid" != 0 ]; then
  [ "$(in_ct cat "/proc/$pid/comm")" = stfs-supervise ] && ok "the main process is the supervisor" \
    || bad "the main process is $(in_ct cat "/proc/$pid/comm")"
  status=$(in_ct cat "/proc/$pid/status")
  # The supervisor keeps what unmounting needs (the unit bounds it to CAP_SYS_ADMIN).
  grep -q "^NoNewPrivs:[[:space:]]*1" <<<"$status" && grep -q "^Seccomp:[[:space:]]*2" <<<"$status" &&
    grep -q "^CapEff:[[:space:]]*0000000000200000" <<<"$status" \
    && ok "the supervisor is confined (NoNewPrivs 1, Seccomp 2, CAP_SYS_ADMIN only)" \
    || bad "supervisor confinement: $(grep -E 'NoNewPrivs|Seccomp|CapEff' <<<"$status" | tr '\n' ' ')"
  status=$(in_ct cat "/proc/$(daemon_of "$pid")/status")
  grep -q "^NoNewPrivs:[[:space:]]*1" <<<"$status" && grep -q "^Seccomp:[[:space:]]*2" <<<"$status" &&
    grep -q "^CapEff:[[:space:]]*0000000000000000" <<<"$status" \
    && ok "the daemon is confined (NoNewPrivs 1, Seccomp 2, no capabilities)" \
    || bad "confinement: $(grep -E 'NoNewPrivs|Seccomp|CapEff' <<<"$status" | tr '\n' ' ')"
fi

# Readers on the host, through the container's root, while the daemon is
# replaced: every read must succeed with the right bytes. Each read drops
# the file's cached pages first, so it reaches the daemon.
readers() {  # readers SECONDS: prints "reads N errors E wrong W"; 0 if clean
  python3 - "/proc/$init/root/mnt/model/lm_head.weight" "$want" "$1" <<'PYEOF'
import hashlib, os, sys, threading, time
path, want, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
stats = {"reads": 0, "errors": 0, "wrong": 0}
lock = threading.Lock()
def loop():
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with open(path, "rb") as f:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                ok = hashlib.sha256(f.read()).hexdigest() == want
            with lock:
                stats["reads"] += 1
                stats["wrong"] += not ok
        except OSError as e:
            with lock:
                stats["errors"] += 1
            print("error:", e, file=sys.stderr)
ts = [threading.Thread(target=loop) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("reads %(reads)d errors %(errors)d wrong %(wrong)d" % stats)
sys.exit(0 if stats["reads"] and not stats["errors"] and not stats["wrong"] else 1)
PYEOF
}
old=$(daemon_of "$pid")
readers 4 >"$log.readers" 2>&1 &
rpid=$!
sleep 1
in_ct systemctl reload "$unit" && ok "systemctl reload" || bad "systemctl reload"
if wait "$rpid"; then ok "reload under readers: $(tail -1 "$log.readers")"
else bad "reload under readers: $(tail -3 "$log.readers" | tr '\n' ' ')"; fi
new=$(daemon_of "$pid")
[ -n "$new" ] && [ "$new" != "$old" ] && [ "$(in_ct systemctl show -p MainPID --value "$unit")" = "$pid" ] \
  && ok "reload: a new daemon ($old -> $new), the same supervisor" || bad "reload: daemon $old -> '$new'"
readers 4 >"$log.readers" 2>&1 &
rpid=$!
sleep 1
in_ct sh -c "kill -KILL $new"  # no procps in the root: the shell's kill
if wait "$rpid"; then ok "SIGKILL of the daemon under readers: $(tail -1 "$log.readers")"
else bad "SIGKILL of the daemon under readers: $(tail -3 "$log.readers" | tr '\n' ' ')"; fi
after=$(daemon_of "$pid")
[ "$(in_ct systemctl is-active "$unit")" = active ] && [ -n "$after" ] && [ "$after" != "$new" ] \
  && [ "$(in_ct systemctl show -p MainPID --value "$unit")" = "$pid" ] \
  && ok "still active, the same supervisor, a new daemon ($new -> $after)" \
  || bad "after the daemon's SIGKILL: active=$(in_ct systemctl is-active "$unit"), daemon $new -> '$after'"
rm -f "$log.readers"

# SIGKILL of the supervisor: Restart=on-failure (RestartSec=2) brings it
# back, one mount only.
in_ct systemctl kill -s KILL --kill-who=main "$unit"
back=
for _ in $(seq 1 100); do
  new=$(in_ct systemctl show -p MainPID --value "$unit")
  if [ -n "$new" ] && [ "$new" != 0 ] && [ "$new" != "$pid" ] &&
     [ "$(in_ct systemctl is-active "$unit")" = active ]; then
    back=1
    break
  fi
  sleep 0.1
done
[ -n "$back" ] && ok "restarted after SIGKILL" || bad "restarted after SIGKILL"
serves /mnt/model && ok "serves after the restart" || bad "serves after the restart"
[ "$(stfs_mounts /mnt/model)" = 1 ] && ok "one mount, no stale one" \
  || bad "mounts on /mnt/model after the restart: $(stfs_mounts /mnt/model)"

in_ct systemctl stop "$unit" && ok "systemctl stop" || bad "systemctl stop"
[ "$(stfs_mounts /mnt/model)" = 0 ] && ok "stop unmounts" || bad "still mounted after stop"

# Each directive that gives the service a mount namespace of its own hides
# the mount from the host: that is why the unit has none (README). Tried
# one at a time with a drop-in; the mount must not be seen outside.
dropin=/etc/systemd/system/$unit.d
for directive in ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
                 PrivateMounts=yes ProtectKernelTunables=yes ProtectKernelModules=yes \
                 ProtectKernelLogs=yes ProtectControlGroups=yes ProtectProc=invisible; do
  in_ct mkdir -p "$dropin"
  printf '[Service]\n%s\nRestart=no\n' "$directive" | in_ct tee "$dropin/ns.conf" >/dev/null
  in_ct systemctl daemon-reload
  in_ct systemctl start "$unit" >/dev/null 2>&1
  active=$(in_ct systemctl is-active "$unit")
  main=$(in_ct systemctl show -p MainPID --value "$unit")
  inside=$(in_ct cat "/proc/$main/mountinfo" 2>/dev/null | grep -c " /mnt/model .* fuse.stfs ")
  seen=$(stfs_mounts /mnt/model)
  in_ct systemctl stop "$unit" >/dev/null 2>&1
  if [ "$active" = active ] && [ "$inside" = 1 ] && [ "$seen" = 0 ]; then
    ok "$directive: the service mounts, but only in its own namespace"
  elif [ "$directive" = PrivateDevices=yes ] && [ "$active" != active ] && [ "$seen" = 0 ]; then
    ok "$directive: no /dev/fuse in the private /dev, the service cannot mount at all"
  else
    bad "$directive: active=$active, mounted inside=$inside, seen on the host=$seen"
  fi
done
in_ct rm -rf "$dropin"
in_ct systemctl daemon-reload

# mount -t stfs and the fstab automount, on the same root.
in_ct mkdir -p /mnt/manual
if in_ct mount -t stfs /models/tiny.safetensors /mnt/manual; then
  serves /mnt/manual && ok "mount -t stfs serves" || bad "mount -t stfs serves"
  in_ct umount /mnt/manual && ok "umount" || bad "umount"
else
  bad "mount -t stfs"
fi
in_ct systemctl daemon-reload
if ((${#autofs[@]})); then
  in_ct systemctl start mnt-auto.automount && ok "fstab x-systemd.automount unit" \
    || bad "mnt-auto.automount"
  serves /mnt/auto && ok "the automount mounts on first access" || bad "automount serves"
  in_ct systemctl stop mnt-auto.mount mnt-auto.automount
  [ "$(stfs_mounts /mnt/auto)" = 0 ] && ok "automount stopped, unmounted" || bad "automount unmount"
else
  echo "skipped: fstab x-systemd.automount (3 checks): this kernel has no autofs (/dev/autofs)"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
