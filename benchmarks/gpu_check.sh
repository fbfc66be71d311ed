#!/usr/bin/env bash
# One call on a lent CUDA machine: environment, CUDA test suite (no interpreter), compute-sanitizer,
# a launch-parameter sweep and the benchmark grid.  Everything lands in $OUT (or --out DIR); the last
# lines printed are a short summary.  Budget: under 8 minutes on an H100.
#   bash benchmarks/gpu_check.sh [--out DIR] [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu_check}"
quick=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --quick) quick="--quick"; shift ;;
    *) echo "gpu_check: unknown argument $1 (expected --out DIR or --quick)"; exit 2 ;;
  esac
done
mkdir -p "$out"
if ! python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: torch sees no CUDA device here; this script needs a GPU (on CPU run: python -m pytest)"
  exit 2
fi
unset TRITON_INTERPRET
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 || export PYTHONPATH="$PWD"
declare -A status

step() {  # step NAME TIMEOUT COMMAND...: run, log to $out/NAME.log, remember the exit status
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date +%T))"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  status[$name]=${PIPESTATUS[0]}
}

step env 30 bash -c 'nvidia-smi; python3 -c "import torch, triton; print(\"torch\", torch.__version__, \"triton\", triton.__version__, \"cuda\", torch.version.cuda)"'
step tests 200 python3 -m pytest -q -n 8 -rfE -p no:cacheprovider tests -k "not aot" --durations=8
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$sanitizer" ]; then
  step memcheck 75 "$sanitizer" --tool memcheck --error-exitcode 1 --kernel-name kns=minp python3 benchmarks/sanitize_sample.py
  step racecheck 60 "$sanitizer" --tool racecheck --error-exitcode 1 --kernel-name kns=minp python3 benchmarks/sanitize_sample.py
else
  echo "compute-sanitizer not found"; status[memcheck]=127; status[racecheck]=127
fi
step tune 60 python3 -m benchmarks.tune --json "$out/tune.json"
step bench 170 python3 -m benchmarks.run $quick --out "$out" --no-progress

echo "=== summary"
for name in env tests memcheck racecheck tune bench; do
  printf '%-10s exit %s\n' "$name" "${status[$name]:-skipped}"
done
grep -E "passed|failed" "$out/tests.log" | tail -1
grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/memcheck.log" "$out/racecheck.log" 2>/dev/null
rc=0
for name in tests memcheck racecheck bench; do [ "${status[$name]:-0}" = 0 ] || rc=1; done
exit $rc
