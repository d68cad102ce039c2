#!/usr/bin/env python3
"""A plain-PyTorch DLRM, written the usual ways, timed like `sluice train --bench-synthetic`.

Variants (--variant):
  bags            one nn.EmbeddingBag per table (mode="sum", sparse=True, one index per bag), MLPs as
                  nn.Sequential, the dot interaction, one torch.optim.SGD, nn.BCELoss on the sigmoid output.
  fused           one nn.Embedding(sum(table sizes), d, sparse=True) holding every table, looked up once
                  per step as emb(ids + row_offsets); the bottom MLP, the dot interaction (torch.bmm of
                  the vectors with their transpose, the strictly lower triangle, cat with the bottom
                  output), the top MLP and nn.BCEWithLogitsLoss; one torch.optim.SGD for the table (sparse
                  gradient), a second for the dense parameters.
  fused-compiled  (default) `fused` with the dense part (bottom MLP, interaction, top MLP, loss) wrapped
                  in torch.compile(mode="reduce-overhead", fullgraph=True, dynamic=False): Inductor
                  kernels replayed as CUDA graphs, forward and backward. The lookup and the optimisers
                  stay eager (the table's sparse gradient cannot be captured). A compilation failure
                  (no Triton, no C compiler, ...) is an error: nothing falls back to eager.
--tf32 allows TF32 in cuBLAS and cuDNN matrix products.

Tables are initialised like Meta's DLRM (uniform(-sqrt(1/n), sqrt(1/n)) for a table of n rows; for the
fused table, slice by slice). Batches are generated once and kept on the device (random ids in range per
table), then: warm-up steps (for fused-compiled at least 3, which cover compilation and the recording of
the CUDA graphs), synchronize, timed steps, synchronize; the rate is --steps x batch over the wall time
between the two synchronisations, for every variant. The model sizes match sluice's presets and
--table-sizes so the two rates compare.

    python3 bench/train_baseline.py --preset kaggle --table-sizes kaggle --batch-size 16384 \
        --steps 200 --device cuda --variant fused-compiled --tf32

Prints one JSON line with variant and samples_per_s (the last line of stdout).
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

VARIANTS = ("fused-compiled", "fused", "bags")
COMPILED_MIN_WARMUP = 3  # step 1 compiles, step 2 records the CUDA graphs, step 3 replays them

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


def models(preset, tables, device):
    """The model's pieces for table sizes `tables` on `device` (torch is imported here):
    DLRMBags (variant bags), FusedTable and DenseLoss (variants fused and fused-compiled; DenseLoss.logits
    is the forward pass without the loss). bench/train_dataloader.py trains the same pieces on real data."""
    import types

    import torch
    import torch.nn as nn

    device = torch.device(device)
    d, bot, top = PRESETS[preset]
    n_vec = 1 + NUM_SPARSE
    top = [d + n_vec * (n_vec - 1) // 2] + top

    def mlp(widths, last_act):
        """Linear layers with ReLU between them; after the last one `last_act` ("relu", "sigmoid" or None)."""
        layers = []
        for i in range(len(widths) - 1):
            lin = nn.Linear(widths[i], widths[i + 1])
            fan_out, fan_in = lin.weight.shape
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(lin.bias, 0.0, math.sqrt(1.0 / fan_out))
            layers.append(lin)
            act = last_act if i == len(widths) - 2 else "relu"
            if act == "relu":
                layers.append(nn.ReLU())
            elif act == "sigmoid":
                layers.append(nn.Sigmoid())
        return nn.Sequential(*layers)

    def tril_indices():
        li, lj = zip(*[(i, j) for i in range(n_vec) for j in range(i)])
        return torch.tensor(li), torch.tensor(lj)

    class DLRMBags(nn.Module):
        """One EmbeddingBag per table; the whole step is eager."""

        def __init__(self):
            super().__init__()
            self.emb = nn.ModuleList()
            for n in tables:
                bag = nn.EmbeddingBag(n, d, mode="sum", sparse=True)
                bound = math.sqrt(1.0 / n)
                nn.init.uniform_(bag.weight, -bound, bound)
                self.emb.append(bag)
            self.bot = mlp(bot, last_act="relu")
            self.top = mlp(top, last_act="sigmoid")
            li, lj = tril_indices()
            self.register_buffer("li", li)
            self.register_buffer("lj", lj)

        def forward(self, dense, ids, offsets):
            x = self.bot(dense)
            ly = [bag(ids[:, k], offsets) for k, bag in enumerate(self.emb)]
            t = torch.cat([x] + ly, dim=1).view(x.shape[0], -1, d)
            z = torch.bmm(t, t.transpose(1, 2))
            zflat = z[:, self.li, self.lj]
            return self.top(torch.cat([x, zflat], dim=1))

    class FusedTable(nn.Module):
        """Every table in one nn.Embedding; table k's ids are shifted by the rows of tables 0..k-1."""

        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(sum(tables), d, sparse=True, device=device)
            starts = [0]
            for n in tables[:-1]:
                starts.append(starts[-1] + n)
            with torch.no_grad():
                for start, n in zip(starts, tables):
                    bound = math.sqrt(1.0 / n)
                    self.emb.weight[start:start + n].uniform_(-bound, bound)
            self.register_buffer("row_offsets", torch.tensor(starts, dtype=torch.int64, device=device))

        def forward(self, ids):
            return self.emb(ids + self.row_offsets).view(ids.shape[0], NUM_SPARSE, d)

    class DenseLoss(nn.Module):
        """Bottom MLP, dot interaction, top MLP and the loss: the part that fused-compiled compiles."""

        def __init__(self):
            super().__init__()
            self.bot = mlp(bot, last_act="relu")
            self.top = mlp(top, last_act=None)  # logits
            li, lj = tril_indices()
            self.register_buffer("li", li)
            self.register_buffer("lj", lj)
            self.loss_fn = nn.BCEWithLogitsLoss(reduction="mean")

        def logits(self, dense, ly):
            x = self.bot(dense)
            t = torch.cat([x.unsqueeze(1), ly], dim=1)
            z = torch.bmm(t, t.transpose(1, 2))
            zflat = z[:, self.li, self.lj]
            return self.top(torch.cat([x, zflat], dim=1))

        def forward(self, dense, ly, labels):
            return self.loss_fn(self.logits(dense, ly), labels)

    return types.SimpleNamespace(d=d, bot=bot, top=top, n_vec=n_vec, DLRMBags=DLRMBags, FusedTable=FusedTable,
                                 DenseLoss=DenseLoss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="fused-compiled", choices=VARIANTS)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in cuBLAS/cuDNN matrix products")
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
    if args.steps < 1:
        sys.exit("--steps must be at least 1")

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
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)

    tables = parse_tables(args.table_sizes, args.max_ind_range)
    m = models(args.preset, tables, device)
    d = m.d
    bot, top = m.bot, m.top
    DLRMBags, FusedTable, DenseLoss = m.DLRMBags, m.FusedTable, m.DenseLoss
    variant = args.variant
    compiled = variant == "fused-compiled"

    bs = args.batch_size
    gen = torch.Generator().manual_seed(args.seed + 2)
    batches = []
    for _ in range(args.bench_batches):
        dense = (torch.rand(bs, NUM_DENSE, generator=gen) * 8.0).to(device)
        ids = torch.stack([torch.randint(0, n, (bs,), generator=gen) for n in tables], dim=1).to(device)
        labels = (torch.rand(bs, 1, generator=gen) < 0.25).float().to(device)
        batches.append((dense, ids, labels))

    if variant == "bags":
        model = DLRMBags().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=args.lr)
        loss_fn = nn.BCELoss(reduction="mean")
        offsets = torch.arange(bs, device=device)  # one index per bag

        def step(i):
            dense, ids, labels = batches[i % len(batches)]
            opt.zero_grad()
            loss = loss_fn(model(dense, ids, offsets), labels)
            loss.backward()
            opt.step()
            return loss
    else:
        table = FusedTable()
        dense_net = DenseLoss().to(device)
        opt_table = torch.optim.SGD(table.parameters(), lr=args.lr)  # sparse gradient
        opt_dense = torch.optim.SGD(dense_net.parameters(), lr=args.lr)
        dense_loss = dense_net
        if compiled:
            # Static shapes: every batch has the same size, so one graph serves all steps.
            dense_loss = torch.compile(dense_net, mode="reduce-overhead", fullgraph=True, dynamic=False)

        def step(i):
            dense, ids, labels = batches[i % len(batches)]
            if compiled:
                torch.compiler.cudagraph_mark_step_begin()
            opt_table.zero_grad()
            opt_dense.zero_grad()
            loss = dense_loss(dense, table(ids), labels)
            loss.backward()
            opt_table.step()
            opt_dense.step()
            return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    warmup = max(args.warmup_steps, COMPILED_MIN_WARMUP) if compiled else args.warmup_steps
    loss = None
    compile_s = None
    t0 = time.perf_counter()
    try:
        for i in range(warmup):
            loss = step(i)
            if compiled and i == 0:
                sync()
                compile_s = time.perf_counter() - t0
        sync()
    except Exception as e:  # noqa: BLE001 - any failure while compiling ends the run
        if not compiled:
            raise
        print("train_baseline.py: --variant fused-compiled: torch.compile failed during the warm-up "
              "steps. It needs a working Inductor backend (Triton for CUDA, a C++ compiler for the CPU); "
              "--variant fused is the same model uncompiled. The error:\n"
              f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    cudagraph_skips = None
    if compiled:
        from torch._dynamo.utils import counters
        cudagraph_skips = int(counters["inductor"]["cudagraph_skips"])
        if device.type == "cuda" and cudagraph_skips:
            print(f"train_baseline.py: warning: Inductor skipped CUDA graphs {cudagraph_skips} time(s)",
                  file=sys.stderr)

    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(warmup + i)
    final_loss = float(loss.item())
    sync()
    secs = time.perf_counter() - t0

    print(json.dumps({
        "mode": "pytorch-baseline",
        "variant": variant,
        "tf32": bool(args.tf32),
        "samples_per_s": args.steps * bs / secs,
        "step_ms": 1000.0 * secs / args.steps,
        "seconds": secs,
        "steps": args.steps,
        "warmup_steps": warmup,
        "compile_s": compile_s,
        "cudagraph_skips": cudagraph_skips,
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
