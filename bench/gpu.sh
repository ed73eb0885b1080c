#!/usr/bin/env bash
# bench/gpu.sh — the GPU benchmark and test run, for a machine with an NVIDIA GPU,
# nvcc, CMake and PyTorch but no Node.js:
#   1. builds the native core, tests and benchmarks with nvcc (build-gpu/),
#   2. runs the native tests (CUDA vs CPU vs float64 references),
#   3. times each CUDA kernel (native/bench/bench_*.cpp, vp_bench_<name>) and the
#      PyTorch peer of each on the same GPU (bench/peers/gpu_torch.py),
#   4. prints one table and one JSON line per case with the ratio (bench/gpu_report.py).
# Usage: bench/gpu.sh [--quick] [--cpu] [--out DIR]
#   --cpu: no GPU here: build, test and run the CPU parts (what CI-like machines can show).
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=""; DEVICE=cuda; OUT="${OUT:-bench/results}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=--quick ;;
    --cpu) DEVICE=cpu ;;
    --out) OUT="$2"; shift ;;
  esac
  shift
done
mkdir -p "$OUT"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
LOG="$OUT/gpu-$STAMP.log"
RAW="$OUT/gpu-$STAMP.raw.jsonl"
PY=${PYTHON:-python3}
exec > >(tee "$LOG") 2>&1

echo "== machine"; uname -a; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
CUDA_FLAG=on; [ "$DEVICE" = cpu ] && CUDA_FLAG=auto
GEN=""; command -v ninja >/dev/null && GEN="-G Ninja"
ARCHS=${VP_CUDA_ARCHS:-"80-real;90-real;90-virtual"}

echo "== build (VP_CUDA=$CUDA_FLAG)"
cmake -S . -B build-gpu $GEN -DCMAKE_BUILD_TYPE=Release -DVP_CUDA=$CUDA_FLAG "-DCMAKE_CUDA_ARCHITECTURES=$ARCHS" || exit 1
cmake --build build-gpu -j "$(nproc)" || exit 1

echo "== native tests"
ctest --test-dir build-gpu --output-on-failure -j "$(nproc)"
TEST_RC=$?

echo "== benchmarks ($DEVICE)"
: > "$RAW"
DTYPES="float32"; [ "$DEVICE" = cuda ] && DTYPES="bfloat16 float32"
for exe in build-gpu/vp_bench_*; do
  [ -x "$exe" ] || continue
  for dt in $DTYPES; do
    "$exe" --device "$DEVICE" --dtype "$dt" $QUICK | tee -a "$RAW" || echo "{\"bench\":\"$(basename "$exe")\",\"error\":\"exit $?\"}" >> "$RAW"
  done
done

echo "== peers (PyTorch on $DEVICE)"
$PY bench/peers/gpu_torch.py --device "$DEVICE" $QUICK --cases "$RAW" >> "$RAW" || echo "peer script failed"

echo "== report"
$PY bench/gpu_report.py "$RAW" | tee "$OUT/gpu-$STAMP.json.txt"
echo "native tests exit code: $TEST_RC"
exit $TEST_RC
