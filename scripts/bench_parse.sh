#!/usr/bin/env bash
# Header parsing cost: stfs's parser against Python's json.loads on the same
# generated 100,000-tensor header, side by side in one run, medians of 5.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
[ -x "$BUILD_DIR/bench/bench_parse" ] || scripts/setup.sh "$BUILD_DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BUILD_DIR/bench/bench_parse" --dump="$tmp/header.json"

csv=$("$BUILD_DIR/bench/bench_parse" --benchmark_repetitions=5 \
  --benchmark_report_aggregates_only=true --benchmark_format=csv 2>/dev/null)
# real_time, in ms (the benchmarks' unit)
stfs_ms=$(echo "$csv" | awk -F, '/BM_ParseHeader100k_median/ {print $3}')
cold_ms=$(echo "$csv" | awk -F, '/BM_ParseHeader100kColdParser_median/ {print $3}')
py_ms=$(/usr/bin/python3 - "$tmp/header.json" <<'PY'
import json, statistics, sys, time
data = open(sys.argv[1], "rb").read()
runs = []
for _ in range(5):
    t = time.perf_counter()
    json.loads(data)
    runs.append((time.perf_counter() - t) * 1e3)
print("%.3f" % statistics.median(runs))
PY
)
size=$(stat -c %s "$tmp/header.json")
echo "header: 100,000 tensors, $size bytes; $(nproc) cores; $(date -u +%F)"
printf '%-40s %10s\n' "parser" "median ms"
printf '%-44s %10.2f\n' "stfs HeaderParser, reused (simdjson)" "$stfs_ms"
printf '%-44s %10.2f\n' "stfs parse_header_json, fresh parser each" "$cold_ms"
printf '%-44s %10.2f\n' "python3 json.loads" "$py_ms"
awk -v a="$stfs_ms" -v c="$cold_ms" -v b="$py_ms" \
  'BEGIN { printf "speedup over json.loads: %.1fx reused, %.1fx fresh\n", b / a, b / c }'
