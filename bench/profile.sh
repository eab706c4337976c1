#!/usr/bin/env bash
# A system-wide CPU profile of one path of scripts/bench.sh (issue 11; docs/PERFORMANCE.md "Where the remaining
# gap goes"): `perf record -a -e cpu-clock` over a quick run of that path, then the share of every process and,
# with bench/perf_crates.py, where the api's or the worker's samples go by crate.
#   bench/profile.sh intake|e2e|poll|rebuild [OUT]   (OUT: target/profile-<path>; perf from Debian's linux-perf)
# Takes the same BENCH_* knobs as scripts/bench.sh (BENCH_BIN_DIR to profile prebuilt binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
path=${1:?usage: bench/profile.sh intake|e2e|poll|rebuild [OUT]}
out=${2:-target/profile-$path}
mkdir -p "$out"
perf record -a -F 499 -e cpu-clock -g -o "$out/perf.data" >"$out/perf.log" 2>&1 &
perf_pid=$!
trap 'kill -INT $perf_pid 2>/dev/null || true' EXIT
BENCH_QUICK=${BENCH_QUICK:-1} BENCH_DURATION=${BENCH_DURATION:-10} BENCH_E2E_JOBS=${BENCH_E2E_JOBS:-10000} \
  BENCH_PATHS=$path BENCH_OUT="$out/bench" scripts/bench.sh | tee "$out/bench.txt"
kill -INT $perf_pid
wait $perf_pid || true
trap - EXIT
echo "==> CPU by thread name (all processes):"
perf report -i "$out/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep '%' | head -15
for bin in ehealth-api ehealth-worker ehealth-admin; do
  for pid in $(perf script -i "$out/perf.data" -F pid,comm 2>/dev/null | awk -v b="$bin" '$2 == b {print $1}' | sort -u); do
    echo "==> $bin (pid $pid) by crate:"
    bench/perf_crates.py "$out/perf.data" --pid "$pid" | head -20
  done
done
