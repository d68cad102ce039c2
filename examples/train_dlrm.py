#!/usr/bin/env python3
"""A plain PyTorch DLRM trained from sluice.Loader.

Meta's DLRM (bottom MLP over the 13 dense features, one embedding table per categorical feature,
pairwise dot interactions, top MLP) in ordinary PyTorch modules; the batches come from sluice
straight into the training loop: with --engine cuda --device cuda they are made in GPU memory and
viewed by torch without a copy.

    python3 -c "import sluice; t = sluice.gen('raw', rows=200000, days=3); sluice.prep(t['files'], 'prep')"
    python3 examples/train_dlrm.py --data prep [--device cuda]
    python3 examples/train_dlrm.py --data raw --engine cuda --device cuda --max-ind-range 100000

(Raw data with first-seen ids and no --max-ind-range gets sluice train's 1,000,000-row tables.)
"""

import argparse
import math
import time

import torch
from torch import nn

import sluice


def mlp(sizes, last_sigmoid=False):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_sigmoid:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    def __init__(self, table_sizes, dim=16, bottom=(13, 64, 16), top=(256, 1)):
        super().__init__()
        assert bottom[-1] == dim
        self.embeddings = nn.ModuleList(nn.EmbeddingBag(int(n), dim, mode="sum") for n in table_sizes)
        for e in self.embeddings:
            nn.init.uniform_(e.weight, -math.sqrt(1 / e.num_embeddings), math.sqrt(1 / e.num_embeddings))
        self.bottom = mlp(bottom, last_sigmoid=True)
        features = len(table_sizes) + 1
        pairs = features * (features - 1) // 2
        self.top = mlp((dim + pairs,) + tuple(top))
        self.register_buffer("rows", torch.tril_indices(features, features, offset=-1)[0], persistent=False)
        self.register_buffer("cols", torch.tril_indices(features, features, offset=-1)[1], persistent=False)

    def forward(self, dense, sparse):
        x = self.bottom(dense)
        ids = sparse.long()
        embs = [e(ids[:, i:i + 1]) for i, e in enumerate(self.embeddings)]
        t = torch.stack([x] + embs, dim=1)  # [B, 27, dim]
        z = torch.bmm(t, t.transpose(1, 2))[:, self.rows, self.cols]  # the pairwise dot products
        return self.top(torch.cat([x, z], dim=1)).squeeze(1)


def evaluate(model, loader, device):
    model.eval()
    loss_sum, n, correct = 0.0, 0, 0
    with torch.no_grad():
        for dense, sparse, labels in loader:
            dense, sparse, labels = dense.to(device), sparse.to(device), labels.to(device)
            logits = model(dense, sparse)
            loss_sum += nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum").item()
            correct += ((logits > 0).float() == labels).sum().item()
            n += labels.shape[0]
    model.train()
    return loss_sum / max(n, 1), correct / max(n, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a sluice prep output, a folder of day files, or day files")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--engine", default="auto", help="raw data: auto, cpu, cuda or fpga")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--max-ind-range", type=int, default=0, help="cap every table at N rows (ids modulo N)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--dim", type=int, default=16)
    a = p.parse_args()
    data = a.data.split(",") if "," in a.data else a.data
    common = dict(engine=a.engine, device=a.device, max_ind_range=a.max_ind_range, output="torch")
    train = sluice.Loader(data, a.batch_size, split="train", **common)
    test = sluice.Loader(data, 16384, split="test", **common)
    device = torch.device(a.device)
    model = DLRM(train.table_sizes, dim=a.dim, bottom=(13, 64, a.dim)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    print("train: %d rows in %d batches; test: %d rows; tables: %d rows in all"
          % (train.rows, len(train), test.rows, sum(train.table_sizes)))
    step, t0 = 0, time.time()
    for epoch in range(a.epochs):
        for dense, sparse, labels in train:
            logits = model(dense, sparse)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 100 == 0:
                print("epoch %d step %d loss %.4f (%.0f samples/s)"
                      % (epoch, step, loss.item(), step * a.batch_size / (time.time() - t0)))
            if step == a.max_steps:
                break
        if step == a.max_steps:
            break
    loss, acc = evaluate(model, test, device)
    print("test: log loss %.4f, accuracy %.4f after %d steps in %.1f s" % (loss, acc, step, time.time() - t0))


if __name__ == "__main__":
    main()
