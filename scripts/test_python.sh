#!/usr/bin/env bash
# The Python package's tests: a fresh virtual environment, `pip install .` into it, then pytest over
# tests/python. The build-only packages (scikit-build-core, nanobind) and the tests' (numpy, pytest)
# come from .deps/wheels when it holds wheels (scripts/bundle_deps.sh; machines without network),
# else from PyPI. scikit-build-core keeps its CMake build in SLUICE_PY_BUILD_DIR (default
# build-py/cmake), so a later run rebuilds only what changed; given the project's own build directory
# (build/), it keeps that directory's options and compiles the extension alone.
#   SLUICE_PY_BUILD_DIR=DIR
#   SLUICE_PY_CMAKE="-DSLUICE_WITH_CUDA=OFF -DSLUICE_WITH_VERILATOR=OFF"  extra CMake definitions
#   SLUICE_PY_VENV=DIR   the environment (default build-py/venv, made anew each run)
#   SLUICE_PY_IN_PLACE=1 install into the running python3's own environment instead (a machine whose
#                        python3 is already a virtual environment holding torch)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
t0=$(date +%s)
if [ "${SLUICE_PY_IN_PLACE:-0}" = 1 ]; then
  VPY=$PY
else
  VENV=${SLUICE_PY_VENV:-build-py/venv}
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  VPY=$PWD/$VENV/bin/python
  case $VENV in /*) VPY=$VENV/bin/python ;; esac
fi
src=()
if ls .deps/wheels/*.whl >/dev/null 2>&1; then src=(--no-index --find-links .deps/wheels); fi
"$VPY" -m pip install -q --disable-pip-version-check "${src[@]}" "scikit-build-core>=0.10" "nanobind>=2.2" numpy pytest
t1=$(date +%s)
BUILD_DIR=${SLUICE_PY_BUILD_DIR:-build-py/cmake}
defs=()
for d in ${SLUICE_PY_CMAKE:-}; do defs+=(--config-settings="cmake.define.${d#-D}"); done
# An existing build directory keeps its generator (scikit-build-core would pick Ninja when present)
# and the options pyproject.toml sets otherwise: nothing but the extension is compiled again.
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
  # scikit-build-core clears a build directory's cache (and so rebuilds everything with default
  # options) when its own install path differs from the one recorded by the last pip build there;
  # without the record it configures the directory as it is.
  rm -f "$BUILD_DIR/.skbuild-info.json"
  if [ -z "${CMAKE_GENERATOR:-}" ]; then
    CMAKE_GENERATOR=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt")
    export CMAKE_GENERATOR
  fi
  for opt in SLUICE_BUILD_TESTS SLUICE_BUILD_BENCH SLUICE_WITH_TORCH; do
    v=$(sed -n "s/^$opt:BOOL=//p" "$BUILD_DIR/CMakeCache.txt")
    if [ -n "$v" ]; then defs+=(--config-settings="cmake.define.$opt=$v"); fi
  done
fi
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
  "$VPY" -m pip install -q --disable-pip-version-check "${src[@]}" --no-build-isolation --force-reinstall --no-deps \
  --config-settings=build-dir="$BUILD_DIR" "${defs[@]}" .
t2=$(date +%s)
# From outside the repository: the installed package is what gets imported.
(cd tests/python && "$VPY" -m pytest -q -rs -p no:cacheprovider .)
echo "python stage: environment $((t1 - t0)) s, pip install . $((t2 - t1)) s, pytest $(($(date +%s) - t2)) s"
