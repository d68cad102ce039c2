#!/usr/bin/env bash
# Fetches the libtorch of PyTorch 2.11 (the version on the GPU machines) from PyPI into .deps-torch/,
# so that sluice is built and tested here against the same libtorch its GPU users build against.
# Only the C++ parts are unpacked (headers, libraries, CMake config). PyPI's Linux wheel is the
# CUDA build: it links against the CUDA toolkit's libraries (cudart, cuBLAS, cuDNN, NCCL: found under
# $CUDA_HOME/lib64) and three small NVIDIA libraries fetched alongside (cuSPARSELt, NVSHMEM, cuFile).
# Prints the CMake prefix path on success; exits non-zero when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=${SLUICE_TORCH_VERSION:-2.11.0}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
DEST=.deps-torch
STAMP="$DEST/ok-$TORCH_VERSION-2"
if [ -f "$STAMP" ]; then echo "$PWD/$DEST/torch/share/cmake"; exit 0; fi
[ -f "$CUDA_HOME/lib64/libcudart.so" ] || { echo "fetch_torch: no CUDA toolkit libraries in $CUDA_HOME/lib64" >&2; exit 1; }
command -v python3 >/dev/null || { echo "fetch_torch: python3 is needed" >&2; exit 1; }
rm -rf "$DEST" && mkdir -p "$DEST/wheels"
py=$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
pip_dl() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$DEST/wheels" "$@" >&2
}
pip_dl "torch==$TORCH_VERSION"
pip_dl "nvidia-cusparselt-cu13==0.8.0" "nvidia-nvshmem-cu13==3.4.5" "nvidia-cufile==1.15.1.6.*"
python3 - "$DEST" <<'PY'
import glob, os, sys, zipfile
dest = sys.argv[1]
[torch_whl] = glob.glob(os.path.join(dest, "wheels", "torch-*.whl"))
with zipfile.ZipFile(torch_whl) as z:
    names = [n for n in z.namelist() if n.startswith(("torch/lib/", "torch/include/", "torch/share/"))]
    z.extractall(dest, names)
# The NVIDIA libraries keep the wheels' layout (nvidia/<name>/lib): libtorch_cuda.so's RPATH looks
# for them there, relative to itself, as in a pip install.
for whl in glob.glob(os.path.join(dest, "wheels", "nvidia_*.whl")):
    with zipfile.ZipFile(whl) as z:
        names = [n for n in z.namelist()
                 if n.startswith("nvidia/") and "/lib/" in n and os.path.basename(n).startswith(
                     ("libcusparseLt.so", "libnvshmem_host.so", "libcufile.so"))]
        z.extractall(dest, names)
PY
rm -rf "$DEST/wheels"
touch "$STAMP"
echo "$TORCH_VERSION" > "$DEST/version"
echo "$PWD/$DEST/torch/share/cmake"
