#!/usr/bin/env python3
"""Measure.Quick: `sluice measure --quick` end to end, and what it leaves behind.

    python3 tests/scripts/test_measure_quick.py path/to/sluice

Checks that results.jsonl holds the CPU rows (pipelines 2 and 3) with positive times and a test AUC
in (0.5, 1], pipeline 1 either measured the same way or skipped with a reason, every row the machine
cannot run (no GPU: pipeline 4) skipped with its reason and named in measurements.md, and each plot a
non-empty PNG. Exits 77 (skipped) when the plots could not be made because matplotlib is missing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("time_by_batch.png", "gpu_util.png", "time_vs_size.png")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check_row(r):
    where = f"pipeline {r['pipeline']}, {r['rows']} rows, batch {r['batch_size']}"
    for key in ("train_s", "total_s"):
        v = r.get(key)
        if not isinstance(v, (int, float)) or not v > 0:
            fail(f"{where}: {key} is {v!r}, expected a positive number")
    if not isinstance(r.get("prep_s"), (int, float)) or r["prep_s"] < 0:
        fail(f"{where}: prep_s is {r.get('prep_s')!r}")
    if r["pipeline"] in (1, 2) and not r["prep_s"] > 0:
        fail(f"{where}: offline preprocessing took {r['prep_s']!r} s")
    auc = r.get("test_auc")
    if not isinstance(auc, (int, float)) or not 0.5 < auc <= 1.0:
        fail(f"{where}: test AUC {auc!r} is not in (0.5, 1]")
    if abs(r["total_s"] - r["prep_s"] - r["train_s"]) > 1e-6 * max(1.0, r["total_s"]):
        fail(f"{where}: total_s is not prep_s + train_s")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_measure_quick.py SLUICE_BINARY")
    sluice = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="sluice-measure-test-")
    try:
        out = os.path.join(tmp, "out")
        # A file of the user's in the output folder: it must survive.
        os.makedirs(out)
        with open(os.path.join(out, "notes.txt"), "w") as f:
            f.write("mine\n")
        p = subprocess.run([sluice, "measure", "--quick", "--out", out], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            fail(f"sluice measure --quick exited with {p.returncode}:\n{p.stderr[-4000:]}")
        with open(os.path.join(out, "notes.txt")) as f:
            if f.read() != "mine\n":
                fail("a file of the user's in --out was changed")
        with open(os.path.join(out, "results.jsonl")) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        header = [j for j in lines if j.get("type") == "machine"]
        rows = [j for j in lines if j.get("type") == "run"]
        if len(header) != 1:
            fail("results.jsonl: expected one machine line")
        header = header[0]
        sizes, batches = header["sizes"], header["batch_sizes"]
        if len(sizes) < 2 or len(batches) < 3:
            fail(f"--quick should sweep at least 2 sizes and 3 batch sizes, got {sizes} and {batches}")
        gpu = header.get("gpu") is not None

        def find(pipeline, n, b):
            sel = [r for r in rows if r["pipeline"] == pipeline and r["rows"] == n and r["batch_size"] == b]
            if len(sel) != 1:
                fail(f"results.jsonl: {len(sel)} rows for pipeline {pipeline}, {n} rows, batch {b}")
            return sel[0]

        grid = [(max(sizes), b) for b in batches] + [(n, header["sweep_batch_size"]) for n in sizes if n != max(sizes)]
        for n, b in grid:
            for pipeline in (2, 3):
                r = find(pipeline, n, b)
                if r["status"] != "ok":
                    fail(f"pipeline {pipeline}, {n} rows, batch {b}: {r['status']} ({r.get('reason')})")
                check_row(r)
            r = find(1, n, b)
            if r["status"] == "ok":
                check_row(r)
            elif r["status"] != "skipped" or not r.get("reason"):
                fail(f"pipeline 1: {r['status']} without being measured or skipped with a reason: {r}")
            for pipeline in (4, 5):
                r = find(pipeline, n, b)
                if not gpu and (r["status"] != "skipped" or not r.get("reason")):
                    fail(f"pipeline {pipeline} without a GPU: expected skipped with a reason, got {r['status']}")
        with open(os.path.join(out, "measurements.md")) as f:
            md = f.read()
        if "Time to a trained model" not in md or "seed, published" not in md:
            fail("measurements.md lacks the results table or the seed's published numbers")
        for r in rows:
            if r["status"] != "ok" and r["reason"] not in md:
                fail(f"measurements.md does not name the skipped row of pipeline {r['pipeline']}: {r['reason']}")
        if "Plots not made: matplotlib is not installed" in md:
            print("SKIP: matplotlib is not installed, so the plots were not made")
            sys.exit(77)
        for name in PLOTS:
            path = os.path.join(out, name)
            if not os.path.isfile(path):
                fail(f"{name} was not written")
            with open(path, "rb") as f:
                data = f.read()
            if not data.startswith(PNG_SIGNATURE) or len(data) < 1000:
                fail(f"{name} is not a non-empty PNG ({len(data)} bytes)")
            if name not in md:
                fail(f"measurements.md does not show {name}")
        leftovers = [n for n in os.listdir(out) if n.startswith(".")]
        if leftovers:
            fail(f"temporary files left in --out: {leftovers}")
        # A second run into the same folder refuses to replace the results without --overwrite.
        p = subprocess.run([sluice, "measure", "--quick", "--pipelines", "2", "--out", out], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if p.returncode == 0 or "--overwrite" not in p.stderr:
            fail("a second run replaced earlier results without --overwrite")
        print(f"ok: {len(rows)} rows, {sum(r['status'] == 'ok' for r in rows)} measured")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
