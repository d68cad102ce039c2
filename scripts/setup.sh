#!/usr/bin/env bash
# Installs what building and testing sluice needs (Debian/Ubuntu), skipping what is already there.
# libtorch: PyTorch 2.11's (the GPU machines' version), fetched from PyPI by scripts/fetch_torch.sh
# when the CUDA toolkit is present (PyPI's Linux libtorch is the CUDA build); otherwise Debian's
# libtorch-dev (CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(cmake g++ make pkg-config zlib1g-dev libcli11-dev nlohmann-json3-dev libgtest-dev)
# numpy: the tests read the npy and npz outputs with it, as TorchRec's and Meta's loaders do
# (those checks are skipped without it).
pkgs+=(python3-numpy)
# The Python package (scripts/test_python.sh): a virtual environment and the headers its extension builds against.
pkgs+=(python3-venv python3-dev)
# matplotlib: `sluice plot` and the plots of `sluice measure` (its test, Measure.Quick, checks them).
pkgs+=(python3-matplotlib)
# The fpga engine's simulated core (Verilator) and its area estimate (Yosys). SLUICE_NO_FPGA=1 skips them.
[ "${SLUICE_NO_FPGA:-0}" = 1 ] || pkgs+=(verilator yosys)
python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
want_debian_torch=0
missing=()
install() {
  [ $# -gt 0 ] || return 0
  echo "setup: installing $*"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
install "${missing[@]}"
# ISA-L's igzip inflates gzip inputs about 2.5x faster than zlib (docs/inputs.md). Optional: where
# the package cannot be installed, the build inflates with zlib.
if ! dpkg-query -W -f='${Status}' libisal-dev 2>/dev/null | grep -q "install ok installed"; then
  install libisal-dev || echo "setup: libisal-dev not installed; gzip inputs will inflate with zlib"
fi
# Gloo's headers: libtorch's c10d process groups need them for training on several ranks (libtorch
# carries Gloo's code, not its headers). Optional: without them the trainer runs one process.
if ! dpkg-query -W -f='${Status}' libgloo-dev 2>/dev/null | grep -q "install ok installed"; then
  install libgloo-dev || echo "setup: libgloo-dev not installed; sluice train runs on one rank only"
fi
if [ "${SLUICE_NO_TORCH:-0}" != 1 ]; then
  if [ "${SLUICE_DEBIAN_TORCH:-0}" != 1 ] && bash scripts/fetch_torch.sh >/dev/null; then
    echo "setup: libtorch $(cat .deps-torch/version 2>/dev/null) in .deps-torch"
  else
    want_debian_torch=1
  fi
fi
if [ "$want_debian_torch" = 1 ]; then
  # libtorch-dev links the generic libblas.so.3; OpenBLAS replaces it through alternatives (reference BLAS is ~10x slower).
  missing=()
  for p in libtorch-dev libopenblas0-pthread; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  install "${missing[@]}"
fi
