#!/usr/bin/env bash
# Builds, checks and times the GPU parts in one go on a CUDA machine with PyTorch installed and no
# network: run `bash scripts/bundle_deps.sh` beforehand where packages can be installed, and bring
# .deps/ along. Prints a short table last; full logs go to $OUT (or build-gpu/logs).
#   STAGES="build prep train e2e" bash scripts/gpu_bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT"
STAGES=${STAGES:-"build prep train e2e"}
JOBS=$(nproc)
TABLE="$OUT/table.txt"
: > "$TABLE"
row() { printf '%-58s %s\n' "$1" "$2" | tee -a "$TABLE"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
GPU=$(head -1 "$OUT/gpu.txt" | cut -d, -f1)
echo "cores: $JOBS"

if has build; then
  TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  ZLIB_SO=$(ls /usr/lib/x86_64-linux-gnu/libz.so* /lib/x86_64-linux-gnu/libz.so* 2>/dev/null | head -1)
  t0=$(date +%s)
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_TESTS=OFF \
        -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PWD/.deps" -DZLIB_INCLUDE_DIR="$PWD/.deps/include" \
        -DZLIB_LIBRARY="$ZLIB_SO" -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_CUDA_ARCHITECTURES=90 \
        > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
  cmake --build build-gpu -j"$JOBS" --target bench_prep > "$OUT/build_core.log" 2>&1 || { grep -E "error|Error" "$OUT/build_core.log" | head -40; exit 1; }
  if cmake --build build-gpu -j"$JOBS" > "$OUT/build.log" 2>&1; then
    row "build (s)" "$(( $(date +%s) - t0 ))"
  else
    grep -E "error|Error" "$OUT/build.log" | head -40
    row "build" "FAILED (core built; see build.log)"
  fi
fi
S=build-gpu/sluice

if has prep; then
  ./build-gpu/bench_prep --rows "${PREP_ROWS:-4000000}" --threads-max "$JOBS" --repeat 3 2>&1 | tee "$OUT/bench_prep.txt"
  base=$(grep -E "^baseline" "$OUT/bench_prep.txt" | sed -E 's/.*: ([0-9.]+) GB\/s.*/\1/')
  row "cpu engine baseline, 1 thread (GB/s)" "$base"
  while read -r t parse full mrows per ratio; do
    row "cpu engine full pipeline, $t threads (GB/s, x baseline)" "$full  ($ratio x)"
  done < <(grep -E "^[0-9]+ " "$OUT/bench_prep.txt")
fi

rate() {  # samples/s from the last JSON line of a log
  tail -1 "$1" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(round(r.get("train_samples_per_s", r.get("samples_per_s", 0))))' 2>/dev/null || echo fail
}

if has train; then
  for B in 4096 16384; do
    for P in ${PRECISIONS:-fp32}; do
      $S train --bench-synthetic --preset kaggle --table-sizes kaggle --batch-size $B --steps 300 --device cuda \
          --precision $P > "$OUT/train_sluice_${B}_$P.txt" 2>&1
      ours=$(rate "$OUT/train_sluice_${B}_$P.txt")
      row "train-only kaggle B=$B sluice $P (samples/s)" "$ours"
    done
    python3 bench/train_baseline.py --preset kaggle --table-sizes kaggle --batch-size $B --steps 300 --device cuda \
        > "$OUT/train_baseline_$B.txt" 2>&1
    base=$(rate "$OUT/train_baseline_$B.txt")
    ours=$(rate "$OUT/train_sluice_${B}_fp32.txt")
    ratio=$(python3 -c "print(f'{$ours/$base:.2f}')" 2>/dev/null || echo "?")
    row "train-only kaggle B=$B plain PyTorch (samples/s); sluice fp32 / it" "$base; ${ratio}x"
  done
fi

if has e2e; then
  D=build-gpu/e2e
  rm -rf "$D"
  $S gen --rows "${E2E_ROWS:-8000000}" --days 4 --seed 3 --cardinality-scale 0.05 --out "$D/raw" > "$OUT/e2e_gen.txt" 2>&1
  # Pageable ring first (A), then the default page-locked ring (B), on the same data.
  $S train --data "$D/raw" --device cuda --epochs 1 --batch-size 16384 --online-ids first-seen --max-ind-range 1000000 \
      --no-pinned > "$OUT/e2e_train_pageable.txt" 2>&1
  tail -1 "$OUT/e2e_train_pageable.txt" | python3 -c '
import json,sys
r=json.loads(sys.stdin.read())
print("E2E", round(r["train_samples_per_s"]), r.get("data_wait_fraction","?"), round(r["test_auc"],4))' > "$OUT/e2e_pageable.txt" 2>/dev/null
  read -r _ rate wait auc < "$OUT/e2e_pageable.txt" || true
  row "end-to-end, pageable ring (samples/s)" "${rate:-fail} (data wait fraction ${wait:-?}, test AUC ${auc:-?})"
  $S train --data "$D/raw" --device cuda --epochs 1 --batch-size 16384 --online-ids first-seen --max-ind-range 1000000 \
      > "$OUT/e2e_train.txt" 2>&1
  tail -1 "$OUT/e2e_train.txt" | python3 -c '
import json,sys
r=json.loads(sys.stdin.read())
print("E2E", round(r["train_samples_per_s"]), r.get("data_wait_fraction","?"), round(r["test_auc"],4))' > "$OUT/e2e.txt" 2>/dev/null
  read -r _ rate wait auc < "$OUT/e2e.txt" || true
  row "end-to-end raw TSV -> cpu engine -> GPU train, pinned ring" "${rate:-fail} (data wait fraction ${wait:-?}, test AUC ${auc:-?})"
fi

echo
echo "== $GPU, $JOBS cores"
cat "$TABLE"
