#!/usr/bin/env python3
"""Plot a `sluice train --metrics FILE` log: training loss, test AUC / log loss, and samples/s.

Usage: plot_metrics.py METRICS.jsonl -o out.png

Exit codes: 0 written, 2 bad input, 3 matplotlib is not installed.
"""
import argparse
import json
import sys


def read_records(path):
    train, test = [], []
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not JSON ({e})")
            kind = rec.get("type")
            if kind == "train":
                train.append(rec)
            elif kind == "test":
                test.append(rec)
    return train, test


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics", help="JSON-lines metrics file written by sluice train --metrics")
    ap.add_argument("-o", "--output", default="metrics.png", help="output image (png, svg, pdf)")
    args = ap.parse_args(argv)

    try:
        train, test = read_records(args.metrics)
    except (OSError, ValueError) as e:
        print(f"plot_metrics: {e}", file=sys.stderr)
        return 2
    if not train and not test:
        print(f"plot_metrics: {args.metrics} holds no train or test records", file=sys.stderr)
        return 2

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_metrics: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return 3

    fig, axes = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    ax_loss, ax_auc, ax_rate = axes

    def col(recs, key):
        xs, ys = [], []
        for r in recs:
            if r.get(key) is not None and r.get("step") is not None:
                xs.append(r["step"])
                ys.append(r[key])
        return xs, ys

    x, y = col(train, "loss")
    ax_loss.plot(x, y, label="train loss", color="tab:blue")
    x, y = col(test, "logloss")
    if x:
        ax_loss.plot(x, y, "o-", label="test log loss", color="tab:orange")
    ax_loss.set_ylabel("BCE loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)

    x, y = col(test, "auc")
    if x:
        ax_auc.plot(x, y, "o-", color="tab:green", label="test AUC")
        ax_auc.legend()
    else:
        ax_auc.text(0.5, 0.5, "no test evaluations", ha="center", va="center", transform=ax_auc.transAxes)
    ax_auc.set_ylabel("AUC")
    ax_auc.grid(alpha=0.3)

    x, y = col(train, "samples_per_s")
    ax_rate.plot(x, y, color="tab:red")
    ax_rate.set_ylabel("samples/s")
    ax_rate.set_xlabel("step")
    ax_rate.grid(alpha=0.3)

    fig.suptitle(args.metrics)
    fig.tight_layout()
    try:
        fig.savefig(args.output, dpi=110)
    except OSError as e:
        print(f"plot_metrics: cannot write {args.output}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
