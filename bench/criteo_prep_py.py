#!/usr/bin/env python3
"""Offline Criteo preprocessing the way Meta's DLRM reference scripts do it: Python, line by line.

The usual reference flow, written here from its description (not copied): every line of every day
file is split on tabs in Python; the label and the 13 integers are parsed with int() (empty = 0), the
26 categorical fields with int(x, 16) (empty = 0); each day becomes numpy arrays; then, per
categorical column, a Python dict numbers the values in order of first appearance over all days, and
every value is looked up in it one by one; the integers become float32 ln(max(x, 0) + 1). The result
is written as npy files in TorchRec's layout, the one `sluice prep` writes:
day_K_dense.npy (float32, N x 13), day_K_sparse.npy (int32, N x 26), day_K_labels.npy (int32, N x 1),
plus meta.json (rows per day, vocabulary sizes). bench/train_dataloader.py trains from them.

    python3 bench/criteo_prep_py.py --out DIR day_0.tsv day_1.tsv day_2.tsv

Prints one JSON line (rows, seconds, vocab_sizes). Needs numpy.
"""
import argparse
import json
import os
import sys
import time

NUM_DENSE = 13
NUM_SPARSE = 26


def parse_day(path):
    """Reads one day file line by line: labels, integer rows and categorical rows as Python lists."""
    labels, ints, cats = [], [], []
    with open(path, "r", encoding="ascii", newline="\n") as f:
        for line in f:
            fields = line.rstrip("\n").rstrip("\r").split("\t")
            if len(fields) != 1 + NUM_DENSE + NUM_SPARSE:
                raise SystemExit(f"{path}: a line with {len(fields)} fields")
            labels.append(int(fields[0]) if fields[0] else 0)
            ints.append([int(x) if x else 0 for x in fields[1:1 + NUM_DENSE]])
            cats.append([int(x, 16) if x else 0 for x in fields[1 + NUM_DENSE:]])
    return labels, ints, cats


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory (created; must not exist)")
    ap.add_argument("inputs", nargs="+", help="day files in order (day_0.tsv ...)")
    args = ap.parse_args()
    try:
        import numpy as np
    except ImportError:
        sys.exit("criteo_prep_py.py needs numpy")

    t0 = time.perf_counter()
    tmp = args.out + f".tmp-{os.getpid()}"
    os.makedirs(tmp)
    days = []
    for path in args.inputs:
        labels, ints, cats = parse_day(path)
        days.append((np.asarray(labels, dtype=np.int32).reshape(-1, 1),
                     np.asarray(ints, dtype=np.int64).reshape(-1, NUM_DENSE),
                     np.asarray(cats, dtype=np.int64).reshape(-1, NUM_SPARSE)))
    # Per column: first-seen ids over all days in order, one dict lookup per value.
    vocab = [dict() for _ in range(NUM_SPARSE)]
    for _, _, cat in days:
        for j in range(NUM_SPARSE):
            d = vocab[j]
            for x in cat[:, j].tolist():
                if x not in d:
                    d[x] = len(d)
    rows = []
    for k, (lab, ints, cat) in enumerate(days):
        ids = np.empty(cat.shape, dtype=np.int32)
        for j in range(NUM_SPARSE):
            d = vocab[j]
            ids[:, j] = [d[x] for x in cat[:, j].tolist()]
        dense = np.log(np.maximum(ints, 0).astype(np.float64) + 1.0).astype(np.float32)
        np.save(os.path.join(tmp, f"day_{k}_dense.npy"), dense)
        np.save(os.path.join(tmp, f"day_{k}_sparse.npy"), ids)
        np.save(os.path.join(tmp, f"day_{k}_labels.npy"), lab)
        rows.append(int(lab.shape[0]))
    meta = {"days": len(days), "rows": rows, "vocab_sizes": [len(d) for d in vocab]}
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f)
    os.rename(tmp, args.out)
    secs = time.perf_counter() - t0
    print(json.dumps({"rows": sum(rows), "seconds": secs, "vocab_sizes": meta["vocab_sizes"]}))


if __name__ == "__main__":
    main()
