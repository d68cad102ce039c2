#!/usr/bin/env python3
"""Batches per second three ways over the same data: a Python loop over sluice.Loader, the same
stream driven from C++ (no Python object per batch), and PyTorch's DataLoader over the prep output's
npy files with worker processes. Prints a short table.

    python3 bench/bench_python_loader.py --data RAW_OR_PREP [--engine cuda --device cuda]
        [--npy PREP_DIR] [--batch-size 65536] [--workers 16] [--repeat 5]

The Loader and C++ rows use --data (raw day files run through --engine; a prep output is read as
it is); the DataLoader row reads --npy (default: --data when it is a prep output) and moves each
batch to --device (pinned memory on a GPU) as a training loop would.
"""

import argparse
import glob
import json
import os
import time

import numpy as np

import sluice
from sluice import _sluice


def loader_args(a):
    return dict(engine=a.engine, device=a.device, split=a.split, threads=a.threads, ring_depth=a.ring_depth,
                online_ids=a.online_ids, max_ind_range=a.max_ind_range)


def data_arg(a):
    return a.data.split(",") if "," in a.data else a.data


def sync(a):
    if a.device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def run_python(a):
    loader = sluice.Loader(data_arg(a), a.batch_size, output=a.output, **loader_args(a))
    t0 = time.perf_counter()
    rows = 0
    for dense, sparse, labels in loader:
        rows += labels.shape[0]
    sync(a)
    return rows, time.perf_counter() - t0


def run_cpp(a):
    # The Loader's own stream, drained in C++.
    loader = sluice.Loader(data_arg(a), a.batch_size, output=a.output, **loader_args(a))
    stream = loader._open()
    t0 = time.perf_counter()
    rows, _ = stream.drain()
    return rows, time.perf_counter() - t0


class NpyBatches:
    """Batches of a prep output's npy parts, by index (what a map-style pipeline over npy files does)."""

    def __init__(self, prep_dir, batch_size, split):
        with open(os.path.join(prep_dir, "manifest.json")) as f:
            parts = [p["name"] for p in json.load(f)["parts"]]
        if split == "train":
            parts = parts[:-1]
        elif split != "all":
            raise SystemExit("--split %s: the DataLoader row reads whole parts (all or train)" % split)
        self.parts = [{k: np.load(os.path.join(prep_dir, "%s_%s.npy" % (p, k)), mmap_mode="r")
                       for k in ("dense", "sparse", "labels")} for p in parts]
        self.index = []
        for i, p in enumerate(self.parts):
            n = p["labels"].shape[0]
            self.index += [(i, b) for b in range(0, n, batch_size)]
        self.batch_size = batch_size

    def __len__(self):
        return len(self.index)

    def __getitem__(self, k):
        import torch
        i, b = self.index[k]
        p = self.parts[i]
        e = b + self.batch_size
        return (torch.from_numpy(np.array(p["dense"][b:e])),
                torch.from_numpy(np.array(p["sparse"][b:e])),
                torch.from_numpy(np.array(p["labels"][b:e]).reshape(-1).astype(np.float32)))


def run_dataloader(a):
    import torch
    ds = NpyBatches(a.npy, a.batch_size, a.split)
    gpu = a.device.startswith("cuda")
    dl = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=a.workers, pin_memory=gpu,
                                     persistent_workers=False, prefetch_factor=4 if a.workers else None)
    t0 = time.perf_counter()
    rows = 0
    for dense, sparse, labels in dl:
        if gpu:
            dense, sparse, labels = (x.to(a.device, non_blocking=True) for x in (dense, sparse, labels))
        rows += labels.shape[0]
    sync(a)
    return rows, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--npy", default=None, help="prep output for the DataLoader row")
    p.add_argument("--engine", default="auto")
    p.add_argument("--device", default="cpu")
    p.add_argument("--split", default="all")
    p.add_argument("--batch-size", type=int, default=65536)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--ring-depth", type=int, default=4)
    p.add_argument("--online-ids", default="first-seen")
    p.add_argument("--max-ind-range", type=int, default=0)
    p.add_argument("--output", default="auto")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--repeat", type=int, default=5, help="rounds; each way's median is reported")
    a = p.parse_args()
    if a.npy is None and os.path.exists(os.path.join(a.data, "manifest.json")):
        a.npy = a.data
    runs = [("sluice.Loader, Python loop", run_python), ("same stream drained in C++", run_cpp)]
    try:
        import torch  # noqa: F401
        if a.npy:
            runs.append(("DataLoader over npy, %d workers" % a.workers, run_dataloader))
    except ImportError:
        pass
    # Round robin (each way once per round), then each way's median: a slow moment of the machine
    # lands on all of them alike.
    times = {name: [] for name, _ in runs}
    rows_of = {}
    for _ in range(a.repeat):
        for name, fn in runs:
            rows, s = fn(a)
            rows_of[name] = rows
            times[name].append(s)
    results = [(name, rows_of[name], sorted(times[name])[len(times[name]) // 2]) for name, _ in runs]
    cpp = dict((n, r / s) for n, r, s in results)["same stream drained in C++"]
    print("data %s, engine %s, device %s, split %s, batch %d" % (a.data, a.engine, a.device, a.split, a.batch_size))
    print("%-36s %12s %10s %14s %9s" % ("", "rows", "seconds", "rows/s", "vs C++"))
    for name, rows, s in results:
        print("%-36s %12d %10.3f %14.0f %8.1f%%" % (name, rows, s, rows / s, 100 * rows / s / cpp))


if __name__ == "__main__":
    main()
