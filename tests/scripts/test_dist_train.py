#!/usr/bin/env python3
"""Training on several ranks equals training on one, end to end through the CLI.

    test_dist_train.py SLUICE [--device cpu|cuda] [--ranks 2,3]

On generated data (two days: the first trains, the second's first half tests), `sluice train` runs once
in one process and once with `--nproc N` for each N, same global batch: the loss of every step (an epoch
of 59 steps, the last one partial) agrees within 1e-5 (relative), the test AUC within 1e-4. The global
batch of 256 does not split evenly over 3 ranks, and 3 ranks own tables of different sizes. A 2-rank run
stopped at step 20 writes one checkpoint per rank; resumed, it ends where the uninterrupted run ends;
a run of another number of ranks refuses those checkpoints. Tables split row-wise (--row-wise-above)
give the same losses too. A SIGINT to the launcher stops every rank after the same step, with a
checkpoint each. Device cuda: the ranks' count is capped by
the GPUs present (exit 77 with fewer than 2).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def run(cmd, expect_ok=True, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=900)
    if expect_ok and p.returncode != 0:
        fail(f"{' '.join(cmd)} exited {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p


def losses(metrics_path):
    out = {}
    with open(metrics_path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "train":
                out[r["step"]] = r["loss"]
    return out


def summary(stdout):
    lines = [l for l in stdout.strip().splitlines() if l.startswith("{")]
    if not lines:
        fail("no JSON summary on stdout:\n" + stdout[-2000:])
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sluice")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ranks", default="2,3")
    args = ap.parse_args()
    ranks = [int(x) for x in args.ranks.split(",")]
    if args.device.startswith("cuda"):
        try:
            q = subprocess.run(["nvidia-smi", "-L"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            gpus = q.stdout.count("GPU ") if q.returncode == 0 else 0
        except OSError:  # no nvidia-smi: no GPU
            gpus = 0
        ranks = [n for n in ranks if n <= gpus]
        if not ranks:
            print(f"skipped: {gpus} GPU(s), several are needed")
            sys.exit(77)

    work = tempfile.mkdtemp(prefix="sluice-dist-")
    try:
        data, prep = os.path.join(work, "raw"), os.path.join(work, "prep")
        run([args.sluice, "gen", "--rows", "30000", "--days", "2", "--seed", "7", "--cardinality-scale", "0.002",
             "--no-sync", "--out", data])
        days = sorted(os.path.join(data, f) for f in os.listdir(data) if f.startswith("day_"))
        run([args.sluice, "prep", "--engine", "cpu", "--out", prep] + days)

        base = [args.sluice, "train", "--data", prep, "--device", args.device, "--batch-size", "256",
                "--arch-sparse-feature-size", "8", "--arch-mlp-bot", "13-32-8", "--arch-mlp-top", "32-1",
                "--print-freq", "1", "--threads", "1", "--seed", "5"]
        if args.device.startswith("cuda"):
            base += ["--precision", "fp32", "--step", "autograd"]

        def train(tag, extra):
            m = os.path.join(work, f"metrics-{tag}.jsonl")
            p = run(base + ["--metrics", m] + extra)
            return losses(m), summary(p.stdout)

        ref_loss, ref = train("1", [])
        if len(ref_loss) < 50:
            fail(f"the reference run logged {len(ref_loss)} steps (50 or more expected)")
        print(f"1 rank: {len(ref_loss)} steps, auc {ref['test_auc']:.6f}")

        def compare(tag, got_loss, got, steps=None):
            want = {s: ref_loss[s] for s in (steps or ref_loss)}
            missing = [s for s in want if s not in got_loss]
            if missing:
                fail(f"{tag}: no loss logged for steps {missing[:5]}")
            worst = max(abs(got_loss[s] - want[s]) / max(abs(want[s]), 1e-12) for s in want)
            if worst > 1e-5:
                fail(f"{tag}: a step's loss differs by {worst:.3g} (relative) from the 1-rank run")
            if abs(got["test_auc"] - ref["test_auc"]) > 1e-4:
                fail(f"{tag}: test AUC {got['test_auc']:.6f}, the 1-rank run's {ref['test_auc']:.6f}")
            if got["rows_trained"] != ref["rows_trained"] or got["test_rows"] != ref["test_rows"]:
                fail(f"{tag}: trained {got['rows_trained']} / tested {got['test_rows']} rows, "
                     f"the 1-rank run {ref['rows_trained']} / {ref['test_rows']}")
            print(f"{tag}: {len(want)} steps, largest loss difference {worst:.2e}, auc {got['test_auc']:.6f}")

        for n in ranks:
            got_loss, got = train(str(n), ["--nproc", str(n)])
            if got.get("ranks") != n:
                fail(f"--nproc {n}: the summary says {got.get('ranks')} ranks")
            compare(f"{n} ranks", got_loss, got)
        # Launched as torchrun launches ranks: one process each, with RANK, WORLD_SIZE, LOCAL_RANK,
        # MASTER_ADDR and MASTER_PORT in their environment.
        n = ranks[0]
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        m = os.path.join(work, "metrics-env.jsonl")
        procs = []
        for r in range(n):
            env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(n), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port))
            procs.append(subprocess.Popen(base + ["--metrics", m], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=900) for p in procs]
        for r, (p, (out, err)) in enumerate(zip(procs, outs)):
            if p.returncode != 0:
                fail(f"rank {r} of a torchrun-style launch exited {p.returncode}:\n{err[-2000:]}")
        compare(f"{n} ranks launched torchrun-style", losses(m), summary(outs[0][0]))

        # Tables of more than 50 rows split row-wise over the ranks, the small ones placed whole.
        n = ranks[-1]
        got_loss, got = train(f"{n}-rw", ["--nproc", str(n), "--row-wise-above", "50"])
        compare(f"{n} ranks, tables over 50 rows split row-wise", got_loss, got)

        # Stopped at step 20, resumed: one checkpoint per rank, the same end.
        n = ranks[0]
        ck = os.path.join(work, "ck")
        m = os.path.join(work, "metrics-resume.jsonl")
        run(base + ["--nproc", str(n), "--checkpoint", ck, "--max-steps", "20", "--no-eval", "--metrics", m])
        files = sorted(os.listdir(ck))
        want = [f"checkpoint.rank-{r}-of-{n}.sluice" for r in range(n)]
        if files != want:
            fail(f"checkpoints after 20 steps: {files}, expected {want}")
        if n + 1 <= max(ranks + [n + 1]) and not args.device.startswith("cuda"):
            p = run(base + ["--nproc", str(n + 1), "--checkpoint", ck, "--resume"], expect_ok=False)
            if p.returncode == 0 or "another number of ranks" not in p.stderr:
                fail(f"resuming {n}-rank checkpoints with {n + 1} ranks: exit {p.returncode}, stderr:\n{p.stderr[-2000:]}")
        p = run(base + ["--nproc", str(n), "--checkpoint", ck, "--resume", "--metrics", m])
        resumed = summary(p.stdout)
        if not resumed.get("resumed"):
            fail("the resumed run does not say it resumed")
        compare(f"{n} ranks, stopped at step 20 and resumed", losses(m), resumed)
        # A signal to the launcher: every rank stops after the same step and writes its checkpoint.
        if not args.device.startswith("cuda"):
            import signal
            import time
            ck2 = os.path.join(work, "ck-signal")
            m2 = os.path.join(work, "metrics-signal.jsonl")
            p = subprocess.Popen(base + ["--nproc", str(n), "--checkpoint", ck2, "--epochs", "1000", "--no-eval",
                                         "--metrics", m2], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.time() + 300
            while time.time() < deadline and p.poll() is None:
                if os.path.exists(m2) and len(losses(m2)) >= 30:
                    break
                time.sleep(0.1)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=300)
            if p.returncode != 130:
                fail(f"SIGINT to --nproc {n}: exit {p.returncode} (130 expected), stderr:\n{err[-2000:]}")
            files = sorted(os.listdir(ck2))
            want = [f"checkpoint.rank-{r}-of-{n}.sluice" for r in range(n)]
            if files != want:
                fail(f"checkpoints after SIGINT: {files}, expected {want}")
            steps = set()
            for f in files:
                with open(os.path.join(ck2, f), "rb") as fh:
                    head = fh.read(1 << 16)
                start = head.index(b"{")
                meta, _ = json.JSONDecoder().raw_decode(head[start:].decode("utf-8", "replace"))
                steps.add(meta["position"]["step"])
            if len(steps) != 1 or min(steps) < 30:
                fail(f"after SIGINT the ranks' checkpoints stand at steps {sorted(steps)}")
            print(f"SIGINT: every rank stopped after step {steps.pop()}, checkpoints written")
        print("ok")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
