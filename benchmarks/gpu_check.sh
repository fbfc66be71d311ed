#!/usr/bin/env bash
# One call on a lent CUDA machine, under 600 s on an H100: environment, the full CUDA test suite, compute-sanitizer
# memcheck and racecheck on benchmarks/sanitizer_workload.py, a short launch sweep, the host-cost benchmark and the
# quick benchmark grid.  Logs and results land in --out DIR; the last lines printed are a summary.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--tar FILE]
#
#   --out DIR   where logs and results go (default: $OUT when set, else ~/.cache/minp_kernels/gpu_check)
#   --tar FILE  also pack DIR into FILE (a .tar.gz outside DIR) after every step, so a call cut short still returns
#               everything in one file (the device tool returns at most 8 files):
#               bash benchmarks/gpu_check.sh --out /tmp/gpu_check --tar "$OUT/gpu_check.tar.gz"
#
# Time limit of each step (seconds; total 550, leaving the rest of a 600 s call for start-up and packing):
#   env 15 | tests 200 | memcheck 90 | racecheck 60 | tune 30 | host 25 | bench 130 (grid stops starting points at 95 s)
# Without a CUDA device it exits 2 with a message and runs nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
out="${OUT:-$HOME/.cache/minp_kernels/gpu_check}"
tarball=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --tar) tarball="$2"; shift 2 ;;
    *) echo "gpu_check: unknown argument $1 (expected --out DIR or --tar FILE)"; exit 2 ;;
  esac
done
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: torch sees no CUDA device here; this script needs a GPU (on CPU run: python -m pytest)"
  exit 2
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ -n "$tarball" ]; then
  mkdir -p "$(dirname "$tarball")"
  tarball="$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")"
  case "$tarball" in "$out"/*) echo "gpu_check: --tar FILE must lie outside --out DIR"; exit 2 ;; esac
fi
unset TRITON_INTERPRET
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
declare -A status

step() {  # step NAME TIMEOUT COMMAND...: run, log to $out/NAME.log, remember the exit status, repack
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s, $(date +%T))"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  status[$name]=${PIPESTATUS[0]}
  [ "${status[$name]}" = 124 ] && echo "gpu_check: $name stopped at its ${limit}s limit" | tee -a "$out/$name.log"
  if [ -n "$tarball" ]; then tar czf "$tarball" -C "$out" .; fi
}

step env 15 bash -c "nvidia-smi; $PY -m benchmarks.report; compute-sanitizer --version 2>/dev/null | tail -1"
# Every test but the AOT compile check (it needs no GPU and runs in CI) and the vLLM engine test (CI runs it in a
# virtual environment of its own; the GPU image has no vLLM).
step tests 200 "$PY" -m pytest -q -n 8 -rfE -p no:cacheprovider tests --ignore=tests/test_aot.py \
  --ignore=tests/test_vllm_engine.py --durations=10
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$sanitizer" ]; then
  step memcheck 90 "$sanitizer" --tool memcheck --error-exitcode 1 --kernel-name kns=minp \
    "$PY" -m benchmarks.sanitizer_workload
  step racecheck 60 "$sanitizer" --tool racecheck --error-exitcode 1 --kernel-name kns=minp \
    "$PY" -m benchmarks.sanitizer_workload
else
  echo "gpu_check: compute-sanitizer not found"; status[memcheck]=127; status[racecheck]=127
fi
step tune 30 "$PY" -m benchmarks.tune --quick --rep 50 --json "$out/tune.json"
step host 25 "$PY" -m benchmarks.host --out "$out" --calls 200 --repeats 5
step bench 130 "$PY" -m benchmarks.run --quick --budget 95 --out "$out" --no-progress

echo "=== summary"
for name in env tests memcheck racecheck tune host bench; do
  printf '%-10s exit %s\n' "$name" "${status[$name]:-skipped}"
done
grep -E "[0-9]+ (passed|failed)" "$out/tests.log" | tail -1
grep -hE "ERROR SUMMARY|RACECHECK SUMMARY" "$out/memcheck.log" "$out/racecheck.log" 2>/dev/null
grep -E "^note: time budget" "$out/bench.log"
echo "results in $out${tarball:+ (packed: $tarball)}"
rc=0
for name in tests memcheck racecheck host bench; do [ "${status[$name]:-0}" = 0 ] || rc=1; done
exit $rc
