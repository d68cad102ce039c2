#!/usr/bin/env python3
"""A plain-PyTorch DLRM, written the usual way, timed like `sluice train --bench-synthetic`.

One nn.EmbeddingBag per table (mode="sum", sparse=True, one index per bag), MLPs as nn.Sequential,
the dot interaction, torch.optim.SGD, nn.BCELoss on the sigmoid output. Batches are generated once and kept
on the device (random ids in range per table), then: warm-up steps, torch.cuda.synchronize(), timed
steps, synchronize. The model sizes match sluice's presets and --table-sizes so the two rates compare.

    python3 bench/train_baseline.py --preset kaggle --table-sizes kaggle --batch-size 16384 \
        --steps 200 --device cuda

Prints one JSON line with samples_per_s (the last line of stdout).
"""
import argparse
import json
import math
import sys
import time

KAGGLE_CARDINALITIES = [
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
    5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
]

PRESETS = {
    # d, bottom MLP (with input 13), top MLP (without the derived input width)
    "kaggle": (16, [13, 512, 256, 64, 16], [512, 256, 1]),
    "terabyte": (64, [13, 512, 256, 64], [512, 512, 256, 1]),
    "mlperf": (128, [13, 512, 256, 128], [1024, 1024, 512, 256, 1]),
}

NUM_SPARSE = 26
NUM_DENSE = 13


def parse_tables(text, max_ind_range):
    if text == "kaggle":
        sizes = list(KAGGLE_CARDINALITIES)
    elif "," in text:
        sizes = [int(x) for x in text.split(",")]
        if len(sizes) != NUM_SPARSE:
            sys.exit(f"--table-sizes: expected {NUM_SPARSE} sizes, got {len(sizes)}")
    else:
        sizes = [int(text)] * NUM_SPARSE
    if max_ind_range > 0:
        sizes = [min(s, max_ind_range) for s in sizes]
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="kaggle", choices=sorted(PRESETS))
    ap.add_argument("--table-sizes", default="kaggle")
    ap.add_argument("--max-ind-range", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup-steps", type=int, default=20)
    ap.add_argument("--bench-batches", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()

    try:
        import torch
        import torch.nn as nn
    except ImportError:
        sys.exit("train_baseline.py needs PyTorch (import torch failed)")

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but no CUDA GPU is available")
    torch.manual_seed(args.seed)

    d, bot, top = PRESETS[args.preset]
    tables = parse_tables(args.table_sizes, args.max_ind_range)
    n_vec = 1 + NUM_SPARSE
    top = [d + n_vec * (n_vec - 1) // 2] + top

    def mlp(widths, sigmoid_last):
        layers = []
        for i in range(len(widths) - 1):
            lin = nn.Linear(widths[i], widths[i + 1])
            fan_out, fan_in = lin.weight.shape
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(lin.bias, 0.0, math.sqrt(1.0 / fan_out))
            layers.append(lin)
            last = i == len(widths) - 2
            layers.append(nn.Sigmoid() if (last and sigmoid_last) else nn.ReLU())
        return nn.Sequential(*layers)

    class DLRM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.ModuleList()
            for n in tables:
                bag = nn.EmbeddingBag(n, d, mode="sum", sparse=True)
                bound = math.sqrt(1.0 / n)
                nn.init.uniform_(bag.weight, -bound, bound)
                self.emb.append(bag)
            self.bot = mlp(bot, sigmoid_last=False)
            self.top = mlp(top, sigmoid_last=True)
            li, lj = zip(*[(i, j) for i in range(n_vec) for j in range(i)])
            self.register_buffer("li", torch.tensor(li))
            self.register_buffer("lj", torch.tensor(lj))

        def forward(self, dense, ids, offsets):
            x = self.bot(dense)
            ly = [bag(ids[:, k], offsets) for k, bag in enumerate(self.emb)]
            t = torch.cat([x] + ly, dim=1).view(x.shape[0], -1, d)
            z = torch.bmm(t, t.transpose(1, 2))
            zflat = z[:, self.li, self.lj]
            return self.top(torch.cat([x, zflat], dim=1))

    model = DLRM().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = nn.BCELoss(reduction="mean")

    bs = args.batch_size
    gen = torch.Generator().manual_seed(args.seed + 2)
    batches = []
    for _ in range(args.bench_batches):
        dense = (torch.rand(bs, NUM_DENSE, generator=gen) * 8.0).to(device)
        ids = torch.stack([torch.randint(0, n, (bs,), generator=gen) for n in tables], dim=1).to(device)
        labels = (torch.rand(bs, 1, generator=gen) < 0.25).float().to(device)
        batches.append((dense, ids, labels))
    offsets = torch.arange(bs, device=device)  # one index per bag

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(i):
        dense, ids, labels = batches[i % len(batches)]
        opt.zero_grad()
        loss = loss_fn(model(dense, ids, offsets), labels)
        loss.backward()
        opt.step()
        return loss

    loss = None
    for i in range(args.warmup_steps):
        loss = step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(args.warmup_steps + i)
    final_loss = float(loss.item())
    sync()
    secs = time.perf_counter() - t0

    print(json.dumps({
        "mode": "pytorch-baseline",
        "samples_per_s": args.steps * bs / secs,
        "step_ms": 1000.0 * secs / args.steps,
        "seconds": secs,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "batch_size": bs,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "emb_dim": d,
        "bot_mlp": bot,
        "top_mlp": top,
        "table_rows": sum(tables),
        "final_loss": final_loss,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
