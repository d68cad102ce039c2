"""sluice.prep and sluice.gen: the CLI's options, the manifest as a dict, Ctrl-C."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sluice
from conftest import ROWS


def test_gen_and_prep_return_their_files_as_dicts(data, tmp_path):
    with open(os.path.join(data.prep_dir, "manifest.json")) as f:
        on_disk = json.load(f)
    assert {k: v for k, v in data.manifest.items() if k != "run"} == on_disk
    # The fixture's prep runs with engine="auto": the cuda engine where a GPU is usable.
    auto = "cuda" if sluice.cuda_available() else "cpu"
    assert data.manifest["run"]["rows"] == ROWS and data.manifest["run"]["engine"] == auto
    assert data.part_rows == [1001, 1000, 1000]
    # The CLI's options: modulo ids, binary rows, days.
    m = sluice.prep(data.files, tmp_path / "bin", max_ind_range=1000, vocab="none", format="dlrm-bin", days=2,
                    threads=2)
    assert m["format"] == "dlrm-bin" and [p["rows"] for p in m["parts"]] == [1501, 1500]
    assert m["options"]["max_ind_range"] == 1000
    loader = sluice.Loader(str(tmp_path / "bin"), 700, output="numpy", threads=2)
    sparse = np.concatenate([b[1] for b in loader])
    assert sparse.max() < 1000 and sparse.shape == (ROWS, 26)
    with pytest.raises(sluice.Error, match="exists"):
        sluice.prep(data.files, tmp_path / "bin", threads=2)
    with pytest.raises(ValueError, match="format"):
        sluice.prep(data.files, tmp_path / "x", format="csv")
    t = sluice.gen(tmp_path / "g", rows=10, days=2, seed=9, threads=1)
    assert t["run"]["rows"] == 10 and [os.path.basename(f) for f in t["files"]] == ["day_0.tsv", "day_1.tsv"]
    assert sum(1 for f in t["files"] for _ in open(f)) == 10


def test_ctrl_c_stops_gen_and_leaves_no_output(tmp_path):
    script = textwrap.dedent("""
        import os, signal, sys, threading, time
        import sluice
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        try:
            sluice.gen(sys.argv[1], rows=200_000_000, days=2, threads=2)
            print("finished")
        except KeyboardInterrupt:
            print("interrupted after %.2f s" % (time.monotonic() - t0))
        time.sleep(0.1)
        print("entries:", os.listdir(os.path.dirname(sys.argv[1])))
        print("again:", sluice.gen(sys.argv[1], rows=100, days=2, threads=2)["run"]["rows"])
    """)
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "interrupted after" in r.stdout, r.stdout
    assert float(r.stdout.split("interrupted after ")[1].split()[0]) < 5, r.stdout
    assert "entries: []" in r.stdout, r.stdout  # no partial output directory
    assert "again: 100" in r.stdout, r.stdout
