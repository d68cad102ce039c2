#!/usr/bin/env python3
"""Trains the plain-PyTorch DLRM of bench/train_baseline.py from npy files through a PyTorch DataLoader.

The usual way: a map-style Dataset over the day files (memory-mapped npy, as written by
bench/criteo_prep_py.py or `sluice prep --format npy`) whose __getitem__ returns one sample, a
torch.utils.data.DataLoader that collates samples into batches, then the model's step per batch. The
split is sluice train's: every day but the last trains (in order, one pass per epoch), the first
ceil(n/2) rows of the last day test. Model: train_baseline.py's `fused` variant (one nn.Embedding
holding every table, eager), kaggle preset by default, table sizes from the data; optimiser Adagrad
(lr 0.01, sluice train's default recipe; element-wise state where sluice keeps one per embedding row);
TF32 matrix products on a GPU, as sluice train's default there.

    python3 bench/train_dataloader.py --data DIR --batch-size 4096 --device cuda

Prints one JSON line: train_seconds (first batch requested to last step finished), data_wait_seconds
(time spent waiting for the DataLoader's next batch), data_wait_fraction, train_samples_per_s,
rows_trained, test_auc, eval_seconds, device.
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_baseline  # noqa: E402

NUM_DENSE = 13
NUM_SPARSE = 26


def auc(labels, scores):
    """Area under the ROC curve (Mann-Whitney; tied scores share their average rank)."""
    import numpy as np
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    pos = int(labels.sum())
    neg = labels.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # average ranks over runs of equal scores
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def find_days(data):
    """Day files of DIR: day_K_{dense,sparse,labels}.npy for K = 0, 1, ..."""
    days = []
    while os.path.exists(os.path.join(data, f"day_{len(days)}_labels.npy")):
        days.append(len(days))
    if len(days) < 2:
        sys.exit(f"{data}: needs at least two days (day_0_*.npy, day_1_*.npy): every day but the last trains")
    return days


def vocab_sizes(data):
    for name, key in (("meta.json", "vocab_sizes"), ("manifest.json", "vocab_sizes")):
        p = os.path.join(data, name)
        if os.path.exists(p):
            with open(p) as f:
                return [int(x) for x in json.load(f)[key]]
    sys.exit(f"{data}: no meta.json or manifest.json with vocab_sizes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--test-batch-size", type=int, default=16384)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--preset", default="kaggle", choices=sorted(train_baseline.PRESETS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (Meta's default: 0)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    try:
        import numpy as np
        import torch
    except ImportError:
        sys.exit("train_dataloader.py needs numpy and PyTorch")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but no CUDA GPU is available")
    if device.type == "cuda":
        # TF32 matrix products, as `sluice train` uses on GPUs by default (its --precision auto).
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)

    days = find_days(args.data)
    tables = [max(1, n) for n in vocab_sizes(args.data)]

    def load(k, what):
        return np.load(os.path.join(args.data, f"day_{k}_{what}.npy"), mmap_mode="r")

    class DayDataset(torch.utils.data.Dataset):
        """One sample per __getitem__, from memory-mapped npy columns."""

        def __init__(self, k, rows=None):
            self.dense, self.sparse, self.labels = load(k, "dense"), load(k, "sparse"), load(k, "labels")
            self.n = self.labels.shape[0] if rows is None else rows

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return (np.array(self.dense[i], dtype=np.float32), np.array(self.sparse[i], dtype=np.int64),
                    np.array(self.labels[i], dtype=np.float32))

    train_set = torch.utils.data.ConcatDataset([DayDataset(k) for k in days[:-1]])
    last_rows = int(load(days[-1], "labels").shape[0])
    test_set = DayDataset(days[-1], rows=(last_rows + 1) // 2)
    pin = device.type == "cuda"
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=False,
                                               num_workers=args.num_workers, pin_memory=pin)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=args.test_batch_size, shuffle=False,
                                              num_workers=args.num_workers, pin_memory=pin)

    m = train_baseline.models(args.preset, tables, device)
    table = m.FusedTable()
    dense_net = m.DenseLoss().to(device)
    opt_table = torch.optim.Adagrad(table.parameters(), lr=args.lr)  # sparse gradient
    opt_dense = torch.optim.Adagrad(dense_net.parameters(), lr=args.lr)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = 0
    wait = 0.0
    loss = None
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        it = iter(train_loader)
        while True:
            tw = time.perf_counter()
            try:
                dense, ids, labels = next(it)
            except StopIteration:
                wait += time.perf_counter() - tw
                break
            wait += time.perf_counter() - tw
            dense = dense.to(device, non_blocking=True)
            ids = ids.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            opt_table.zero_grad()
            opt_dense.zero_grad()
            loss = dense_net(dense, table(ids), labels)
            loss.backward()
            opt_table.step()
            opt_dense.step()
            rows += int(labels.shape[0])
    final_loss = float(loss.item()) if loss is not None else float("nan")
    sync()
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    scores, truth = [], []
    with torch.no_grad():
        for dense, ids, labels in test_loader:
            logits = dense_net.logits(dense.to(device), table(ids.to(device)))
            scores.append(torch.sigmoid(logits).float().cpu().numpy().reshape(-1))
            truth.append(labels.numpy().reshape(-1))
    test_auc = auc(np.concatenate(truth), np.concatenate(scores)) if scores else float("nan")
    eval_s = time.perf_counter() - t1

    def num(x):
        return x if isinstance(x, (int, float)) and math.isfinite(x) else None

    print(json.dumps({
        "mode": "pytorch-dataloader",
        "train_seconds": train_s,
        "data_wait_seconds": wait,
        "data_wait_fraction": wait / train_s if train_s > 0 else None,
        "train_samples_per_s": rows / train_s if train_s > 0 else None,
        "rows_trained": rows,
        "test_auc": num(test_auc),
        "test_rows": len(test_set),
        "eval_seconds": eval_s,
        "train_loss": num(final_loss),
        "device": str(device),
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "table_rows": sum(tables),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
