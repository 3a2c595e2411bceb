#!/usr/bin/env bash
# Bounded stress run (not a CI test): 32 threads read random ranges of a
# 512 MiB model through a mount for DURATION seconds (default 60); every
# byte is checked against the source read directly, and the daemon must
# stay up. Prints the figures for docs/RELIABILITY.md.
# Usage: scripts/stress.sh [DURATION] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
THREADS=${2:-32}
[ -x build/stfs ] || scripts/setup.sh build >/dev/null
work=$(mktemp -d /tmp/stfs-stress.XXXXXX)
pid=""
cleanup() {
  if mountpoint -q "$work/mnt" 2>/dev/null; then
    fusermount3 -u "$work/mnt" 2>/dev/null || fusermount3 -uz "$work/mnt" 2>/dev/null || true
  fi
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    sleep 1; kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/mnt"
/usr/bin/python3 - "$work/model.safetensors" <<'PY'
import json, os, struct, sys
# 32 tensors of 16 MiB, BF16, bytes from a fast deterministic generator.
n, size = 32, 16 << 20
header, off = {}, 0
for i in range(n):
    header["model.layers.%d.mlp.weight" % i] = {"dtype": "BF16", "shape": [size // 2],
                                               "data_offsets": [off, off + size]}
    off += size
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for i in range(n):
        f.write(os.urandom(size))
PY
build/stfs -f "$work/model.safetensors" "$work/mnt" 2>"$work/daemon.log" &
pid=$!
for _ in $(seq 100); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
mountpoint -q "$work/mnt"
/usr/bin/python3 - "$work/model.safetensors" "$work/mnt" "$DURATION" "$THREADS" "$pid" <<'PY'
import json, os, random, struct, sys, threading, time
src, mnt, duration, nthreads, pid = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
start = 8 + n
names = sorted(header)
stats = {"reads": 0, "bytes": 0, "bad": 0, "errors": 0}
lock = threading.Lock()
deadline = time.monotonic() + duration

def worker(seed):
    rng = random.Random(seed)
    sfd = os.open(src, os.O_RDONLY)
    fds = {}
    r = b = bad = err = 0
    while time.monotonic() < deadline:
        name = rng.choice(names)
        b0, e0 = header[name]["data_offsets"]
        size = e0 - b0
        off = rng.randrange(size)
        length = rng.choice([1, 4096, 65536, 1 << 20, rng.randrange(1, 3 << 20)])
        fd = fds.get(name) or fds.setdefault(name, os.open(os.path.join(mnt, name), os.O_RDONLY))
        try:
            got = os.pread(fd, length, off)
        except OSError:
            err += 1
            continue
        want = os.pread(sfd, min(length, size - off), start + b0 + off)
        r += 1; b += len(got)
        if got != want:
            bad += 1
    with lock:
        stats["reads"] += r; stats["bytes"] += b; stats["bad"] += bad; stats["errors"] += err

t0 = time.monotonic()
threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.monotonic() - t0
alive = os.path.exists("/proc/%d" % pid)
with open("/proc/%d/status" % pid) as f:
    status = {l.split(":")[0]: l.split(":", 1)[1].strip() for l in f}
print("stress: %d threads, %.0f s, %d reads, %.1f GiB checked (%.2f GiB/s), %d wrong, %d errors, daemon %s, RssAnon %s, VmPTE %s"
      % (nthreads, elapsed, stats["reads"], stats["bytes"] / 2**30, stats["bytes"] / 2**30 / elapsed,
         stats["bad"], stats["errors"], "up" if alive else "DEAD", status.get("RssAnon"), status.get("VmPTE")))
sys.exit(0 if stats["bad"] == 0 and stats["errors"] == 0 and alive else 1)
PY
fusermount3 -u "$work/mnt"
wait "$pid"
echo "stress: daemon exited $?"
