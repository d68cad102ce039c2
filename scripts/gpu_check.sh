#!/usr/bin/env bash
# Correctness on the GPU machine, in one call: builds sluice there the way its binary is built for
# users (the machine's g++, PyTorch's libtorch), runs the whole test suite (core, trainer and GPU
# tests), then the core suite again under AddressSanitizer + UndefinedBehaviorSanitizer, and installs
# the Python package into the machine's python3 (pip install . from .deps/wheels, no network) to run
# its tests there, GPU ones included. Bring .deps/ (scripts/bundle_deps.sh). Prints a short table
# last; logs go to $OUT (or build-check/logs).
#   STAGES="build test asan python" bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT"
STAGES=${STAGES:-"build test asan python"}
JOBS=$(nproc)
TABLE="$OUT/check_table.txt"
: > "$TABLE"
row() { printf '%-44s %s\n' "$1" "$2" | tee -a "$TABLE"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
source scripts/gpu_configure.sh

GPU=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
row "machine" "${GPU:-no GPU}, $JOBS cores, ${CXX:-g++}: $(${CXX:-g++} --version | head -1)"
row "torch" "$(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)"

# ctest's summary -> "passed/total (failed: names)".
summarise() {
  local log=$1
  local line failed
  line=$(grep -E "[0-9]+% tests passed" "$log" | tail -1)
  failed=$(sed -n '/The following tests FAILED/,$p' "$log" | grep -E "^\s+[0-9]+ - " | sed -E 's/^\s+[0-9]+ - //' | tr '\n' ' ')
  local skipped
  skipped=$(grep -cE "\*\*\*Skipped| Skipped " "$log" || true)
  echo "${line:-no summary} (skipped: $skipped)${failed:+ FAILED: $failed}"
}

if has build; then
  t0=$(date +%s)
  gpu_configure build-gpu > "$OUT/check_configure.log" 2>&1 || { tail -30 "$OUT/check_configure.log"; row "configure" "FAILED"; exit 1; }
  if cmake --build build-gpu -j"$JOBS" > "$OUT/check_build.log" 2>&1; then
    row "build (s)" "$(( $(date +%s) - t0 ))"
  else
    grep -E "error" "$OUT/check_build.log" | head -30
    row "build" "FAILED (see check_build.log)"
    exit 1
  fi
fi

if has test; then
  (cd build-gpu && ctest -j"$JOBS" --output-on-failure --timeout 900) > "$OUT/check_ctest.log" 2>&1
  row "test suite (g++, PyTorch libtorch)" "$(summarise "$OUT/check_ctest.log")"
fi

if has asan; then
  t0=$(date +%s)
  gpu_configure build-gpu-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=ON -DSLUICE_WITH_TORCH=OFF \
      -DSLUICE_WITH_CUDA=OFF -DSLUICE_BUILD_BENCH=OFF > "$OUT/asan_configure.log" 2>&1
  if cmake --build build-gpu-asan -j"$JOBS" > "$OUT/asan_build.log" 2>&1; then
    (cd build-gpu-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest -j"$JOBS" --output-on-failure --timeout 900) > "$OUT/asan_ctest.log" 2>&1
    row "core suite under ASan/UBSan ($(( $(date +%s) - t0 )) s)" "$(summarise "$OUT/asan_ctest.log")"
  else
    grep -E "error" "$OUT/asan_build.log" | head -30
    row "ASan build" "FAILED (see asan_build.log)"
  fi
fi

if has python; then
  # The machine's python3 is a virtual environment with torch: the package goes into it (its own
  # numpy and torch, the build wheels from .deps/wheels), built in build-gpu-py with the cuda engine.
  t0=$(date +%s)
  zlib_so=$(ls /usr/lib/x86_64-linux-gnu/libz.so* /lib/x86_64-linux-gnu/libz.so* 2>/dev/null | head -1)
  py_defs="-DCMAKE_PREFIX_PATH=$PWD/.deps -DCMAKE_CUDA_ARCHITECTURES=90"
  if [ -f "$PWD/.deps/include/zlib.h" ] && [ -n "$zlib_so" ]; then
    py_defs="$py_defs -DZLIB_INCLUDE_DIR=$PWD/.deps/include -DZLIB_LIBRARY=$zlib_so"
  fi
  if SLUICE_PY_IN_PLACE=1 SLUICE_PY_BUILD_DIR=build-gpu-py SLUICE_PY_CMAKE="$py_defs" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
      bash scripts/test_python.sh > "$OUT/python.log" 2>&1; then
    row "python package ($(( $(date +%s) - t0 )) s)" "$(grep -E "passed|failed" "$OUT/python.log" | tail -1)"
  else
    tail -30 "$OUT/python.log"
    row "python package" "FAILED: $(grep -E "passed|failed|rror" "$OUT/python.log" | tail -1) (see python.log)"
  fi
  # Python loop vs C++ vs DataLoader (16 workers) on the cuda engine: a small generated dataset.
  if [ -f build-gpu-py/CMakeCache.txt ]; then
    python3 - > "$OUT/python_bench_data.log" 2>&1 <<'PY' || true
import sluice
t = sluice.gen("build-gpu-py/bench-raw", rows=16_000_000, days=2, seed=1, overwrite=True)
sluice.prep(t["files"], "build-gpu-py/bench-prep", overwrite=True)
PY
    python3 bench/bench_python_loader.py --data build-gpu-py/bench-raw --npy build-gpu-py/bench-prep --engine cuda \
        --device cuda --workers 16 > "$OUT/python_bench.log" 2>&1 && cat "$OUT/python_bench.log" \
      || row "python bench" "FAILED (see python_bench.log)"
  fi
fi

echo
echo "== gpu_check"
cat "$TABLE"
