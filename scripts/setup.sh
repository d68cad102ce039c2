#!/usr/bin/env bash
# Installs what building and testing sluice needs (Debian/Ubuntu), skipping what is already there.
set -euo pipefail
pkgs=(cmake g++ make pkg-config zlib1g-dev libcli11-dev nlohmann-json3-dev libgtest-dev)
# libtorch-dev links the generic libblas.so.3; OpenBLAS replaces it through alternatives (reference BLAS is ~10x slower).
[ "${SLUICE_NO_TORCH:-0}" = 1 ] || pkgs+=(libtorch-dev libopenblas0-pthread)
[ "${SLUICE_WITH_PLOT:-0}" = 1 ] && pkgs+=(python3-matplotlib)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
