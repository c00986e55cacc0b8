#!/usr/bin/env bash
# Checks the CUDA kernels of star_ext on a GPU machine, in one command:
#
#   scripts/gpu_check.sh [REPORT_DIR]        (default: ./gpu_report)
#
# Needs torch with CUDA, nvcc and compute-sanitizer; no network. Steps:
#   build      pip install --no-build-isolation --no-deps .   (the torch already installed)
#   env        python -m star_ext, nvidia-smi, nvcc --version
#   tests      pytest -m cuda on the test files that have CUDA cases (with
#              tests/test_cuda_compile.py: torch.compile of each op and of the network,
#              a training step captured in CUDA graphs, autocast, a second device)
#   smoke      scripts/cuda_op_smoke.py (all ops, all dtypes, vs the float64 reference,
#              and the extras of scripts/cuda_op_extras.py)
#   memcheck   compute-sanitizer --tool memcheck on the smoke script
#   racecheck  compute-sanitizer --tool racecheck on the smoke script. Racecheck sees
#              shared-memory hazards only, so it checks the kernels that use shared
#              memory: keypoint_pool_forward_kernel and keypoint_pool_backward_kernel
#              (keypoint_pool.cu) and gem_backward_kernel (guided_gem_pool.cu, its
#              per-warp sums). The graph-attention kernels use no shared memory (warp
#              shuffles; the transposed template spares them atomics), so racecheck has
#              nothing to see there; no kernel uses atomics, and global-memory hazards are
#              left to memcheck and the smoke script's bitwise-reproducibility cases
#   bench      benchmarks/bench_ops.py in two runs (fused, eager reference, PyG;
#              then torch.compile of the reference, whose compile time is long),
#              bench_model.py on CUDA (training step, STAR vs baseline), JSON +
#              benchmarks/report.py
#   profile    benchmarks/profile_ops.py (GPU kernel time vs wall time per op)
#   train      benchmarks/bench_train.py on CUDA: the real trainer with data loading at
#              the paper's shapes (STAR and the baseline network), s per HITSZ-VCM epoch
# Each step writes REPORT_DIR/<step>.log. A failed step does not stop the
# others; the script ends with a summary and exits 1 if any step failed.
# GPU_CHECK_STEP_TIMEOUT (seconds, default none) stops any step that runs longer
# (it then counts as failed), so a hang cannot eat a time-limited GPU lease.
#
# Python commands run from REPORT_DIR, outside the checkout, so that the
# installed star_ext (with its compiled _C) is imported rather than the
# source folder star_ext/. Environment: PYTHON (default python3),
# TORCH_CUDA_ARCH_LIST (default: torch's choice for the visible GPU),
# GPU_CHECK_SKIP (space-separated step names to skip, e.g. "bench"),
# BENCH_SELECT (pytest -k expression of the benchmarks; default: the CUDA ones
# and PyG's GATConv, "cuda or pyg"; "" runs the CPU ones too).
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPORT_ARG=${1:-./gpu_report}
mkdir -p "$REPORT_ARG"
REPORT=$(cd "$REPORT_ARG" && pwd)
PY=${PYTHON:-python3}
SKIP=" ${GPU_CHECK_SKIP:-} "
BENCH_SELECT=${BENCH_SELECT-cuda or pyg}
STEP_TIMEOUT=${GPU_CHECK_STEP_TIMEOUT:-0}

export PYTHONUNBUFFERED=1
export STAR_EXT_REQUIRED=1  # a missing or stale _C is an error, not a silent fallback

STEPS=()
declare -A STATUS SECONDS_TAKEN

# run_step NAME COMMAND...: runs COMMAND in REPORT_DIR, output to NAME.log (and the terminal).
run_step() {
  local name=$1
  shift
  if [[ "$SKIP" == *" $name "* ]]; then
    STEPS+=("$name")
    STATUS[$name]=skipped
    SECONDS_TAKEN[$name]=0
    return 0
  fi
  local log="$REPORT/$name.log"
  echo
  echo "=== $name: $*"
  local start=$SECONDS
  (cd "$REPORT" && timeout --kill-after=15 "$STEP_TIMEOUT" bash -c '"$@"' step "$@") 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  STEPS+=("$name")
  SECONDS_TAKEN[$name]=$((SECONDS - start))
  if [[ $rc -eq 0 ]]; then
    STATUS[$name]=ok
  else
    STATUS[$name]="FAILED (exit $rc)"
  fi
  echo "=== $name: ${STATUS[$name]} in ${SECONDS_TAKEN[$name]} s (log: $log)"
}

build() {
  cd "$REPO" && "$PY" -m pip install --no-build-isolation --no-deps -v .
}

env_info() {
  "$PY" - <<'EOF'
import os, star_ext, torch
print(f"star_ext imported from {os.path.dirname(star_ext.__file__)}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
EOF
  "$PY" -m star_ext || return 1
  "$PY" - <<'EOF' || return 1
import star_ext
info = star_ext.build_info()
missing = [op for op, dev in info["kernels"].items() if not dev["cuda"]]
if not info["extension_loaded"] or missing:
    raise SystemExit(f"no CUDA kernel for {missing}: the build did not include csrc/cuda")
print("every op has a CUDA kernel")
EOF
  nvidia-smi || true
  nvcc --version || true
  compute-sanitizer --version || true
}

sanitizer() {
  local tool=$1
  shift
  # Without the caching allocator every tensor is its own allocation, so an
  # access past its end is outside any allocation and memcheck sees it.
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" --error-exitcode 1 \
    --print-limit 20 "$PY" "$REPO/scripts/cuda_op_smoke.py" "$@"
}

racecheck() {
  # only the ops whose kernels use shared memory (see the header)
  sanitizer racecheck --ops keypoint_pool,guided_gem_pool --dtypes float32,float16 --quick
}

pytest_in_repo() {
  "$PY" -m pytest -c "$REPO/pyproject.toml" --rootdir "$REPO" -p no:cacheprovider "$@"
}

# The test files with CUDA cases only: collecting the others needs the whole
# test extra (rtmlib, for one), which a GPU machine may not have.
cuda_tests() {
  local files
  mapfile -t files < <(grep -l -E "mark\.cuda|op_cases" "$REPO"/tests/test_*.py)
  pytest_in_repo "${files[@]}" -m cuda -v -rs --junitxml="$REPORT/tests.xml"
}

bench() {
  local rc=0 select=${BENCH_SELECT:-cuda or not cuda}
  pytest_in_repo "$REPO/benchmarks/bench_ops.py" --benchmark-only --benchmark-json="$REPORT/bench_ops.json" \
    -k "($select) and not compiled" || rc=1
  pytest_in_repo "$REPO/benchmarks/bench_ops.py" --benchmark-only --benchmark-json="$REPORT/bench_compiled.json" \
    -k "($select) and compiled" || rc=1
  pytest_in_repo "$REPO/benchmarks/bench_model.py" --benchmark-only --benchmark-json="$REPORT/bench_model.json" \
    -k "$select" || rc=1
  local files=()
  for f in "$REPORT"/bench_ops.json "$REPORT"/bench_compiled.json; do [[ -s $f ]] && files+=("$f"); done
  [[ ${#files[@]} -gt 0 ]] && "$PY" "$REPO/benchmarks/report.py" "${files[@]}" --markdown | tee "$REPORT/benchmarks.md"
  return $rc
}

train_bench() {
  pytest_in_repo "$REPO/benchmarks/bench_train.py" --benchmark-only -s -k cuda \
    --benchmark-json="$REPORT/bench_train.json"
}

export REPO REPORT PY BENCH_SELECT
export -f build env_info sanitizer racecheck pytest_in_repo cuda_tests bench train_bench

run_step build build
run_step env env_info
run_step tests cuda_tests
run_step smoke "$PY" "$REPO/scripts/cuda_op_smoke.py"
run_step memcheck sanitizer memcheck
run_step racecheck racecheck
run_step bench bench
run_step profile "$PY" "$REPO/benchmarks/profile_ops.py"
run_step train train_bench

failed=0
echo
echo "=== summary (report folder: $REPORT)"
printf '%-10s %-20s %8s\n' step status seconds | tee "$REPORT/summary.txt"
for name in "${STEPS[@]}"; do
  printf '%-10s %-20s %8s\n' "$name" "${STATUS[$name]}" "${SECONDS_TAKEN[$name]}" | tee -a "$REPORT/summary.txt"
  case "${STATUS[$name]}" in ok | skipped) ;; *) failed=1 ;; esac
done
if [[ $failed -ne 0 ]]; then
  echo "gpu_check: some steps FAILED" | tee -a "$REPORT/summary.txt"
  exit 1
fi
echo "gpu_check: all steps passed" | tee -a "$REPORT/summary.txt"
