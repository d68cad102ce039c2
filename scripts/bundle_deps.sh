#!/usr/bin/env bash
# Copies the header-only build dependencies (CLI11, nlohmann-json), zlib's headers, ISA-L and the
# Python package's build wheels into .deps/,
# a relocatable prefix for building on a machine that cannot install packages (e.g. a GPU host
# without network access): cmake -DCMAKE_PREFIX_PATH=$PWD/.deps ...
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf .deps && mkdir -p .deps/include .deps/share/cmake
cp -r /usr/include/CLI /usr/include/nlohmann .deps/include/
cp /usr/include/zlib.h /usr/include/zconf.h .deps/include/
cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json .deps/share/cmake/
# ISA-L (gzip inflation), when installed: headers and the shared library (found through the prefix).
if [ -f /usr/include/isa-l/igzip_lib.h ]; then
  mkdir -p .deps/lib
  cp -r /usr/include/isa-l /usr/include/isa-l.h .deps/include/
  cp -a /usr/lib/x86_64-linux-gnu/libisal.so* .deps/lib/
fi
# Gloo's headers and nccl.h: libtorch's process groups (training on several ranks) are declared with them.
if [ -d /usr/include/gloo ]; then cp -r /usr/include/gloo .deps/include/; fi
for h in /usr/local/cuda/include/nccl.h /usr/include/nccl.h /usr/local/include/nccl.h; do
  if [ -f "$h" ]; then cp "$h" .deps/include/; break; fi
done
if [ -d /usr/src/googletest ]; then cp -r /usr/src/googletest .deps/googletest-src; fi
# Verilator (the fpga engine's simulated core: a build-time tool) as a relocatable VERILATOR_ROOT:
# the Debian package's verilator_bin (linked against libc and libm only), include/ and CMake config.
# scripts/gpu_configure.sh points VERILATOR_ROOT at it on machines without Verilator.
vtmp=$(mktemp -d)
if (cd "$vtmp" && apt-get download verilator >/dev/null 2>&1) && dpkg -x "$vtmp"/verilator_*.deb "$vtmp/root"; then
  mkdir -p .deps/verilator/bin
  cp "$vtmp/root/usr/bin/verilator_bin" .deps/verilator/bin/
  cp -r "$vtmp/root/usr/share/verilator/include" "$vtmp/root/usr/share/verilator/"verilator-config*.cmake .deps/verilator/
else
  echo "bundle_deps: could not download the verilator package; the GPU machine's build leaves the fpga engine out"
fi
rm -rf "$vtmp"
# The Python package's build and test wheels (all pure Python), for `pip install --no-index
# --find-links .deps/wheels --no-build-isolation .` there (scripts/test_python.sh does it); numpy and
# torch are the machine's own.
python3 -m pip download -q --disable-pip-version-check --only-binary=:all: -d .deps/wheels \
  "scikit-build-core>=0.10" "nanobind>=2.2" pytest
du -sh .deps
