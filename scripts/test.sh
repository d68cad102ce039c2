#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test (ctest) and the Python package's
# tests (scripts/test_python.sh: pip install . into a fresh virtual environment, pytest), then builds and runs
# the core tests again under AddressSanitizer + UndefinedBehaviorSanitizer, and runs the fuzzer
# briefly when clang is present. SLUICE_QUICK=1 skips the sanitizer and fuzz stages. The sanitizer
# build leaves the fpga engine out (no Verilated core): it also checks that a build without
# Verilator works and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Without a GPU nothing here runs device code, and the GPU tests report as skipped: device code is
# compiled to PTX only (CUDA arch 90-virtual; the driver would compile it for the GPU where it runs),
# which leaves out ptxas's machine-code generation, minutes of this build's time for the trainer's
# kernels. Builds on a GPU machine (scripts/gpu_check.sh, or this script there) compile sm_90 code.
cuda_args=()
if ! nvidia-smi -L >/dev/null 2>&1; then cuda_args=(-DCMAKE_CUDA_ARCHITECTURES=90-virtual); fi
bash scripts/build.sh "${cuda_args[@]}"
echo "== tests (Release)"
(cd build && ctest --output-on-failure -j2 --timeout 1800)
echo "== Python package: a fresh virtual environment, pip install ., pytest"
# scikit-build-core builds in build/ with the options build.sh gave it: only the extension compiles.
SLUICE_PY_BUILD_DIR=build bash scripts/test_python.sh
if [ "${SLUICE_QUICK:-0}" != 1 ]; then
  echo "== core tests under ASan/UBSan"
  # -g1: line tables only (what the sanitizers' stack traces print), which compiles much faster than -g;
  # -O1 compiles in 58-72% of -O2's time (test_prep.cpp 47.5 s against 81.8 s on a 2-core machine).
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
        -DSLUICE_SANITIZE=ON -DSLUICE_WITH_TORCH=OFF \
        -DSLUICE_WITH_CUDA=OFF -DSLUICE_WITH_VERILATOR=OFF -DSLUICE_BUILD_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$(nproc 2>/dev/null || echo 2)"  # every test binary ctest will look for
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j2 --timeout 1800)
  if command -v clang++ >/dev/null 2>&1; then
    echo "== fuzzing the line parser (30 s)"
    CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_FUZZ=ON \
          -DSLUICE_WITH_TORCH=OFF -DSLUICE_WITH_CUDA=OFF -DSLUICE_WITH_VERILATOR=OFF -DSLUICE_BUILD_TESTS=OFF \
          -DSLUICE_BUILD_BENCH=OFF >/dev/null
    cmake --build build-fuzz -j"$(nproc 2>/dev/null || echo 2)" --target fuzz_line_parser
    mkdir -p build-fuzz/corpus
    ./build-fuzz/fuzz/fuzz_line_parser -max_total_time=30 -print_final_stats=0 build-fuzz/corpus tests/data >/dev/null 2>build-fuzz/fuzz.log \
      || { tail -50 build-fuzz/fuzz.log; exit 1; }
    echo "fuzzer: no failures in 30 s"
  fi
fi
