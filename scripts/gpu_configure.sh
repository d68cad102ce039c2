#!/usr/bin/env bash
# Sourced by the GPU scripts: configures a build directory on a CUDA machine that has PyTorch but
# cannot install packages. Header-only dependencies, zlib's headers and GoogleTest's sources come from
# .deps/ (made by scripts/bundle_deps.sh where packages can be installed); libtorch is PyTorch's own
# (torch.utils.cmake_prefix_path), built the way users on that machine build against it.
#   gpu_configure BUILD_DIR [extra cmake args...]
gpu_configure() {
  local dir=$1
  shift
  # Verilator from .deps (scripts/bundle_deps.sh) where the machine has none: the fpga engine is built too.
  if ! command -v verilator_bin >/dev/null 2>&1 && [ -z "${VERILATOR_ROOT:-}" ] && [ -x "$PWD/.deps/verilator/bin/verilator_bin" ]; then
    export VERILATOR_ROOT="$PWD/.deps/verilator"
  fi
  local torch_prefix zlib_so
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
  zlib_so=$(ls /usr/lib/x86_64-linux-gnu/libz.so* /lib/x86_64-linux-gnu/libz.so* 2>/dev/null | head -1)
  local zlib_args=()
  if [ -f "$PWD/.deps/include/zlib.h" ] && [ -n "$zlib_so" ]; then
    zlib_args=(-DZLIB_INCLUDE_DIR="$PWD/.deps/include" -DZLIB_LIBRARY="$zlib_so")
  fi
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="${torch_prefix};$PWD/.deps" "${zlib_args[@]}" \
        -DSLUICE_GTEST_SOURCE="$PWD/.deps/googletest-src" \
        -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_CUDA_ARCHITECTURES=90 "$@"
}
