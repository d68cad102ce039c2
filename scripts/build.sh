#!/usr/bin/env bash
# Configures and builds sluice into build/ (Release). Extra arguments go to cmake's configure step.
# Uses the libtorch that scripts/setup.sh fetched into .deps-torch/ when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
torch_args=()
if ls .deps-torch/ok-* >/dev/null 2>&1; then
  torch_args=(-DCMAKE_PREFIX_PATH="$PWD/.deps-torch/torch/share/cmake" -DTorch_DIR="$PWD/.deps-torch/torch/share/cmake/Torch"
              -DSLUICE_EXTRA_LIB_DIRS="$PWD/.deps-torch/nvidia/cu13/lib;$PWD/.deps-torch/nvidia/cusparselt/lib;$PWD/.deps-torch/nvidia/nvshmem/lib;${CUDA_HOME:-/usr/local/cuda}/lib64")
fi
# The Python extension is pip's to build (scripts/test_python.sh turns it on in this directory, with its
# own environment's Python): off here, so that this build never depends on that environment.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_PYTHON=OFF "${torch_args[@]}" "$@" >/dev/null
cmake --build build -j"$jobs"
