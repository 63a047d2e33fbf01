#!/usr/bin/env bash
# CUDA build, CUDA tests and GPU benchmarks in one go, within about 8 minutes on one GPU.
#
#     bash bench/gpu_check.sh OUT_DIR
#
# Every step runs under its own timeout (and a global deadline); a failing step is logged with
# its exit code and the script goes on. OUT_DIR receives one log per step, summary.txt (step,
# exit code, seconds) and the benchmark CSV/PNG files. PYTHON selects the interpreter (default:
# python); it needs a CUDA build of PyTorch, numpy, scipy, pytest and scikit-build-core.
set -euo pipefail

OUT_DIR=${1:?usage: bench/gpu_check.sh OUT_DIR}
PY=${PYTHON:-python}
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
SUMMARY="$OUT_DIR/summary.txt"
: >"$SUMMARY"
cd "$REPO"

# step NAME LIMIT_S COMMAND...: run COMMAND with a timeout, log it, record its exit code.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET_S - SECONDS))
  if ((left < 10)); then
    echo "$name skipped (time budget spent)" | tee -a "$SUMMARY"
    return 0
  fi
  ((limit > left)) && limit=$left
  local start=$SECONDS rc=0
  echo "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1 || rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$SUMMARY"
  tail -n 25 "$OUT_DIR/$name.log"
}

step environment 30 bash -c "nvidia-smi; nproc; $PY -c 'import sys, torch; \
print(torch.__version__, torch.version.cuda, torch.cuda.is_available()); \
sys.exit(0 if torch.cuda.is_available() else 1)'"

step build 220 env SGFD_EXT_CUDA=on MAX_JOBS="$(nproc)" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  "$PY" -m pip install --no-build-isolation --no-deps -Cbuild-dir=/tmp/build-sgfd-gpu \
  -Ccmake.define.SGFD_EXT_CUDA=on -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90 -e "$REPO"

# CUDA tests are the "cuda"-parametrised cases and the test_cuda_* functions of these files.
step tests_cuda 60 "$PY" -m pytest -q -rs -k cuda python_tests/test_topk_eval.py \
  python_tests/test_student_fd.py python_tests/test_bpr.py

step bench_topk_eval 60 "$PY" bench/bench_topk_eval.py --device cuda --out-dir "$OUT_DIR"
step bench_student_fd 50 "$PY" bench/bench_student_fd.py --device cuda --out-dir "$OUT_DIR"
step bench_student_fd_bf16 30 "$PY" bench/bench_student_fd.py --device cuda --dtype bfloat16 \
  --out-dir "$OUT_DIR/bf16"
step bench_bpr 30 "$PY" bench/bench_bpr.py --device cuda --out-dir "$OUT_DIR"
step bench_train_epoch 100 "$PY" bench/bench_train_epoch.py --device cuda --batches 8 \
  --rounds 3 --out-dir "$OUT_DIR"

echo "== summary ($SECONDS s in all)"
cat "$SUMMARY"
if grep -q -e "rc=[1-9]" -e skipped "$SUMMARY"; then
  exit 1
fi
