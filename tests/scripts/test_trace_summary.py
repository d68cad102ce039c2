#!/usr/bin/env python3
"""scripts/trace_summary.py on a small trace built here with known answers."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import trace_summary as ts  # noqa: E402

GATHER = "void sluice::train::kernels::(anonymous namespace)::gather_kernel<int>(...)"
PARSE = "sluice::cuda_detail::(anonymous namespace)::parse_kernel(char const*)"


def kernel(name, ts_us, dur, stream):
    return {"cat": "kernel", "ph": "X", "name": name, "ts": ts_us, "dur": dur, "args": {"stream": stream}}


def main():
    assert ts.union_length([(0, 2), (1, 3), (5, 6)]) == 4
    assert ts.covered_by_two([(0, 2), (1, 3), (5, 6)]) == 1
    assert ts.union_length([]) == 0
    # Four steps of 1000 us on stream 7 (a gather of 100 us, then a GEMM of 800 us); the third step is
    # stretched by 1500 us while a parse kernel runs on stream 9; an idle gap of 100 us per step.
    ev = []
    t = 0.0
    for step in range(4):
        ev.append(kernel(GATHER, t, 100, 7))
        ev.append(kernel("gemm", t + 100, 800, 7))
        if step == 2:
            ev.append(kernel(PARSE, t + 900, 1500, 9))
            t += 1500
        ev.append({"cat": "user_annotation", "ph": "X", "name": "sluice: stage and step", "ts": t, "dur": 50})
        t += 1000
    ev.append({"cat": "cuda_runtime", "ph": "X", "name": "cudaHostRegister", "ts": 2500, "dur": 1200, "tid": 3})
    r = ts.summarize(ev, 4)
    assert r["steps"] == 4, r["steps"]
    ss = r["step_spans"]
    assert ss["count"] == 3 and ss["median_us"] == 1000 and ss["max_us"] == 2500, ss
    assert ss["excess_over_median_us"] == 1500, ss
    slow = r["slowest_steps"][0]
    assert slow["span_us"] == 2500 and slow["pipeline_gpu_us"] == 1500, slow
    assert any("cudaHostRegister" in c for c in slow["long_runtime_calls"]), slow
    assert r["owners"]["pipeline"]["busy_us"] == 1500 and r["owners"]["training"]["sum_us"] == 3600, r["owners"]
    # window: 0 .. last kernel end (step 3 starts at 4500, its GEMM ends at 5400)
    assert r["window_us"] == 5400 and r["gpu_idle_us"] == 5400 - (3600 + 1500 - 0), r
    # The command line, on a file.
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.json")
        with open(p, "w") as f:
            json.dump({"traceEvents": ev}, f)
        out = subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "scripts", "trace_summary.py"), p],
                             capture_output=True, text=True, check=True).stdout
        assert "steps on the GPU: 4, span median 1.000 ms" in out, out
        assert "slow step at 2.0 ms: 2.500 ms, pipeline GPU 1.500 ms; cudaHostRegister 1.20 ms" in out, out
    print("trace_summary: ok")


if __name__ == "__main__":
    main()
