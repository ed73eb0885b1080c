#!/usr/bin/env bash
# bench/gpu.sh — the GPU build, test and benchmark run, for a machine with an
# NVIDIA GPU, nvcc, CMake and PyTorch (CUDA) but no Node.js. It says OK only
# when the CUDA native tests were built and ran on the GPU and passed, every
# kernel and training step was timed against its PyTorch peer, and the attention
# accuracy check passed; anything else is a non-zero exit with the reason.
#
#   0. preflight (nothing is built before it passes; each miss exits 3 at once):
#      doctest's header, a visible GPU, nvcc, cmake, PyTorch with CUDA, numpy
#   1. build (plain CMake, build-gpu/, the GPU's own architecture): vp_tests and
#      the drivers native/bench/bench_{gemm,attention,infonce,grpo,pack,train_step}.cpp
#   2. native tests: only the CUDA test cases (every one has "cuda" in its name:
#      vp_tests -tc='*cuda*'), with VP_TEST_REQUIRE_CUDA=1 so that a case that
#      finds no GPU fails instead of skipping; among them the 1-rank NCCL
#      all-reduce smoke, with the loader's libnccl.so.2 or else PyTorch's
#   2b. where Node.js and node_modules are present: the addon built with CUDA and
#      test/pretrained-cuda.test.ts (pretrained models on CUDA against the CPU);
#      elsewhere a line saying it did not run
#   3. our kernels and training steps, timed by the drivers (CUDA events or the
#      host clock; warm-up, repetitions, the median): bfloat16 and float32 (--quick:
#      bfloat16 only) for the kernels; the VideoLM's SFT and RL steps in float32
#      (tokens/s; the driver writes its parameters and batch for the peer, --io)
#   4. the PyTorch peers on the same GPU, dtype and shapes (bench/peers/gpu_torch.py;
#      the training steps in eager PyTorch from the same parameters, whose
#      first-step loss must match ours)
#   5. attention accuracy vs PyTorch and float64 (bench/gpu_attention.py
#      --accuracy-only): a BAD case fails the run
#   6. the report: one table and one JSON line per case (bench/gpu_report.py),
#      files bench/results/gpu-<date>-<gpu>.{txt,jsonl,json} (+ .tests.txt)
#
# Time of --quick on one H100 machine (16 cores), estimated: it has not run on a
# GPU yet. The build estimate comes from CPU times measured on a 2-core machine
# (nvcc for sm_90 alone: 71 CPU-s over the 13 cuda/*.cu files, 18 s of it
# cuda/attention.cu, the longest; the C++ of the core, tests and drivers about
# 120 CPU-s); the rest from the cases' sizes. VP_GPU_BUDGET (default 280 s with
# --quick) stops the run from starting a step after that, and a step not run
# counts as a failure; each step also has its own cap:
#   preflight            ~5 s    (nvidia-smi, importing torch)
#   configure            ~15 s   (CMake's CUDA compiler checks; cap 60 s)
#   build                ~40 s   (about 190 CPU-s on 16 cores, attention.cu the
#                                 critical path; cap 150 s)
#   native tests         ~40 s   (the CUDA cases: float64 references on the CPU,
#                                 20 VideoLM steps on both devices; cap 90 s)
#   drivers              ~50 s   (5 kernel families in bfloat16, ~7 s each with
#                                 the CUDA context; 2 train-step cases ~15 s; 45 s each)
#   peers                ~45 s   (import torch ~5 s, ~25 cases)
#   accuracy             ~20 s   (3 bfloat16 cases at T = 1024; cap 60 s)
#   report               ~1 s
#   total                ~215 s, within 5 minutes with about a minute to spare
# The default size (no flag) takes about twice that, --full several minutes more.
#
# Usage: bench/gpu.sh [--quick | --full] [--cpu] [--out DIR]
#   --quick     fewer and smaller cases, sized for 5 minutes on an H100
#   --full      more and larger ones (D = 64 attention too, InfoNCE at 32768, the
#               linear log-probs at N 8192, d 4096, V 131072, the small preset at B 8)
#   --cpu       no GPU: a CPU-only build; the CUDA tests (which then skip) and the
#               drivers and peers on the CPU, on small shapes: a check of the
#               pipeline that never says a GPU was tested (budget 3600 s, 600 s
#               per driver, no per-step caps)
#   --out DIR   where the run's files go (default bench/results; on a lent machine
#               whose $OUT comes back: --out "$OUT")
# Environment:
#   PYTHON             the python with PyTorch (default python3)
#   VP_CUDA_ARCHS      CMake CUDA architectures (default: the GPU's own, e.g. 90-real
#                      on Hopper, from nvidia-smi; else 80-real;90-real;90-virtual)
#   VP_BUILD_DIR       build folder (default build-gpu)
#   VP_DOCTEST_INCLUDE a folder holding doctest/doctest.h (used alone when set).
#                      Default: build-deps/include, then /usr/include, /usr/local/include.
#                      On a machine without doctest-dev, prepare build-deps/ where it is
#                      installed and carry it along (build-deps/ is git-ignored):
#                        mkdir -p build-deps/include/doctest
#                        cp /usr/include/doctest/doctest.h build-deps/include/doctest/
#   JOBS               build parallelism (default: the cores)
#   VP_BENCH_TIMEOUT   seconds allowed per driver run (default 45 with --quick, else 240)
#   VP_GPU_BUDGET      seconds after which no further step starts (default 280 with
#                      --quick, 540 otherwise, 900 with --full)
# Exit status: 0 everything above ran and passed; 1 something failed or did not
# run (the report says what); 2 a bad argument; 3 a prerequisite is missing
# (preflight: nothing was built or run).
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
SIZE=""; DEVICE=cuda; OUT="bench/results"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) SIZE=--quick ;;
    --full) SIZE=--full ;;
    --cpu) DEVICE=cpu ;;
    --out) [ $# -ge 2 ] || { echo "gpu.sh: --out needs a folder"; exit 2; }; OUT="$2"; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)"; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
BUILD=${VP_BUILD_DIR:-build-gpu}
if [ "$SIZE" = --quick ]; then
  LIMIT=${VP_BENCH_TIMEOUT:-45}; BUDGET=${VP_GPU_BUDGET:-280}
  CAP_CONFIGURE=60; CAP_BUILD=150; CAP_TESTS=90; CAP_ACCURACY=60
  KERNEL_DTYPES="bfloat16"
else
  LIMIT=${VP_BENCH_TIMEOUT:-240}; BUDGET=${VP_GPU_BUDGET:-540}
  [ "$SIZE" = --full ] && BUDGET=${VP_GPU_BUDGET:-900}
  CAP_CONFIGURE=120; CAP_BUILD=600; CAP_TESTS=300; CAP_ACCURACY=180
  KERNEL_DTYPES="bfloat16 float32"
fi
if [ "$DEVICE" = cpu ]; then  # a pipeline check on any machine: not sized to an H100's minutes
  KERNEL_DTYPES="float32"; BUDGET=${VP_GPU_BUDGET:-3600}; LIMIT=${VP_BENCH_TIMEOUT:-600}
  CAP_CONFIGURE=$BUDGET; CAP_BUILD=$BUDGET; CAP_TESTS=$BUDGET; CAP_ACCURACY=$BUDGET
fi
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# min(cap, budget left): the time a step may take; <= 0 when the budget is spent.
allow() { local l; l=$(left); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
mkdir -p "$OUT" || { echo "gpu.sh: cannot create $OUT"; exit 2; }
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
GPU_NAME=""
command -v nvidia-smi >/dev/null 2>&1 && GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
SLUG=$(printf '%s' "${GPU_NAME:-no-gpu}" | tr 'A-Z' 'a-z' | sed -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//' | cut -c1-40)
[ "$DEVICE" = cpu ] && SLUG="cpu-$(hostname | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]\{1,\}/-/g' | cut -c1-20)"
BASE="$OUT/gpu-$STAMP-$SLUG"
LOG="$BASE.txt"; RAW="$BASE.jsonl"
exec > >(tee "$LOG") 2>&1
FAIL=0
NOTES=()
fail() { FAIL=1; NOTES+=("$1"); echo "FAILED: $1"; }
meta() { printf '{"meta":{"%s":%s}}\n' "$1" "$2" >> "$RAW"; }
jstr() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\n\r' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
: > "$RAW"
# A missing prerequisite: say what and how to get it, then stop before building anything.
missing() {
  echo "gpu.sh: cannot run: $1"
  meta preflight "$(jstr "$1")"
  echo "gpu.sh: NOT OK (preflight failed: nothing was built, tested or timed)"
  exit 3
}

echo "== machine ($(date -u +%FT%TZ))"
uname -srm
echo "cores: $(nproc)  mode: $DEVICE ${SIZE:-default}  budget: ${BUDGET} s"
meta date "$(jstr "$(date -u +%FT%TZ)")"; meta device "$(jstr "$DEVICE")"; meta size "$(jstr "${SIZE:-default}")"

echo "== preflight"
# 1. doctest's single header (the native tests are part of every run).
if [ -n "${VP_DOCTEST_INCLUDE:-}" ]; then
  DT_DIRS=("$VP_DOCTEST_INCLUDE")
else
  DT_DIRS=("$PWD/build-deps/include" /usr/include /usr/local/include)
fi
DT_INC=""
for d in "${DT_DIRS[@]}"; do
  if [ -f "$d/doctest/doctest.h" ]; then DT_INC=$(cd "$d" && pwd); break; fi
done
[ -n "$DT_INC" ] || missing "doctest's header (doctest/doctest.h) is not in ${DT_DIRS[*]}: the CUDA native tests cannot be built.
  Install doctest-dev, or copy the single header into build-deps/ (where doctest is installed) and bring that folder along:
    mkdir -p build-deps/include/doctest && cp /usr/include/doctest/doctest.h build-deps/include/doctest/
  or set VP_DOCTEST_INCLUDE to a folder holding doctest/doctest.h."
echo "doctest: $DT_INC/doctest/doctest.h"
# 2. a GPU the driver shows (unless --cpu).
if [ "$DEVICE" = cuda ]; then
  if [ "${CUDA_VISIBLE_DEVICES+set}" = set ] && { [ -z "$CUDA_VISIBLE_DEVICES" ] || [ "$CUDA_VISIBLE_DEVICES" = "-1" ]; }; then
    missing "no usable NVIDIA GPU: CUDA_VISIBLE_DEVICES='$CUDA_VISIBLE_DEVICES' hides every GPU (bench/gpu.sh --cpu checks the pipeline without one)"
  fi
  command -v nvidia-smi >/dev/null 2>&1 || missing "no usable NVIDIA GPU: nvidia-smi is not installed (no NVIDIA driver here; bench/gpu.sh --cpu checks the pipeline without a GPU)"
  SMI=$(nvidia-smi -L 2>&1) || missing "no usable NVIDIA GPU: nvidia-smi -L failed: $(printf '%s' "$SMI" | head -2 | tr '\n' ' ')"
  printf '%s\n' "$SMI" | grep -q '^GPU ' || missing "no usable NVIDIA GPU: nvidia-smi lists none"
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv 2>/dev/null || printf '%s\n' "$SMI"
  meta gpu "$(jstr "$GPU_NAME")"
fi
# 3. the tools.
command -v cmake >/dev/null 2>&1 || missing "cmake is not installed"
NVCC=""
if [ "$DEVICE" = cuda ]; then
  NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
  [ -n "$NVCC" ] || missing "nvcc is not on PATH nor in /usr/local/cuda/bin: the CUDA backend cannot be built"
  echo "nvcc: $NVCC ($("$NVCC" --version | tail -1))"
fi
echo "cmake: $(cmake --version | head -1)"
# 4. PyTorch (and numpy) for the peers and the accuracy check; with CUDA unless --cpu.
TORCH=$("$PY" -c 'import sys, numpy, torch
print(torch.__version__, "cuda", torch.version.cuda, "available" if torch.cuda.is_available() else "unavailable")' 2>&1 | tail -1)
case "$TORCH" in
  *" available") ;;
  *unavailable) [ "$DEVICE" = cpu ] || missing "PyTorch ($PY: $TORCH) cannot use the GPU: the peers need torch with CUDA" ;;
  *) missing "$PY cannot import torch and numpy (the peers and the accuracy check need them): $TORCH" ;;
esac
echo "python: $PY ($("$PY" --version 2>&1)), torch $TORCH"
meta torch "$(jstr "$TORCH")"
echo "preflight: $(( $(date +%s) - T0 )) s"

echo "== build ($BUILD)"
CUDA_FLAG=off; [ "$DEVICE" = cuda ] && CUDA_FLAG=on
ARCHS=${VP_CUDA_ARCHS:-}
if [ -z "$ARCHS" ] && [ "$CUDA_FLAG" = on ]; then
  CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  if [ -n "$CC" ] && [ "$CC" -ge 80 ] 2>/dev/null; then ARCHS="${CC}-real"; else ARCHS="80-real;90-real;90-virtual"; fi
fi
# A small CMake package for the header found above (whether or not doctest-dev is installed).
SHIM="$PWD/$BUILD/doctest-shim"
mkdir -p "$SHIM"
{
  echo "# made by bench/gpu.sh for the doctest header in $DT_INC"
  echo 'if(NOT TARGET doctest::doctest)'
  echo '  list(APPEND CMAKE_MODULE_PATH "${CMAKE_CURRENT_LIST_DIR}")'
  echo '  add_library(doctest::doctest INTERFACE IMPORTED)'
  echo "  set_target_properties(doctest::doctest PROPERTIES INTERFACE_INCLUDE_DIRECTORIES \"$DT_INC\")"
  echo 'endif()'
} > "$SHIM/doctestConfig.cmake"
printf 'function(doctest_discover_tests)\nendfunction()\n' > "$SHIM/doctest.cmake"  # gpu.sh runs vp_tests itself
GEN=(); command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
CMAKE_ARGS=(-S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release "-DVP_CUDA=$CUDA_FLAG" -DVP_BUILD_BENCH=ON
            -DVP_BUILD_TESTS=ON "-Ddoctest_DIR=$SHIM")
[ -n "$ARCHS" ] && CMAKE_ARGS+=("-DCMAKE_CUDA_ARCHITECTURES=$ARCHS")
[ -n "$NVCC" ] && CMAKE_ARGS+=("-DCMAKE_CUDA_COMPILER=$NVCC")
echo "cmake ${CMAKE_ARGS[*]}"
B0=$(date +%s)
if ! timeout "$(allow $CAP_CONFIGURE)" cmake "${CMAKE_ARGS[@]}" > "$BASE.cmake.txt" 2>&1; then
  tail -30 "$BASE.cmake.txt"; echo "gpu.sh: NOT OK (cmake configure failed; log $BASE.cmake.txt)"; meta build '"configure failed"'; exit 1
fi
grep -E "videoperceiver:" "$BASE.cmake.txt"
if grep -q "doctest not found" "$BASE.cmake.txt"; then
  echo "gpu.sh: NOT OK (CMake did not take the doctest header in $DT_INC)"; meta build '"no doctest"'; exit 1
fi
rm -f "$BASE.cmake.txt"
DRIVERS="vp_bench_gemm vp_bench_attention vp_bench_infonce vp_bench_grpo vp_bench_pack vp_bench_train_step"
CAP=$(allow $CAP_BUILD)
if [ "$CAP" -le 0 ] || ! timeout "$CAP" cmake --build "$BUILD" -j "$JOBS" --target vp_tests $DRIVERS > "$BASE.build.txt" 2>&1; then
  grep -E "error|Error" "$BASE.build.txt" | head -40
  echo "gpu.sh: NOT OK (the build failed or ran past $CAP s; log $BASE.build.txt)"; meta build '"failed"'; exit 1
fi
rm -f "$BASE.build.txt"
BUILD_S=$(( $(date +%s) - B0 ))
echo "build: ${BUILD_S} s (VP_CUDA=$CUDA_FLAG, archs ${ARCHS:-none}, $JOBS jobs)"
meta buildSeconds "$BUILD_S"; meta cudaArchs "$(jstr "${ARCHS:-none}")"; meta cuda "$(jstr "$CUDA_FLAG")"

echo "== native tests (the CUDA cases: vp_tests -tc='*cuda*')"
S0=$(date +%s)
CAP=$(allow $CAP_TESTS)
TEST_ENV=(); [ "$DEVICE" = cuda ] && TEST_ENV=(VP_TEST_REQUIRE_CUDA=1)
# The 1-rank NCCL smoke (a "cuda" case) needs libnccl.so.2: the loader's, else the
# one PyTorch ships (torch/lib or the nvidia-nccl wheel beside it).
if [ "$DEVICE" = cuda ] && [ -z "${VP_NCCL_LIBRARY:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnccl.so.2 '; then
  NCCL_LIB=$("$PY" -c 'import glob, os, torch
d = os.path.dirname(torch.__file__)
c = glob.glob(d + "/lib/libnccl.so.2*") + glob.glob(d + "/../nvidia/nccl/lib/libnccl.so.2*")
print(os.path.realpath(c[0]) if c else "")' 2>/dev/null | tail -1)
  [ -n "$NCCL_LIB" ] && TEST_ENV+=(VP_NCCL_LIBRARY="$NCCL_LIB")
fi
NCCL_SHOWN=${NCCL_LIB:-${VP_NCCL_LIBRARY:-}}
echo "nccl: ${NCCL_SHOWN:-libnccl.so.2 from the loader path, if any} (the 1-rank NCCL smoke skips without it)"
if [ "$CAP" -le 0 ]; then
  TEST_RC=124; echo "not run: the time budget is spent" > "$BASE.tests.txt"
else
  env "${TEST_ENV[@]}" timeout "$CAP" "$BUILD/vp_tests" -tc='*cuda*' > "$BASE.tests.txt" 2>&1
  TEST_RC=$?
fi
grep -E -A1 "MESSAGE|ERROR|FAILED|test cases:|assertions:" "$BASE.tests.txt" | grep -v "^--$" | head -120
SUMMARY=$(grep -E "test cases:" "$BASE.tests.txt" | tail -1)
CASES=$(printf '%s' "$SUMMARY" | sed -n 's/.*test cases: *\([0-9]*\).*/\1/p')
echo "native tests: exit code $TEST_RC, ${CASES:-no} test cases ($(( $(date +%s) - S0 )) s; output $BASE.tests.txt)"
meta nativeTests "{\"exitCode\":$TEST_RC,\"cases\":${CASES:-0},\"seconds\":$(( $(date +%s) - S0 ))}"
if [ "$TEST_RC" != 0 ]; then
  fail "the CUDA native tests failed (exit code $TEST_RC$([ "$TEST_RC" = 124 ] && echo ": timed out or not started"))"
elif [ -z "$CASES" ] || [ "$CASES" -lt 1 ]; then
  fail "no native test case ran"
elif [ "$DEVICE" = cuda ] && grep -q "skipped (no usable GPU)" "$BASE.tests.txt"; then
  fail "CUDA test cases skipped for want of a GPU"
fi

echo "== pretrained models on CUDA (test/pretrained-cuda.test.ts; needs Node.js and node_modules)"
# The TypeScript composition of the pretrained decoders and vision towers on the
# GPU (lib/pretrained/device.ts) is tested by ava, which needs Node.js and the
# addon built with CUDA (cmake-js). A machine without Node.js (the usual GPU
# machine) skips this step and says so; the native CUDA cases above cover the
# kernels it calls (test_pretrained_cuda.cpp).
if [ "$DEVICE" = cuda ] && command -v node > /dev/null 2>&1 && [ -d node_modules/cmake-js ] && [ -d node_modules/ava ]; then
  S0=$(date +%s)
  CAP=$(allow $CAP_TESTS)
  if [ "$CAP" -le 0 ]; then
    fail "test/pretrained-cuda.test.ts not run (time budget spent)"
  elif ! VP_CUDA=on timeout "$CAP" npm run build:native > "$BASE.pretrained.txt" 2>&1 ||
       ! timeout "$CAP" npx ava test/pretrained-cuda.test.ts >> "$BASE.pretrained.txt" 2>&1; then
    tail -30 "$BASE.pretrained.txt"
    fail "test/pretrained-cuda.test.ts failed (log $BASE.pretrained.txt)"
  elif grep -q "skipped: no usable GPU" "$BASE.pretrained.txt"; then
    fail "test/pretrained-cuda.test.ts skipped for want of a GPU"
  else
    grep -E "✔|✘|passed|failed" "$BASE.pretrained.txt" | tail -12
  fi
  echo "pretrained on CUDA: $(( $(date +%s) - S0 )) s"
else
  echo "not run: $([ "$DEVICE" = cuda ] && echo "no Node.js or node_modules on this machine" || echo "--cpu") (the native CUDA cases above test the kernels)"
fi

echo "== benchmarks: our kernels and training steps ($DEVICE)"
IO="$PWD/$BUILD/train-step-io"
for d in $DRIVERS; do
  exe="$BUILD/$d"
  name=${d#vp_bench_}
  dts=$KERNEL_DTYPES; extra=()
  [ "$name" = train_step ] && { dts=float32; extra=(--io "$IO"); }
  for dt in $dts; do
    S0=$(date +%s)
    CAP=$(allow "$LIMIT")
    if [ "$CAP" -le 0 ]; then
      echo "{\"bench\":\"$name\",\"dtype\":\"$dt\",\"error\":\"not run: the time budget (VP_GPU_BUDGET=$BUDGET s) was spent\"}" | tee -a "$RAW"
      fail "$name $dt not run (time budget spent)"; continue
    fi
    timeout "$CAP" "$exe" --suite --device "$DEVICE" --dtype "$dt" $SIZE "${extra[@]}" > "$BASE.one.jsonl" 2> "$BASE.err.txt"
    rc=$?
    cat "$BASE.one.jsonl" >> "$RAW"
    n=$(grep -c '"ms"' "$BASE.one.jsonl"); sk=$(grep -o '"skipped":"[^"]*"' "$BASE.one.jsonl" | head -1)
    echo "$name $dt: $n cases, exit $rc, $(( $(date +%s) - S0 )) s ${sk}"
    if [ $rc != 0 ]; then
      echo "{\"bench\":\"$name\",\"dtype\":\"$dt\",\"error\":$(jstr "exit code $rc$([ $rc = 124 ] && echo " (timed out after $CAP s)"): $(tail -c 300 "$BASE.err.txt")")}" | tee -a "$RAW"
      fail "$name $dt: exit code $rc"
    elif [ -n "$sk" ]; then
      fail "$name $dt skipped: $sk"
    elif [ "$n" = 0 ]; then
      fail "$name $dt timed nothing"
    fi
  done
done
rm -f "$BASE.one.jsonl" "$BASE.err.txt"

echo "== PyTorch peers ($DEVICE, $PY)"
S0=$(date +%s)
CAP=$(allow 600)
if [ "$CAP" -le 0 ]; then
  fail "the peers did not run (time budget spent)"
  echo '{"peerStatus":"not run: the time budget was spent"}' >> "$RAW"
else
  timeout "$CAP" "$PY" bench/peers/gpu_torch.py --device "$DEVICE" $SIZE --cases "$RAW" > "$BASE.peers.jsonl" 2> "$BASE.err.txt"
  rc=$?
  cat "$BASE.peers.jsonl" >> "$RAW"
  echo "peers: $(grep -c '"ms"' "$BASE.peers.jsonl") timed, $(grep -c '"missing"' "$BASE.peers.jsonl") missing, exit $rc, $(( $(date +%s) - S0 )) s"
  grep -o '"peerStatus": "[^"]*"' "$BASE.peers.jsonl" | head -1
  if [ $rc != 0 ]; then
    tail -5 "$BASE.err.txt"
    echo "{\"peerStatus\":$(jstr "the peer script failed (exit $rc): $(tail -c 300 "$BASE.err.txt")")}" >> "$RAW"
    fail "the peer script failed (exit code $rc)"
  fi
  rm -f "$BASE.peers.jsonl" "$BASE.err.txt"
fi

if [ "$DEVICE" = cuda ]; then
  echo "== attention accuracy vs PyTorch and float64 (bench/gpu_attention.py)"
  CAP=$(allow $CAP_ACCURACY)
  if [ "$CAP" -le 0 ]; then
    fail "the attention accuracy check did not run (time budget spent)"
  else
    timeout "$CAP" "$PY" bench/gpu_attention.py --build-dir "$BUILD" --skip-build --skip-tests --accuracy-only \
      $([ "$SIZE" = --quick ] && echo --quick) --save --out "$OUT"
    rc=$?
    [ $rc = 0 ] || fail "the attention accuracy check failed (exit code $rc$([ $rc = 124 ] && echo ": timed out"))"
  fi
fi

echo "== report"
ELAPSED=$(( $(date +%s) - T0 ))
meta elapsedSeconds "$ELAPSED"
"$PY" bench/gpu_report.py "$RAW" --json "$BASE.json" || fail "the report found errors, missing peers or mismatched training steps (above)"
echo "run: $ELAPSED s; files: $LOG $RAW $BASE.json $BASE.tests.txt"
if [ $FAIL != 0 ]; then
  echo "gpu.sh: NOT OK:"
  for n in "${NOTES[@]}"; do echo "  - $n"; done
  exit 1
fi
if [ "$DEVICE" = cpu ]; then
  echo "gpu.sh --cpu: the pipeline ran on the CPU (nothing ran on a GPU)"
  exit 0
fi
echo "gpu.sh: OK (CUDA tests passed on ${GPU_NAME}; every case timed against its peer; attention accuracy ok)"
exit 0
