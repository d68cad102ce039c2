"""sluice.prep and sluice.gen: the CLI's commands with its options, as functions."""

import json
import os

from . import _sluice


def _paths(inputs):
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    return [os.fspath(p) for p in inputs]


def prep(inputs, out, *, max_ind_range=0, vocab="first-seen", min_freq=1, threads=0, on_error="fail",
         format="npy", layout="parts", name="day", days=0, engine="auto", chunk_mb=0.0, overwrite=False):
    """Runs ``sluice prep`` on ``inputs`` (files in order) into the directory ``out``.

    Returns the manifest it wrote (``out/manifest.json``) as a dict, with the run's figures under
    ``"run"`` (rows, rows_skipped, bytes, seconds, engine). Bad rows raise ``sluice.Error`` with
    ``FILE:LINE: reason`` (``on_error="skip"`` counts them instead); Ctrl-C raises KeyboardInterrupt
    and leaves no output directory.
    """
    out = os.fspath(out)
    run = _sluice.prep(_paths(inputs), out, max_ind_range, vocab, min_freq, threads, on_error, format, layout,
                       name, days, engine, float(chunk_mb), overwrite)
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    manifest["run"] = run
    return manifest


def gen(out, *, rows=100000, days=1, seed=1, cardinality_scale=1.0, threads=0, overwrite=False, sync=True):
    """Runs ``sluice gen``: synthetic Criteo-like day files ``out/day_N.tsv`` and ``out/truth.json``.

    Returns ``truth.json`` as a dict, with the run's figures under ``"run"`` (rows, bytes, ctr,
    oracle_test_auc, seconds) and the day files, in order, under ``"files"``.
    """
    out = os.fspath(out)
    run = _sluice.gen(out, rows, days, seed, float(cardinality_scale), threads, overwrite, sync)
    with open(os.path.join(out, "truth.json")) as f:
        truth = json.load(f)
    truth["run"] = run
    truth["files"] = [os.path.join(out, "day_%d.tsv" % d) for d in range(days)]
    return truth
