#!/usr/bin/env python3
"""Runs `sluice train --bench-synthetic` and bench/train_baseline.py with the same sizes and prints both
rates and their ratio as one JSON line.

    python3 bench/train_compare.py --sluice build/sluice --device cuda --batch-size 16384 --steps 200
"""
import argparse
import json
import os
import subprocess
import sys


def last_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        sys.exit(f"no output from {' '.join(cmd)}")
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sluice", default="build/sluice", help="path of the sluice binary")
    ap.add_argument("--preset", default="kaggle")
    ap.add_argument("--table-sizes", default="kaggle")
    ap.add_argument("--max-ind-range", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup-steps", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--precision", default="fp32", help="sluice only: fp32, tf32 or bf16")
    args = ap.parse_args()

    common = ["--preset", args.preset, "--table-sizes", args.table_sizes,
              "--max-ind-range", str(args.max_ind_range), "--batch-size", str(args.batch_size),
              "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps),
              "--device", args.device, "--threads", str(args.threads)]
    # Both sides train with SGD at Meta's rate (the baseline's optimiser), the same work per step.
    ours = last_json([args.sluice, "train", "--bench-synthetic", "--precision", args.precision,
                      "--optimizer", "sgd", "--lr", "0.1"] + common)
    here = os.path.dirname(os.path.abspath(__file__))
    base = last_json([sys.executable, os.path.join(here, "train_baseline.py")] + common)
    print(json.dumps({
        "sluice_samples_per_s": ours["samples_per_s"],
        "baseline_samples_per_s": base["samples_per_s"],
        "speedup": ours["samples_per_s"] / base["samples_per_s"],
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "table_rows": ours["table_rows"],
    }))


if __name__ == "__main__":
    main()
