#!/usr/bin/env bash
# Speed on a CUDA machine with PyTorch and no network, in one call: builds (unless STAGES leaves it
# out and build-gpu/ exists), then times the engines, training alone, and raw data -> trained model,
# each against a baseline of the same run. Bring .deps/ (scripts/bundle_deps.sh). Prints a short
# table last; full logs go to $OUT (or build-gpu/logs).
#   STAGES="build engine prep prepdays train kernels recipe e2e gzip trace kaggle presets dist measure" bash scripts/gpu_bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT"
STAGES=${STAGES:-"build engine train e2e"}
JOBS=$(nproc)
TABLE="$OUT/table.txt"
: > "$TABLE"
row() { printf '%-62s %s\n' "$1" "$2" | tee -a "$TABLE"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
source scripts/gpu_configure.sh
DATA=${DATA_DIR:-/tmp/sluice-bench}
mkdir -p "$DATA"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
GPU=$(head -1 "$OUT/gpu.txt" | cut -d, -f1)
echo "cores: $JOBS"

if has build; then
  t0=$(date +%s)
  gpu_configure build-gpu > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
  if cmake --build build-gpu -j"$JOBS" > "$OUT/build.log" 2>&1; then
    row "build (s)" "$(( $(date +%s) - t0 ))"
  else
    grep -E "error|Error" "$OUT/build.log" | head -40
    row "build" "FAILED (see build.log)"
    exit 1
  fi
fi
S=build-gpu/sluice

timed() {  # timed FILE CMD...: runs CMD, writes its wall seconds to FILE
  local f=$1
  shift
  local a b
  a=$(date +%s.%N)
  "$@"
  local rc=$?
  b=$(date +%s.%N)
  python3 -c "print(round($b - $a, 2))" > "$f"
  return $rc
}

json() {  # a key of the last JSON line of a log
  tail -1 "$1" | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); v=r.get('$2'); print(round(v,4) if isinstance(v,float) else v)" 2>/dev/null || echo fail
}

if has engine; then
  # One generated day in the page cache, Kaggle cardinalities: the engines side by side.
  ./build-gpu/bench_engine --rows "${ENGINE_ROWS:-16000000}" --repeat 3 2>&1 | tee "$OUT/bench_engine.txt"
  while IFS= read -r line; do
    name=$(echo "$line" | sed -E 's/ +[0-9.]+ +[0-9.]+ +[0-9.]+$//')
    nums=$(echo "$line" | grep -oE '[0-9.]+ +[0-9.]+ +[0-9.]+$')
    read -r gbs mrows x <<< "$nums"
    row "engine: $name (GB/s, x cpu engine)" "$gbs ($x x)"
  done < <(grep -E "^(cpu|copy|register|cuda|  the same|  mapping|  made|kernels)" "$OUT/bench_engine.txt")
fi

if has prep; then
  ./build-gpu/bench_prep --rows "${PREP_ROWS:-4000000}" --threads-max "$JOBS" --repeat 3 2>&1 | tee "$OUT/bench_prep.txt"
  base=$(grep -E "^baseline" "$OUT/bench_prep.txt" | sed -E 's/.*: ([0-9.]+) GB\/s.*/\1/')
  row "cpu engine baseline, 1 thread (GB/s)" "$base"
  while read -r t parse full mrows per ratio cpu fs prep prep_fs; do
    row "cpu engine full pipeline, $t threads (GB/s, x baseline)" "$full  ($ratio x)"
    row "  first-seen ids built / prep command to tmpfs, $t threads (GB/s)" "$fs / $prep ($prep_fs x)"
  done < <(grep -E "^[0-9]+ " "$OUT/bench_prep.txt")
fi

if has prepdays; then
  # prep --days: the days written in one pass (the rows counted first), against the spill-and-cut path
  # (forced by --on-error skip on the same clean files), for each engine; outputs to disk, then to
  # /dev/shm (writing bound apart).
  D="$DATA/prepdays"
  [ -f "$D/raw/truth.json" ] || { rm -rf "$D"; $S gen --rows "${PREPDAYS_ROWS:-16000000}" --days 4 --seed 9 \
      --cardinality-scale 1 --no-sync --out "$D/raw" > /dev/null 2>&1; }
  cat "$D"/raw/day_*.tsv > /dev/null
  # "inline": the parts written on the engine's thread (SLUICE_PREP_WRITE_INLINE=1), as before the
  # writing thread; the per-input parts (no --days) too.
  for dst in "$D/out" /dev/shm/sluice-prepdays; do
    for e in cpu cuda; do
      for v in "fail 0 --days 7" "fail 1 --days 7" "skip 0 --days 7" "fail 0" "fail 1"; do
        read -r mode inl days <<< "$v"
        rm -rf "$dst"; sync
        timed "$OUT/prepdays_s.txt" env SLUICE_PREP_WRITE_INLINE=$inl $S prep -q --engine $e $days --on-error $mode \
            -o "$dst" "$D"/raw/day_*.tsv
        what="${days:-per input}, $( [ $mode = fail ] && echo "one pass" || echo "spilled" )$( [ $inl = 1 ] && echo ", inline" )"
        row "prep $what --engine $e, to $( [[ $dst == /dev/shm/* ]] && echo tmpfs || echo disk ) (s)" \
            "$(cat "$OUT/prepdays_s.txt")"
      done
    done
  done
  rm -rf "$D/out" /dev/shm/sluice-prepdays
fi

if has train; then
  # Training alone, Kaggle preset and table sizes, batches resident on the GPU. sluice's fused step
  # (CUDA graph) in tf32 and fp32 and its autograd step, against the same model in plain PyTorch with
  # one fused table and TF32: the dense part under torch.compile(mode="reduce-overhead") (Inductor +
  # CUDA graphs), and eager.
  for B in ${TRAIN_BATCHES:-4096 16384}; do
    for v in "tf32 auto" "fp32 auto" "tf32 autograd"; do
      read -r p st <<< "$v"
      $S train --bench-synthetic --preset kaggle --table-sizes kaggle --batch-size $B --steps 300 --device cuda \
          --optimizer sgd --lr 0.1 --precision $p --step $st > "$OUT/train_sluice_${p}_${st}_$B.txt" 2>&1
    done
    for v in fused-compiled fused; do
      python3 bench/train_baseline.py --variant $v --tf32 --preset kaggle --table-sizes kaggle --batch-size $B \
          --steps 300 --device cuda > "$OUT/train_baseline_${v}_$B.txt" 2>&1
    done
    comp=$(json "$OUT/train_baseline_fused-compiled_$B.txt" samples_per_s)
    eager=$(json "$OUT/train_baseline_fused_$B.txt" samples_per_s)
    row "train-only kaggle B=$B: PyTorch compiled / eager, tf32 (samples/s)" "$comp / $eager"
    for v in "tf32 auto" "fp32 auto" "tf32 autograd"; do
      read -r p st <<< "$v"
      f="$OUT/train_sluice_${p}_${st}_$B.txt"
      ours=$(json "$f" samples_per_s)
      ratio=$(python3 -c "print(f'{$ours/$comp:.2f}')" 2>/dev/null || echo "?")
      row "  sluice $p $(json "$f" step) (samples/s, x compiled)" "$ours (${ratio}x)"
    done
    # Adagrad (the default optimiser) costs a little more.
    $S train --bench-synthetic --preset kaggle --table-sizes kaggle --batch-size $B --steps 300 --device cuda \
        --precision tf32 > "$OUT/train_sluice_adagrad_$B.txt" 2>&1
    row "  sluice tf32 $(json "$OUT/train_sluice_adagrad_$B.txt" step), adagrad (samples/s)" \
        "$(json "$OUT/train_sluice_adagrad_$B.txt" samples_per_s)"
  done
fi

if has presets; then
  # The large presets at full size on one GPU, training alone (batches resident, uniform ids): the
  # terabyte preset (d 64) on Criteo Terabyte's tables capped at 10 M rows, and the mlperf preset (d 128)
  # on the 40 M-capped tables (188 M rows: 96 GB of float32, 48 GB as half). What does not fit must say
  # so before allocating, and name the option that would fit.
  mem_gb=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1 | awk '{print int($1/1024)}')
  pr() {  # pr NAME ARGS...: one timed synthetic run
    local name=$1
    shift
    $S train --bench-synthetic --device cuda --steps "${PRESET_STEPS:-100}" "$@" > "$OUT/preset_$name.txt" 2>&1
    if [ "$(json "$OUT/preset_$name.txt" samples_per_s)" = fail ]; then
      row "  $name" "not run: $(grep -m1 -E 'error|out of memory' "$OUT/preset_$name.txt" | cut -c1-300)"
    else
      row "  $name (samples/s; init s; GPU GB used)" "$(json "$OUT/preset_$name.txt" samples_per_s); $(json "$OUT/preset_$name.txt" model_init_seconds); $(python3 -c "print(round($(json "$OUT/preset_$name.txt" device_memory_used_bytes)/1e9,1))")"
    fi
  }
  row "large presets, synthetic batches, adagrad, tf32 ($mem_gb GiB GPU)" ""
  pr terabyte_10M_fp32_B16384 --preset terabyte --table-sizes terabyte --max-ind-range 10000000 --batch-size 16384
  pr terabyte_10M_bf16_B16384 --preset terabyte --table-sizes terabyte --max-ind-range 10000000 --batch-size 16384 --emb-dtype bf16
  for dt in ${PRESET_DTYPES:-fp32 fp16 bf16}; do
    for B in ${PRESET_BATCHES:-65536 16384}; do
      pr mlperf_40M_${dt}_B$B --preset mlperf --table-sizes terabyte --batch-size $B --emb-dtype $dt
    done
  done
fi

if has embdtype; then
  # Half-precision tables on the Kaggle preset: speed and (on generated data) AUC against float32.
  for dt in fp32 fp16 bf16; do
    $S train --bench-synthetic --preset kaggle --table-sizes kaggle --batch-size 16384 --steps 300 --device cuda \
        --emb-dtype $dt > "$OUT/embdtype_bench_$dt.txt" 2>&1
    row "kaggle B=16384 --emb-dtype $dt (samples/s)" "$(json "$OUT/embdtype_bench_$dt.txt" samples_per_s)"
  done
  D="$DATA/embdtype"
  [ -f "$D/raw/truth.json" ] || { rm -rf "$D"; $S gen --rows 8000000 --days 4 --seed 11 --cardinality-scale 0.05 \
      --out "$D/raw" > "$OUT/embdtype_gen.txt" 2>&1; }
  [ -f "$D/prep/.sluice-output" ] || $S prep --engine cuda -o "$D/prep" --overwrite "$D"/raw/day_*.tsv > "$OUT/embdtype_prep.txt" 2>&1
  row "  oracle AUC of the generated data" "$(python3 -c "import json; print(round(json.load(open('$D/raw/truth.json')).get('oracle_test_auc', float('nan')),4))" 2>/dev/null)"
  for dt in fp32 fp16 bf16; do
    for B in 2048 16384; do
      $S train --data "$D/prep" --device cuda --epochs 1 --batch-size $B --emb-dtype $dt > "$OUT/embdtype_train_${dt}_$B.txt" 2>&1
      row "  8M rows, 1 epoch, B=$B --emb-dtype $dt: test AUC" "$(json "$OUT/embdtype_train_${dt}_$B.txt" test_auc)"
    done
  done
fi

if has recipe; then
  bash scripts/recipe_sweep.sh "$OUT" | tee "$OUT/recipe.txt"
  row "recipe sweep" "$OUT/recipe.txt"
fi

if has kernels; then
  ./build-gpu/bench_train_kernels 2>&1 | tee "$OUT/bench_train_kernels.txt"
fi

if has e2e; then
  # Raw day files -> GPU training at batch 16384: the cpu engine feeding a pinned host ring, then the
  # cuda engine making batches in GPU memory; training alone on the same model for reference.
  D="$DATA/e2e"
  [ -f "$D/raw/truth.json" ] || { rm -rf "$D"; $S gen --rows "${E2E_ROWS:-24000000}" --days 4 --seed 3 --cardinality-scale 0.05 \
      --out "$D/raw" > "$OUT/e2e_gen.txt" 2>&1; }
  common=(--data "$D/raw" --device cuda --epochs 1 --batch-size 16384 --online-ids first-seen --max-ind-range 1000000)
  $S train "${common[@]}" --engine cpu > "$OUT/e2e_cpu.txt" 2>&1
  $S train "${common[@]}" --engine cuda > "$OUT/e2e_cuda.txt" 2>&1
  for e in cpu cuda; do
    row "e2e raw -> $e engine -> GPU train B=16384 (samples/s)" \
        "$(json "$OUT/e2e_$e.txt" train_samples_per_s), after 20 steps $(json "$OUT/e2e_$e.txt" steady_samples_per_s) (waiting for data $(json "$OUT/e2e_$e.txt" data_wait_fraction), test AUC $(json "$OUT/e2e_$e.txt" test_auc))"
  done
  $S train --bench-synthetic --preset kaggle --table-sizes 1000000 --batch-size 16384 --steps 300 --device cuda \
      > "$OUT/e2e_synthetic.txt" 2>&1
  # Training alone on these very batches (a prep output read back through the host ring), to tell
  # the engine's cost from the data's (skewed ids train slower than the synthetic uniform ones).
  $S prep --engine cuda -o "$D/prep" --max-ind-range 1000000 --overwrite "$D"/raw/day_*.tsv > "$OUT/e2e_prep.txt" 2>&1
  $S train --data "$D/prep" --device cuda --epochs 1 --batch-size 16384 > "$OUT/e2e_prepared.txt" 2>&1
  row "e2e prepared (same rows) -> GPU train B=16384 (samples/s)" \
      "$(json "$OUT/e2e_prepared.txt" train_samples_per_s), after 20 steps $(json "$OUT/e2e_prepared.txt" steady_samples_per_s) (waiting for data $(json "$OUT/e2e_prepared.txt" data_wait_fraction))"
  syn=$(json "$OUT/e2e_synthetic.txt" samples_per_s)
  cu=$(json "$OUT/e2e_cuda.txt" train_samples_per_s)
  row "  same model, training alone (samples/s); cuda e2e / it" "$syn; $(python3 -c "print(f'{$cu/$syn:.2f}')" 2>/dev/null || echo ?)"
  # Training alone on the data's own batches (its skewed ids), resident on the GPU: what the engine
  # should be measured against.
  $S train --bench-synthetic --data "$D/prep" --max-ind-range 1000000 --batch-size 16384 --steps 300 \
      --bench-batches 64 --device cuda > "$OUT/e2e_resident.txt" 2>&1
  res=$(json "$OUT/e2e_resident.txt" samples_per_s)
  cus=$(json "$OUT/e2e_cuda.txt" steady_samples_per_s)
  row "  same model, training alone on these rows' first 64 batches (samples/s); cuda e2e / it (whole run, after 20 steps)" \
      "$res; $(python3 -c "print(f'{$cu/$res:.2f}, {$cus/$res:.2f}')" 2>/dev/null || echo ?)"
fi

if has gzip; then
  # gzip inputs on this host: each inflater on one core, several files inflating at once, one file
  # inflating on many cores through its index, and the e2e days as .gz (gzip -6) against the same days
  # as text: prep on the cpu engine (all cores) and training through the cuda engine. First reads
  # ("gz", "one") have no index beside them before each command, so each decodes its files on every
  # core from guessed block boundaries (leaving their indexes); serial runs ("gzs", "ones") set
  # SLUICE_GZ_INDEX=0 (one core per file, no index).
  # GZIP_ROWS, GZIP_DAYS, GZIP_SCALE (default: the e2e stage's data) choose another set, e.g. the
  # Kaggle-size one: GZIP_ROWS=45840617 GZIP_DAYS=7 GZIP_SCALE=1.
  D="$DATA/e2e"
  [ -n "${GZIP_ROWS:-}" ] && D="$DATA/gzip-$GZIP_ROWS-${GZIP_DAYS:-4}"
  [ -f "$D/raw/truth.json" ] || { rm -rf "$D"; $S gen --rows "${GZIP_ROWS:-${E2E_ROWS:-24000000}}" --days "${GZIP_DAYS:-4}" \
      --seed 3 --cardinality-scale "${GZIP_SCALE:-0.05}" --out "$D/raw" > "$OUT/gzip_gen.txt" 2>&1; }
  mkdir -p "$D/gz" "$D/one" "$D/gzi"
  for f in "$D"/raw/day_*.tsv; do
    g="$D/gz/$(basename "$f").gz"
    [ -f "$g" ] || { gzip -6 -c "$f" > "$g.tmp" && mv "$g.tmp" "$g"; } &
  done
  wait
  rm -f "$D"/gz/*.sluice-gzi "$D"/one/*.sluice-gzi "$D"/gzi/* "$OUT"/gzip_same_*.txt
  # One file of every training day (concatenated members; the last day, which tests, beside it), and
  # the days again with their indexes.
  last=$(ls "$D"/gz/day_*.tsv.gz | sort -V | tail -1)
  cat $(ls "$D"/gz/day_*.tsv.gz | sort -V | head -n -1) > "$D/one/day_0.tsv.gz"
  cp "$last" "$D/one/day_1.tsv.gz"
  cp "$D"/gz/day_*.tsv.gz "$D/gzi/"
  [ -n "${GZIP_DATA_ONLY:-}" ] && { echo "gzip: data ready in $D"; GZIP_SKIP=1; }
  [ -n "${GZIP_SKIP_INFLATE:-}${GZIP_SKIP:-}" ] || SLUICE_GZ_INDEX=0 ./build-gpu/bench_inflate "$D/one/day_0.tsv.gz" "$D"/gz/day_*.tsv.gz --repeat 1 > "$OUT/gzip_inflate.txt" 2>&1
  grep -E "GB/s|index:" "$OUT/gzip_inflate.txt" | head -24 | while IFS= read -r l; do row "inflate: $(echo "$l" | sed -E 's/ +/ /g')" ""; done
  if [ -z "${GZIP_SKIP:-}" ]; then
  timed "$OUT/gzip_index_s.txt" $S index "$D"/gzi/day_*.tsv.gz > "$OUT/gzip_index.txt" 2>&1
  row "gzip: sluice index of the $(ls "$D"/gzi/day_*.tsv.gz | wc -l) days (s)" "$(cat "$OUT/gzip_index_s.txt")"
  # GZIP_SOURCES: the columns to run (default all; "raw" is every ratio's baseline).
  sources=${GZIP_SOURCES:-raw gz gzs one gzi onei}
  for src in $sources; do
    dir=$src; build_index=1
    case $src in
      gzs) dir=gz; build_index=0;; ones) dir=one; build_index=0;; raw) build_index=0;;
      onei) dir=one; [ -f "$D/one/day_0.tsv.gz.sluice-gzi" ] || $S index "$D"/one/day_*.tsv.gz >> "$OUT/gzip_index.txt" 2>&1;;
    esac
    first_read() { case $src in gz|gzs|one|ones) rm -f "$D/$dir"/*.sluice-gzi;; esac; }
    rm -rf "$D/prep_$src"
    first_read
    SLUICE_GZ_INDEX=$build_index timed "$OUT/gzip_prep_${src}_s.txt" $S prep -q --engine cpu -o "$D/prep_$src" --max-ind-range 1000000 \
        $(ls "$D/$dir"/day_* | grep -v '\.sluice-gzi$') > "$OUT/gzip_prep_$src.txt" 2>&1
    # Compared with the text's output, then removed (disk space): only the .gz days have the same parts.
    if [ "$src" = gz ] || [ "$src" = gzs ] || [ "$src" = gzi ]; then
      for f in "$D"/prep_raw/*.npy; do cmp -s "$f" "$D/prep_$src/$(basename "$f")" || echo NO > "$OUT/gzip_same_$src.txt"; done
      [ -f "$OUT/gzip_same_$src.txt" ] || echo yes > "$OUT/gzip_same_$src.txt"
    fi
    [ "$src" = raw ] || rm -rf "$D/prep_$src"
    first_read
    SLUICE_GZ_INDEX=$build_index $S train --data "$D/$dir" --engine cuda --device cuda --epochs 1 --batch-size 16384 --online-ids first-seen \
        --max-ind-range 1000000 --no-eval > "$OUT/gzip_train_$src.txt" 2>&1
  done
  prep_raw=$(cat "$OUT/gzip_prep_raw_s.txt")
  n=$(ls "$D"/gz/day_*.tsv.gz | wc -l)
  train_raw=$(json "$OUT/gzip_train_raw.txt" train_samples_per_s)
  for src in $sources; do
    case $src in
      raw) what="the days as text";; gz) what="$n .gz days, first read (guessed boundaries)";;
      gzs) what="$n .gz days, serial";; gzi) what="$n .gz days, indexed";;
      one) what="one .gz file of the $((n - 1)) training days (+ the test day), first read";;
      ones) what="the same, serial";; onei) what="the same, indexed";;
    esac
    p=$(cat "$OUT/gzip_prep_${src}_s.txt"); t=$(json "$OUT/gzip_train_$src.txt" train_samples_per_s)
    row "gzip: prep --engine cpu, $what (s; text rate / it)" "$p; $(python3 -c "print(f'{$prep_raw/$p:.2f}')" 2>/dev/null || echo ?)"
    row "gzip: train --engine cuda, $what (samples/s; / text)" \
        "$t; $(python3 -c "print(f'{$t/$train_raw:.2f}')" 2>/dev/null || echo ?) (waiting for data $(json "$OUT/gzip_train_$src.txt" data_wait_fraction))"
  done
  row "gzip: prep outputs from .gz days == from text (first read, serial, indexed)" \
      "$(cat "$OUT/gzip_same_gz.txt" 2>/dev/null), $(cat "$OUT/gzip_same_gzs.txt" 2>/dev/null), $(cat "$OUT/gzip_same_gzi.txt" 2>/dev/null)"
  rm -rf "$D"/prep_*
  fi
fi

if has trace; then
  # Where a fed step's time goes: traces of whole runs (TRACE_FIRST/TRACE_STEPS narrow them) trained
  # from resident batches, from a prep output through the host ring, and from raw days through the
  # cuda engine, each with the training loop's split. Traces stay in $DATA (large); summaries in $OUT.
  D="$DATA/e2e"  # the e2e stage's data
  [ -f "$D/raw/truth.json" ] || { rm -rf "$D"; $S gen --rows "${E2E_ROWS:-24000000}" --days 4 --seed 3 \
      --cardinality-scale 0.05 --out "$D/raw" > "$OUT/trace_gen.txt" 2>&1; }
  [ -f "$D/prep/manifest.json" ] || $S prep --engine cuda -o "$D/prep" --max-ind-range 1000000 --overwrite \
      "$D"/raw/day_*.tsv > "$OUT/trace_prep.txt" 2>&1
  tr=(--trace-first "${TRACE_FIRST:-0}" --trace-steps "${TRACE_STEPS:-100000}")
  $S train --bench-synthetic --data "$D/prep" --max-ind-range 1000000 --batch-size 16384 --steps 300 \
      --bench-batches 64 --device cuda --trace "$D/trace_resident.json" --trace-first 50 --trace-steps 200 \
      > "$OUT/trace_resident.txt" 2>&1
  row "trace: resident batches (samples/s, traced run)" "$(json "$OUT/trace_resident.txt" samples_per_s)"
  for depth in ${TRACE_RING:-4}; do
    for src in ${TRACE_SOURCES:-prepared cuda}; do
      if [ $src = prepared ]; then args=(--data "$D/prep"); else
        args=(--data "$D/raw" --engine cuda --online-ids first-seen --max-ind-range 1000000); fi
      f="$OUT/trace_${src}_r$depth"
      $S train "${args[@]}" --device cuda --epochs 1 --batch-size 16384 --no-eval --ring-depth "$depth" \
          --trace "$D/trace_${src}_r$depth.json" "${tr[@]}" > "$f.txt" 2>&1
      row "trace: $src ring $depth (samples/s; wait, stage, step, device wait s)" \
          "$(json "$f.txt" train_samples_per_s); $(json "$f.txt" data_wait_seconds) $(json "$f.txt" host_stage_seconds) $(json "$f.txt" host_step_seconds) $(json "$f.txt" device_wait_seconds)"
    done
  done
  for f in "$D"/trace_*.json; do
    n=$(basename "$f" .json)
    python3 scripts/trace_summary.py "$f" --top 8 > "$OUT/$n.summary.txt" 2>&1
    head -12 "$OUT/$n.summary.txt"
    row "  $n per step (ms)" "$(grep '^per step' "$OUT/$n.summary.txt" | sed 's/per step (ms): //')"
    rm -f "$f"
  done
fi

if has kaggle; then
  # A Kaggle-size set: 45.8 M rows in 7 days, Kaggle cardinalities.
  K="$DATA/kaggle"
  [ -f "$K/raw/truth.json" ] || { rm -rf "$K"; timed "$OUT/kaggle_gen_s.txt" $S gen --rows 45840617 --days 7 \
      --seed 5 --cardinality-scale 1 --no-sync --out "$K/raw" > "$OUT/kaggle_gen.txt" 2>&1; }
  row "kaggle-size gen, 45.8 M rows (s)" "$(cat "$OUT/kaggle_gen_s.txt" 2>/dev/null)"
  sync
  cat "$K"/raw/day_*.tsv > /dev/null  # page cache
  for e in cuda cpu; do
    rm -rf "$K/prep_$e"
    timed "$OUT/kaggle_prep_${e}_s.txt" $S prep --engine $e -o "$K/prep_$e" "$K"/raw/day_*.tsv \
        > "$OUT/kaggle_prep_$e.txt" 2>&1
    row "kaggle-size prep --engine $e wall (s)" \
        "$(cat "$OUT/kaggle_prep_${e}_s.txt") ($(grep -E 'engine:' "$OUT/kaggle_prep_$e.txt" | sed -E 's/^ +//'))"
  done
  cmp -s "$K/prep_cuda/day_0_sparse.npy" "$K/prep_cpu/day_0_sparse.npy" && same=yes || same=NO
  row "kaggle-size prep: cuda output == cpu output (day_0 ids)" "$same"
  rm -rf "$K/prep_cpu"
  $S train --data "$K/raw" --device cuda --engine cuda --epochs 1 --batch-size 16384 --online-ids first-seen \
      --max-ind-range 10000000 > "$OUT/kaggle_train.txt" 2>&1
  row "kaggle-size raw -> cuda engine -> train 1 epoch B=16384 (s)" \
      "$(json "$OUT/kaggle_train.txt" train_seconds) s, $(json "$OUT/kaggle_train.txt" train_samples_per_s) samples/s, wait $(json "$OUT/kaggle_train.txt" data_wait_fraction), AUC $(json "$OUT/kaggle_train.txt" test_auc)"
fi

if has dist; then
  # Training on several GPUs of this machine (NCCL; tables sharded table-wise, MLPs data-parallel, the
  # autograd step): 16384 rows per GPU on a prepared Kaggle-size set (prepared: training alone is
  # measured, not the engines), against one GPU in the same run with the same step, and the fused
  # one-GPU step for reference.
  G=$(nvidia-smi -L | grep -c '^GPU ')
  D="$DATA/dist"
  if [ ! -f "$D/prep/manifest.json" ]; then
    rm -rf "$D"
    $S gen --rows "${DIST_ROWS:-12000000}" --days 4 --seed 3 --cardinality-scale "${DIST_SCALE:-1}" --out "$D/raw" \
        > "$OUT/dist_gen.txt" 2>&1
    $S prep --engine cpu -o "$D/prep" "$D"/raw/day_*.tsv > "$OUT/dist_prep.txt" 2>&1
  fi
  common=(--data "$D/prep" --device cuda --preset kaggle --no-eval --max-steps "${DIST_STEPS:-200}")
  $S train "${common[@]}" --batch-size 16384 --step autograd > "$OUT/dist_1.txt" 2>&1
  one=$(json "$OUT/dist_1.txt" steady_samples_per_s)
  row "1 GPU, autograd step, B=16384 (samples/s after 20 steps)" "$one"
  for n in 2 4 8; do
    [ "$n" -le "$G" ] || continue
    $S train "${common[@]}" --nproc "$n" --batch-size $((16384 * n)) > "$OUT/dist_$n.txt" 2>&1
    r=$(json "$OUT/dist_$n.txt" steady_samples_per_s)
    row "$n GPUs, B=$((16384 * n)) global (samples/s after 20 steps); / 1 GPU" \
        "$r; $(python3 -c "print(f'{$r/$one:.2f}')" 2>/dev/null || echo ?)"
  done
  $S train "${common[@]}" --batch-size 16384 > "$OUT/dist_1_fused.txt" 2>&1
  row "  reference: 1 GPU, the fused step, B=16384 (samples/s after 20 steps)" "$(json "$OUT/dist_1_fused.txt" steady_samples_per_s)"
fi

if has measure; then
  # The measurement suite (docs/measurements.md): every pipeline, its report and plots in $OUT/measure.
  # MEASURE_ARGS adds options (e.g. "--sizes 1000000,4000000").
  timed "$OUT/measure_s.txt" $S measure --overwrite --out "$OUT/measure" ${MEASURE_ARGS:-} > "$OUT/measure.txt" 2>&1 \
    && row "measure: $OUT/measure/measurements.md (s)" "$(cat "$OUT/measure_s.txt")" \
    || row "measure" "FAILED (see measure.txt)"
  cat "$OUT/measure/measurements.md" 2>/dev/null
fi

echo
echo "== $GPU, $JOBS cores"
cat "$TABLE"
