#!/usr/bin/env bash
# bench/gpu.sh — the GPU build, test and benchmark run, for a machine with an
# NVIDIA GPU, nvcc, CMake and PyTorch but no Node.js. One script, sized to stay
# well under 10 minutes on an H100, build included (an estimate until it has
# run on one: each driver run is capped by VP_BENCH_TIMEOUT):
#   1. builds the core with nvcc (plain CMake, build-gpu/): only the native tests
#      and the benchmark drivers, for the GPU's own architecture,
#   2. runs the native tests (the CUDA tests compare with the CPU and float64),
#   3. times every CUDA kernel family with its driver (native/bench/bench_*.cpp:
#      gemm, attention, infonce, grpo = token log-probs + GRPO loss, pack) in
#      bfloat16 and float32, with CUDA events (warm-up, repetitions, median),
#   4. times the PyTorch peer of each case on the same GPU, dtype and shape
#      (bench/peers/gpu_torch.py): scaled_dot_product_attention, the composite
#      PyTorch forms of InfoNCE / log-probs / GRPO, a device copy for packing,
#   5. checks the attention's accuracy against PyTorch and float64
#      (bench/gpu_attention.py --accuracy-only),
#   6. prints one table (ours, peer, ratio = peer time / ours) and one JSON line
#      per case, and writes bench/results/gpu-<date>-<gpu>.{json,jsonl,txt}.
#
# Usage: bench/gpu.sh [--quick | --full] [--cpu] [--no-tests] [--out DIR]
#   --quick     fewer and smaller cases
#   --full      more and larger ones (D = 64 attention too, InfoNCE at 32768,
#               the linear log-probs at N 8192, d 4096, V 131072): several more minutes
#   --cpu       no GPU: a CPU-only build; the drivers time the CPU kernels on
#               small shapes and the peers PyTorch on the CPU (checks the whole
#               pipeline on a machine without a GPU)
#   --no-tests  skip the native tests
#   --out DIR   where the run's files go (default bench/results; on a lent
#               machine whose $OUT comes back: --out "$OUT")
# Environment:
#   PYTHON          the python with PyTorch (default python3)
#   VP_CUDA_ARCHS   CMake CUDA architectures (default: the GPU's own, e.g. 90-real
#                   on Hopper, from nvidia-smi; else 80-real;90-real;90-virtual)
#   VP_BUILD_DIR    build folder (default build-gpu)
#   VP_DOCTEST_INCLUDE  a folder holding doctest/doctest.h, where doctest-dev is
#                   not installed (default: build-deps/include when it exists)
#   JOBS            build/test parallelism (default: the cores)
#   VP_BENCH_TIMEOUT  seconds allowed per driver run (default 240)
#   VP_GPU_BUDGET   seconds after which no further driver or peer run starts
#                   (default 420: the script then reports those as not run)
# Exit status: 0 when everything ran and passed; 1 when a test, a driver or the
# build failed (the report still prints what there is); 3 when it ran to the end
# but timed nothing (no usable GPU: the drivers printed "skipped" lines).
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
QUICK=""; DEVICE=cuda; OUT="bench/results"; TESTS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=--quick ;;
    --full) QUICK=--full ;;
    --cpu) DEVICE=cpu ;;
    --no-tests) TESTS=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)"; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
BUILD=${VP_BUILD_DIR:-build-gpu}
LIMIT=${VP_BENCH_TIMEOUT:-240}
BUDGET=${VP_GPU_BUDGET:-420}
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
mkdir -p "$OUT"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
SLUG=$(printf '%s' "${GPU_NAME:-no-gpu}" | tr 'A-Z' 'a-z' | sed -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//' | cut -c1-40)
[ "$DEVICE" = cpu ] && SLUG="cpu-$(hostname | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]\{1,\}/-/g' | cut -c1-20)"
BASE="$OUT/gpu-$STAMP-$SLUG"
LOG="$BASE.txt"; RAW="$BASE.jsonl"
exec > >(tee "$LOG") 2>&1
FAIL=0
meta() { printf '{"meta":{"%s":%s}}\n' "$1" "$2" >> "$RAW"; }
jstr() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\n\r' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
: > "$RAW"

echo "== machine ($(date -u +%FT%TZ))"
uname -srm
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv 2>/dev/null || nvidia-smi -L
else
  echo "no nvidia-smi"
fi
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
echo "nvcc: ${NVCC:-none} $([ -n "$NVCC" ] && "$NVCC" --version | tail -1)"
echo "cmake: $(cmake --version | head -1)  python: $($PY --version 2>&1)  cores: $(nproc)"
meta date "$(jstr "$(date -u +%FT%TZ)")"; meta gpu "$(jstr "${GPU_NAME:-none}")"; meta device "$(jstr "$DEVICE")"
meta size "$(jstr "${QUICK:-default}")"

echo "== build ($BUILD)"
if [ "$DEVICE" = cpu ]; then
  CUDA_FLAG=off
elif [ -n "$NVCC" ]; then
  CUDA_FLAG=on
else
  CUDA_FLAG=off; echo "no nvcc: CPU-only build; the CUDA drivers will report that there is no CUDA"
fi
ARCHS=${VP_CUDA_ARCHS:-}
if [ -z "$ARCHS" ] && [ "$CUDA_FLAG" = on ]; then
  CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  if [ -n "$CC" ] && [ "$CC" -ge 80 ] 2>/dev/null; then ARCHS="${CC}-real"; else ARCHS="80-real;90-real;90-virtual"; fi
fi
# doctest (one header) builds the native tests. Where doctest-dev is not installed,
# VP_DOCTEST_INCLUDE (or build-deps/include, e.g. carried to a GPU machine) names a
# folder holding doctest/doctest.h, and a small CMake package is made for it here.
DOCTEST_ARGS=()
DT_INC=${VP_DOCTEST_INCLUDE:-}
[ -z "$DT_INC" ] && [ -f build-deps/include/doctest/doctest.h ] && DT_INC="$PWD/build-deps/include"
if [ -n "$DT_INC" ]; then
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
  # gpu.sh runs vp_tests itself: ctest's test discovery is not needed
  printf 'function(doctest_discover_tests)\nendfunction()\n' > "$SHIM/doctest.cmake"
  DOCTEST_ARGS=("-Ddoctest_DIR=$SHIM")
  echo "doctest: the header in $DT_INC"
fi
GEN=""; command -v ninja >/dev/null && GEN="-G Ninja"
B0=$(date +%s)
CMAKE_ARGS=(-S . -B "$BUILD" $GEN -DCMAKE_BUILD_TYPE=Release "-DVP_CUDA=$CUDA_FLAG" -DVP_BUILD_BENCH=ON -DVP_BUILD_TESTS=ON)
[ -n "$ARCHS" ] && CMAKE_ARGS+=("-DCMAKE_CUDA_ARCHITECTURES=$ARCHS")
[ ${#DOCTEST_ARGS[@]} -gt 0 ] && CMAKE_ARGS+=("${DOCTEST_ARGS[@]}")
[ -n "$NVCC" ] && [ "$CUDA_FLAG" = on ] && CMAKE_ARGS+=("-DCMAKE_CUDA_COMPILER=$NVCC")
echo "cmake ${CMAKE_ARGS[*]}"
if ! cmake "${CMAKE_ARGS[@]}" > "$BASE.cmake.txt" 2>&1; then
  tail -30 "$BASE.cmake.txt"; echo "cmake configure FAILED"; meta build '"configure failed"'; exit 1
fi
grep -E "videoperceiver:" "$BASE.cmake.txt"
DRIVERS="vp_bench_gemm vp_bench_attention vp_bench_infonce vp_bench_grpo vp_bench_pack"
TARGETS="$DRIVERS"
HAVE_TESTS=1
if grep -q "doctest not found" "$BASE.cmake.txt"; then
  HAVE_TESTS=0; echo "doctest not found (apt-get install doctest-dev): vp_tests cannot be built, no native tests"
elif [ $TESTS = 1 ]; then
  TARGETS="$TARGETS vp_tests"
fi
if ! cmake --build "$BUILD" -j "$JOBS" --target $TARGETS > "$BASE.build.txt" 2>&1; then
  grep -E "error|Error" "$BASE.build.txt" | head -40; echo "build FAILED (full log: $BASE.build.txt)"
  meta build '"failed"'; FAIL=1
fi
rm -f "$BASE.cmake.txt"
BUILD_S=$(( $(date +%s) - B0 ))
echo "build: ${BUILD_S} s (VP_CUDA=$CUDA_FLAG, archs ${ARCHS:-none}, $JOBS jobs)"
meta buildSeconds "$BUILD_S"; meta cudaArchs "$(jstr "${ARCHS:-none}")"; meta cuda "$(jstr "$CUDA_FLAG")"

echo "== native tests"
if [ $TESTS = 1 ] && [ $HAVE_TESTS = 1 ] && [ -x "$BUILD/vp_tests" ]; then
  S0=$(date +%s)
  # The CUDA test cases print what they compared (MESSAGE); the rest: pass/fail.
  timeout 300 "$BUILD/vp_tests" > "$BASE.tests.txt" 2>&1
  TEST_RC=$?
  grep -E -A1 "MESSAGE|ERROR|FAILED|test cases:|assertions:" "$BASE.tests.txt" | grep -v "^--$" | head -120
  rm -f "$BASE.tests.txt"
  echo "native tests: exit code $TEST_RC ($(( $(date +%s) - S0 )) s)"
  meta nativeTests "{\"exitCode\":$TEST_RC,\"seconds\":$(( $(date +%s) - S0 ))}"
  [ "$TEST_RC" = 0 ] || FAIL=1
else
  echo "native tests not run ($([ $TESTS = 0 ] && echo --no-tests || echo 'vp_tests not built'))"
  meta nativeTests '{"exitCode":null}'
fi

echo "== benchmarks: our kernels ($DEVICE)"
DTYPES="float32"; [ "$DEVICE" = cuda ] && DTYPES="bfloat16 float32"
for d in $DRIVERS; do
  exe="$BUILD/$d"
  name=${d#vp_bench_}
  if [ ! -x "$exe" ]; then
    echo "{\"bench\":\"$name\",\"error\":\"$exe was not built\"}" | tee -a "$RAW"; FAIL=1; continue
  fi
  for dt in $DTYPES; do
    S0=$(date +%s)
    if [ "$(left)" -le 0 ]; then
      echo "{\"bench\":\"$name\",\"dtype\":\"$dt\",\"error\":\"not run: the time budget (VP_GPU_BUDGET=$BUDGET s) was spent\"}" | tee -a "$RAW"
      FAIL=1; continue
    fi
    timeout "$LIMIT" "$exe" --suite --device "$DEVICE" --dtype "$dt" $QUICK > "$BASE.one.jsonl" 2> "$BASE.err.txt"
    rc=$?
    cat "$BASE.one.jsonl" >> "$RAW"
    n=$(grep -c '"ms"' "$BASE.one.jsonl"); sk=$(grep -o '"skipped":"[^"]*"' "$BASE.one.jsonl" | head -1)
    echo "$name $dt: $n cases, exit $rc, $(( $(date +%s) - S0 )) s ${sk}"
    if [ $rc != 0 ]; then
      FAIL=1
      echo "{\"bench\":\"$name\",\"dtype\":\"$dt\",\"error\":$(jstr "exit code $rc$([ $rc = 124 ] && echo " (timed out after $LIMIT s)"): $(tail -c 300 "$BASE.err.txt")")}" | tee -a "$RAW"
    fi
  done
done
rm -f "$BASE.one.jsonl" "$BASE.err.txt"

echo "== benchmarks: PyTorch peers ($DEVICE, $PY)"
S0=$(date +%s)
PEER_LIMIT=$(left); [ "$PEER_LIMIT" -lt 60 ] && PEER_LIMIT=60
timeout "$PEER_LIMIT" "$PY" bench/peers/gpu_torch.py --device "$DEVICE" $QUICK --cases "$RAW" > "$BASE.peers.jsonl" 2> "$BASE.err.txt"
rc=$?
cat "$BASE.peers.jsonl" >> "$RAW"
echo "peers: $(grep -c '"ms"' "$BASE.peers.jsonl") timed, $(grep -c '"missing"' "$BASE.peers.jsonl") missing, exit $rc, $(( $(date +%s) - S0 )) s"
grep -o '"peerStatus": "[^"]*"' "$BASE.peers.jsonl" | head -1
[ $rc = 0 ] || { tail -5 "$BASE.err.txt"; echo "{\"peerStatus\":$(jstr "the peer script failed (exit $rc): $(tail -c 300 "$BASE.err.txt")")}" >> "$RAW"; }
rm -f "$BASE.peers.jsonl" "$BASE.err.txt"

ACC_LIMIT=$(left); [ "$ACC_LIMIT" -gt 180 ] && ACC_LIMIT=180
if [ "$ACC_LIMIT" -lt 30 ]; then
  echo "== attention accuracy: not run (the time budget is spent)"
elif [ "$DEVICE" = cuda ] && [ -x "$BUILD/vp_bench_attention" ] && "$PY" -c 'import torch, numpy, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "== attention accuracy vs PyTorch and float64 (bench/gpu_attention.py)"
  timeout "$ACC_LIMIT" "$PY" bench/gpu_attention.py --build-dir "$BUILD" --skip-build --skip-tests --accuracy-only --save
  [ $? = 0 ] || echo "gpu_attention.py failed"
  # it saves under bench/results/: keep a copy beside the other files of this run
  if [ "$(cd "$OUT" && pwd)" != "$(cd bench/results && pwd)" ]; then
    find bench/results -maxdepth 1 -name 'gpu-attention-*.json' -newer "$RAW" -exec cp {} "$OUT/" \;
  fi
fi

echo "== report"
ELAPSED=$(( $(date +%s) - T0 ))
meta elapsedSeconds "$ELAPSED"
python3 bench/gpu_report.py "$RAW" --json "$BASE.json" || FAIL=1
echo "run: $ELAPSED s; files: $LOG $RAW $BASE.json"
TIMED=$(grep -c '"ms"' "$RAW")
if [ $FAIL != 0 ]; then
  echo "gpu.sh: FAILED (see above)"; exit 1
elif [ "$TIMED" = 0 ]; then
  echo "gpu.sh: ran to the end, but nothing was timed (no usable $DEVICE device: see the skipped lines)"; exit 3
fi
echo "gpu.sh: OK"
exit 0
