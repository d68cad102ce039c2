#!/usr/bin/env python3
"""The host-to-GPU copy rate of this machine: page-locked host memory to GPU 0, PyTorch.

A 256 MiB page-locked tensor is copied to the GPU 3 times untimed, then 10 times timed one by one
(synchronised); the best copy gives h2d_gb_per_s (10^9 bytes per second), the median too. `sluice
measure` uses it as the PCIe rate of its modelled fpga pipeline.

    python3 bench/pcie_rate.py [--mib 256]

Prints one JSON line.
"""
import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("pcie_rate.py needs PyTorch")
    if not torch.cuda.is_available():
        sys.exit("pcie_rate.py: no CUDA GPU is available")
    n = args.mib << 20
    host = torch.empty(n, dtype=torch.uint8).pin_memory()
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    for _ in range(3):
        dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    rates = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        dev.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        rates.append(n / (time.perf_counter() - t0) / 1e9)
    print(json.dumps({"h2d_gb_per_s": max(rates), "h2d_gb_per_s_median": statistics.median(rates), "bytes": n,
                      "repeat": args.repeat, "gpu": torch.cuda.get_device_name(0)}))


if __name__ == "__main__":
    main()
