#!/usr/bin/env python3
"""Sums up a trace written by `sluice train --trace FILE`: where the GPU's time went.

For each stream: busy time (the union of its kernels, copies and memsets), the count of operations,
its heaviest kernels. For the GPU as a whole: busy and idle time, and how much of the busy time had
two or more streams working at once. Kernels are grouped by owner: the data pipeline (the cuda
engine's kernels and the batch ring's copies) or the training step (everything else). Per-step
figures divide by the number of training steps in the trace.

    python3 scripts/trace_summary.py run.trace.json [--top 8] [--json]
"""
import argparse
import collections
import json
import sys

GPU_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
PIPELINE_MARKS = ("cuda_detail", "labels_to_float")  # kernels of src/engine/cuda
STEP_KERNEL = "train::kernels::(anonymous namespace)::gather_kernel"  # a training step's first kernel


def union_length(intervals):
    total = 0.0
    end = None
    start = None
    for a, b in sorted(intervals):
        if end is None or a > end:
            if end is not None:
                total += end - start
            start, end = a, b
        else:
            end = max(end, b)
    if end is not None:
        total += end - start
    return total


def covered_by_two(intervals):
    """Time during which at least two of the intervals overlap."""
    edges = []
    for a, b in intervals:
        edges.append((a, 1))
        edges.append((b, -1))
    edges.sort()
    depth = 0
    last = None
    total = 0.0
    for t, d in edges:
        if depth >= 2 and last is not None:
            total += t - last
        depth += d
        last = t
    return total


def owner(ev):
    name = ev.get("name", "")
    if ev["cat"] == "kernel":
        return "pipeline" if any(m in name for m in PIPELINE_MARKS) else "training"
    return "copy" if ev["cat"] == "gpu_memcpy" else "memset"


def summarize(events, top):
    gpu = [e for e in events if e.get("cat") in GPU_CATS and "dur" in e]
    if not gpu:
        raise SystemExit("no GPU activity in this trace (was it written on a GPU run?)")
    steps = [e for e in events if e.get("name") == "sluice: stage and step" and e.get("cat") == "user_annotation"]
    # Steps as the GPU ran them: the start of each step's first kernel (the embedding gather); per-step
    # figures divide by these (the loop's own marks, where a trace has them, count steps enqueued).
    marks = sorted(e["ts"] for e in gpu if e["cat"] == "kernel" and STEP_KERNEL in e["name"])
    nsteps = max(1, len(marks) or len(steps))
    t0 = min(e["ts"] for e in gpu)
    t1 = max(e["ts"] + e["dur"] for e in gpu)
    window = t1 - t0
    by_stream = collections.defaultdict(list)
    for e in gpu:
        by_stream[str(e.get("args", {}).get("stream", e.get("tid")))].append(e)
    streams = {}
    for s, evs in sorted(by_stream.items(), key=lambda kv: -sum(e["dur"] for e in kv[1])):
        kinds = collections.Counter(owner(e) for e in evs)
        kernels = collections.defaultdict(float)
        for e in evs:
            kernels[e["name"][:90]] += e["dur"]
        streams[s] = {
            "busy_us": union_length([(e["ts"], e["ts"] + e["dur"]) for e in evs]),
            "ops": len(evs),
            "owners": dict(kinds),
            "top": sorted(kernels.items(), key=lambda kv: -kv[1])[:top],
        }
    spans = [(e["ts"], e["ts"] + e["dur"]) for e in gpu]
    busy = union_length(spans)
    per_owner = {}
    for o in ("training", "pipeline", "copy", "memset"):
        iv = [(e["ts"], e["ts"] + e["dur"]) for e in gpu if owner(e) == o]
        per_owner[o] = {"busy_us": union_length(iv), "sum_us": sum(b - a for a, b in iv), "count": len(iv)}
    copies = collections.defaultdict(lambda: [0, 0.0, 0])
    for e in gpu:
        if e["cat"] == "gpu_memcpy":
            k = e["name"].replace("Memcpy ", "")
            copies[k][0] += 1
            copies[k][1] += e["dur"]
            copies[k][2] += int(e.get("args", {}).get("bytes", 0))
    host = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "user_annotation" and str(e.get("name", "")).startswith("sluice:"):
            host[e["name"]] += e.get("dur", 0)
    runtime = collections.defaultdict(lambda: [0, 0.0])
    for e in events:
        if e.get("cat") in ("cuda_runtime", "cuda_driver"):
            runtime[e["name"]][0] += 1
            runtime[e["name"]][1] += e.get("dur", 0)
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    slow = []
    step_stats = {}
    if gaps:
        med = sorted(gaps)[len(gaps) // 2]
        step_stats = {"count": len(gaps), "median_us": med, "max_us": max(gaps),
                      "p90_us": sorted(gaps)[int(0.9 * (len(gaps) - 1))],
                      "sum_us": sum(gaps), "excess_over_median_us": sum(max(0.0, x - med) for x in gaps)}
        calls = [e for e in events if e.get("cat") in ("cuda_runtime", "cuda_driver") and e.get("dur", 0) > 200]
        order = sorted(range(len(gaps)), key=lambda i: -gaps[i])[:top]
        for i in order:
            a, b = marks[i], marks[i + 1]
            over = [e for e in calls if e["ts"] < b and e["ts"] + e["dur"] > a]
            other = [e for e in gpu if a <= e["ts"] < b and owner(e) != "training"]
            slow.append({"at_us": a - t0, "span_us": gaps[i],
                         "long_runtime_calls": [f"{e['name']} {e['dur'] / 1000:.2f} ms (thread {e.get('tid')})"
                                                for e in sorted(over, key=lambda e: -e["dur"])[:6]],
                         "pipeline_gpu_us": sum(e["dur"] for e in other)})
    return {
        "steps": len(steps),
        "step_spans": step_stats,
        "slowest_steps": slow,
        "window_us": window,
        "gpu_busy_us": busy,
        "gpu_idle_us": window - busy,
        "two_streams_at_once_us": covered_by_two(spans),
        "per_step_ms": {
            "window": window / nsteps / 1000,
            "gpu_idle": (window - busy) / nsteps / 1000,
            **{o + "_busy": v["busy_us"] / nsteps / 1000 for o, v in per_owner.items()},
        },
        "owners": per_owner,
        "streams": streams,
        "copies": {k: {"count": v[0], "us": v[1], "bytes": v[2]} for k, v in copies.items()},
        "host_phases_us": dict(host),
        "runtime_calls": {k: {"count": v[0], "us": v[1]}
                          for k, v in sorted(runtime.items(), key=lambda kv: -kv[1][1])[:top]},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = ap.parse_args()
    with open(a.trace) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    r = summarize(events, a.top)
    if a.json:
        print(json.dumps(r, indent=1))
        return
    ss = r["step_spans"]
    if ss:
        print(f"steps on the GPU: {ss['count'] + 1}, span median {ss['median_us'] / 1000:.3f} ms, p90 "
              f"{ss['p90_us'] / 1000:.3f}, max {ss['max_us'] / 1000:.3f}; time over the median "
              f"{ss['excess_over_median_us'] / 1000:.2f} ms of {ss['sum_us'] / 1000:.2f} ms")
        for x in r["slowest_steps"]:
            print(f"  slow step at {x['at_us'] / 1000:.1f} ms: {x['span_us'] / 1000:.3f} ms, pipeline GPU "
                  f"{x['pipeline_gpu_us'] / 1000:.3f} ms; {'; '.join(x['long_runtime_calls'])}")
    ps = r["per_step_ms"]
    print(f"trace: {r['steps']} steps marked by the training loop, GPU window {r['window_us'] / 1000:.2f} ms")
    print(f"per step (ms): window {ps['window']:.3f}  GPU idle {ps['gpu_idle']:.3f}  training kernels "
          f"{ps['training_busy']:.3f}  pipeline kernels {ps['pipeline_busy']:.3f}  copies {ps['copy_busy']:.3f}")
    print(f"two or more streams busy at once: {r['two_streams_at_once_us'] / max(r['gpu_busy_us'], 1):.1%} of busy time")
    print("streams:")
    for s, v in r["streams"].items():
        print(f"  stream {s}: busy {v['busy_us'] / 1000:.2f} ms, {v['ops']} ops {v['owners']}")
        for name, us in v["top"]:
            print(f"      {us / 1000:8.3f} ms  {name}")
    print("copies:")
    for k, v in r["copies"].items():
        gbs = v["bytes"] / (v["us"] * 1e3) if v["us"] else 0
        print(f"  {k}: {v['count']} x, {v['us'] / 1000:.2f} ms, {v['bytes'] / 1e6:.1f} MB ({gbs:.1f} GB/s)")
    if r["host_phases_us"]:
        print("training thread (ms per step):")
        for k, us in r["host_phases_us"].items():
            print(f"  {k}: {us / max(r['steps'], 1) / 1000:.3f}")
    print("CUDA runtime calls (all threads), heaviest:")
    for k, v in r["runtime_calls"].items():
        print(f"  {k}: {v['count']} x, {v['us'] / 1000:.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
