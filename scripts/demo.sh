#!/usr/bin/env bash
# The demo: generate a synthetic Criteo-like dataset, prepare it, summarise it, and (when the trainer
# is built) train DLRM on it for one epoch, printing test AUC next to the oracle AUC.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
work=${SLUICE_DEMO_DIR:-$(mktemp -d -t sluice-demo-XXXXXX)}
rows=${SLUICE_DEMO_ROWS:-600000}
echo "== sluice gen: $rows rows over 4 days into $work/raw"
./build/sluice gen --rows "$rows" --days 4 --seed 42 --cardinality-scale 0.001 --out "$work/raw" --overwrite
echo "== sluice prep"
./build/sluice prep --out "$work/prepared" --overwrite "$work"/raw/day_*.tsv
echo "== sluice info"
./build/sluice info "$work/prepared"
if ./build/sluice train --help >/dev/null 2>&1; then
  device=cpu
  if python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then device=cuda; fi
  echo "== sluice train (1 epoch, $device)"
  ./build/sluice train --data "$work/prepared" --device "$device" --epochs 1 --batch-size 256 \
      --metrics "$work/metrics.jsonl" | tee "$work/train.log"
  result=$(tail -n 1 "$work/train.log")
  field() { grep -o "\"$1\": *[^,}]*" | head -1 | sed 's/.*: *//; s/"//g'; }
  auc=$(field test_auc <<<"$result")
  rate=$(field train_samples_per_s <<<"$result")
  dev=$(field device <<<"$result")
  oracle=$(field oracle_test_auc < "$work/raw/truth.json")
  awk -v a="$auc" -v o="$oracle" -v r="$rate" -v d="$dev" 'BEGIN {
    printf "test AUC %.4f   oracle AUC %.4f   gap %+.4f   train %.0f samples/s on %s\n", a, o, o - a, r, d }'
fi
echo "demo files are in $work"
