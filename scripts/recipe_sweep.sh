#!/usr/bin/env bash
# The evidence for the trainer's default recipe (docs/trainer.md): generated data (8 M rows in 8 days,
# --cardinality-scale 0.05), prepared once, then one epoch per setting on the GPU: batch size x
# optimizer x learning rate x warm-up -> test AUC, the recipe's TF32 against fp32 over two seeds, and
# the generator's oracle AUC. "recipe" is the default (no --lr / --lr-num-warmup-steps given). Prints a
# table (markdown) last.
#   bash scripts/recipe_sweep.sh [LOGDIR]
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-build-gpu/logs}/recipe
mkdir -p "$LOG"
S=${SLUICE:-build-gpu/sluice}
D=${RECIPE_DATA:-/tmp/sluice-recipe}
ROWS=${RECIPE_ROWS:-8000000}
if [ ! -f "$D/prep/manifest.json" ]; then
  rm -rf "$D"
  $S gen --rows "$ROWS" --days 8 --seed 5 --cardinality-scale 0.05 --out "$D/raw" > "$LOG/gen.txt" 2>&1 || { cat "$LOG/gen.txt"; exit 1; }
  $S prep --days 8 -o "$D/prep" "$D"/raw/day_*.tsv > "$LOG/prep.txt" 2>&1 || { cat "$LOG/prep.txt"; exit 1; }
fi
oracle=$(python3 -c "import json; print(round(json.load(open('$D/raw/truth.json'))['oracle_test_auc'], 4))")
TABLE="$LOG/table.md"
{
  echo "oracle test AUC: $oracle ($ROWS generated rows, 8 days, --cardinality-scale 0.05; one epoch over days 0-6)"
  echo
  echo "| batch | optimizer | lr | warm-up steps | precision | seed | test AUC | samples/s |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$TABLE"
one() {  # one B OPT LR WARMUP PREC SEED (LR, WARMUP: a value or "recipe")
  local B=$1 opt=$2 lr=$3 wu=$4 prec=$5 seed=$6
  local f="$LOG/B${B}_${opt}_${lr}_${wu}_${prec}_${seed}.txt"
  local args=()
  [ "$lr" != recipe ] && args+=(--lr "$lr")
  [ "$wu" != recipe ] && args+=(--lr-num-warmup-steps "$wu")
  $S train --data "$D/prep" --device "${DEVICE:-cuda}" --epochs 1 --batch-size "$B" --optimizer "$opt" "${args[@]}" \
      --precision "$prec" --seed "$seed" --progress-every 0 > "$f" 2>&1
  python3 - "$f" "$B" "$opt" "$lr" "$wu" "$prec" "$seed" >> "$TABLE" <<'PY'
import json, sys
f, B, opt, lr, wu, prec, seed = sys.argv[1:]
if wu == "recipe":
    wu = "recipe (0)"
if lr == "recipe":
    lr = "recipe (0.01)" if opt == "adagrad" else "recipe (0.1)"
try:
    j = json.loads(open(f).read().strip().splitlines()[-1])
    print(f"| {B} | {opt} | {lr} | {wu} | {prec} | {seed} | {j['test_auc']:.4f} | {j['train_samples_per_s']/1e6:.2f} M |")
except Exception:
    print(f"| {B} | {opt} | {lr} | {wu} | {prec} | {seed} | failed | |")
PY
}
for B in ${RECIPE_BATCHES:-256 1024 2048 4096 16384 65536}; do
  W=$(( ((1 << 18) + B - 1) / B ))  # a warm-up over the first 2^18 samples
  one "$B" adagrad recipe "$W" tf32 123
  one "$B" adagrad 0.005 "$W" tf32 123
  one "$B" adagrad 0.02 "$W" tf32 123
  one "$B" adagrad recipe recipe tf32 123
  one "$B" sgd recipe recipe tf32 123
done
# The largest batch has few steps per epoch: a higher rate with a longer warm-up.
one 65536 adagrad 0.04 16 tf32 123
# TF32 against fp32, two seeds each, at the recipe.
for B in 2048 16384; do
  for seed in 1 2; do
    one "$B" adagrad recipe $(( (1 << 18) / B )) fp32 "$seed"
    one "$B" adagrad recipe $(( (1 << 18) / B )) tf32 "$seed"
  done
done
cat "$TABLE"
