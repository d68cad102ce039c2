#!/usr/bin/env python3
"""Plots of a `sluice measure` results.jsonl (matplotlib; exit code 3 when it is not installed).

    python3 scripts/plot_measure.py OUT/results.jsonl --out OUT

Writes, each atomically (a temporary name, then a rename):
  time_by_batch.png  time to a trained model per pipeline and batch size at the largest dataset,
                     stacked: offline preprocessing, then training (online pipelines preprocess inside it);
  gpu_util.png       GPU utilisation over time (NVML samples) per pipeline, preprocessing then training,
                     at the largest dataset and the sweep's batch size; a note when no GPU was sampled;
  time_vs_size.png   total time vs rows per pipeline at the sweep's batch size.
Only rows with status "ok" are drawn; modelled rows (the fpga engine) are hatched and labelled.
"""
import argparse
import json
import os
import sys

FILES = ("time_by_batch.png", "gpu_util.png", "time_vs_size.png")


def load(path):
    header, rows = {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            j = json.loads(line)
            if j.get("type") == "machine":
                header = j
            elif j.get("type") == "run":
                rows.append(j)
    return header, rows


def short(row):
    return f"{row['pipeline']} {row['key']}" + (" (modelled)" if row.get("modelled") else "")


def save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    tmp = os.path.join(out_dir, f".{name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_measure.py: matplotlib is not installed", file=sys.stderr)
        sys.exit(3)

    header, rows = load(args.results)
    ok = [r for r in rows if r.get("status") == "ok" and r.get("total_s") is not None]
    largest = max(header.get("sizes") or [r["rows"] for r in rows] or [0])
    sweep_b = header.get("sweep_batch_size")
    where = header.get("gpu") or f"{header.get('cores', '?')}-core CPU, no GPU"
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    pipelines = sorted({r["pipeline"] for r in rows})
    color = {p: colors[(p - 1) % len(colors)] for p in pipelines}
    names = {r["pipeline"]: short(r) for r in rows}

    # 1. Stacked prep/train per pipeline, grouped by batch size.
    fig, ax = plt.subplots(figsize=(9, 5))
    batches = sorted({r["batch_size"] for r in ok if r["rows"] == largest})
    shown = sorted({r["pipeline"] for r in ok if r["rows"] == largest})
    width = 0.8 / max(1, len(shown))
    labelled = set()
    for i, p in enumerate(shown):
        for j, b in enumerate(batches):
            sel = [r for r in ok if r["pipeline"] == p and r["rows"] == largest and r["batch_size"] == b]
            if not sel:
                continue
            r = sel[0]
            x = j + (i - (len(shown) - 1) / 2) * width
            hatch = "//" if r.get("modelled") else None
            ax.bar(x, r["prep_s"], width, color=color[p], alpha=0.45, hatch=hatch, edgecolor="black", linewidth=0.5)
            ax.bar(x, r["train_s"], width, bottom=r["prep_s"], color=color[p], hatch=hatch, edgecolor="black",
                   linewidth=0.5, label=None if p in labelled else names[p])
            labelled.add(p)
    ax.set_xticks(range(len(batches)))
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("seconds to a trained model (pale: offline prep; solid: training)")
    ax.set_title(f"Time per pipeline, {largest:,} rows ({where})")
    if shown:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no pipeline ran", ha="center", va="center", transform=ax.transAxes)
    save(fig, args.out, FILES[0])
    plt.close(fig)

    # 2. GPU utilisation over time.
    fig, ax = plt.subplots(figsize=(9, 4.5))
    drawn = False
    for p in shown:
        sel = [r for r in ok if r["pipeline"] == p and r["rows"] == largest and r["batch_size"] == sweep_b]
        if not sel:
            continue
        r = sel[0]
        prep = r.get("prep_gpu_util") or []
        train = r.get("gpu_util") or []
        t = [s[0] for s in prep] + [r["prep_s"] + s[0] for s in train]
        u = [s[1] for s in prep] + [s[1] for s in train]
        if t:
            ax.plot(t, u, color=color[p], label=names[p], linewidth=1)
            drawn = True
    ax.set_xlabel("seconds since the pipeline started (offline prep, then training)")
    ax.set_ylabel("GPU utilisation % (NVML, every 100 ms)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"GPU utilisation, {largest:,} rows, batch {sweep_b}")
    if drawn:
        ax.legend(fontsize=8)
    else:
        why = header.get("gpu_why_not") or "no utilisation samples"
        ax.text(0.5, 0.5, "No GPU sampled on this machine:\n" + why, ha="center", va="center",
                transform=ax.transAxes, wrap=True, fontsize=9)
    save(fig, args.out, FILES[1])
    plt.close(fig)

    # 3. Total time vs dataset size.
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = False
    for p in pipelines:
        sel = sorted((r for r in ok if r["pipeline"] == p and r["batch_size"] == sweep_b), key=lambda r: r["rows"])
        if sel:
            ax.plot([r["rows"] for r in sel], [r["total_s"] for r in sel], marker="o", color=color[p],
                    linestyle="--" if sel[0].get("modelled") else "-", label=names[p])
            drawn = True
    ax.set_xlabel("rows in the dataset")
    ax.set_ylabel("seconds to a trained model")
    ax.set_title(f"Time vs dataset size, batch {sweep_b}")
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no pipeline ran", ha="center", va="center", transform=ax.transAxes)
    save(fig, args.out, FILES[2])
    plt.close(fig)
    for name in FILES:
        print(os.path.join(args.out, name))


if __name__ == "__main__":
    main()
