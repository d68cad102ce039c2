import os

import numpy as np
import pytest

import sluice

ROWS = 3001  # days of 1001, 1000 and 1000 rows


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """A small generated dataset, its `sluice prep` output and the prepared arrays, concatenated."""
    root = tmp_path_factory.mktemp("sluice")
    truth = sluice.gen(root / "raw", rows=ROWS, days=3, seed=5, cardinality_scale=0.001, threads=2)
    manifest = sluice.prep(truth["files"], root / "prep", threads=2)
    parts = [p["name"] for p in manifest["parts"]]
    prep_dir = str(root / "prep")
    arrays = {}
    for kind in ("dense", "sparse", "labels"):
        arrays[kind] = np.concatenate([np.load(os.path.join(prep_dir, "%s_%s.npy" % (p, kind))) for p in parts])

    class Data:
        pass

    d = Data()
    d.root = root
    d.raw_dir = str(root / "raw")
    d.files = truth["files"]
    d.prep_dir = prep_dir
    d.manifest = manifest
    d.part_rows = [p["rows"] for p in manifest["parts"]]
    # Prep's labels are int32 [N, 1]; the loader's float32 [N], as the trainer takes them.
    d.dense, d.sparse = arrays["dense"], arrays["sparse"]
    d.labels = arrays["labels"].reshape(-1).astype(np.float32)
    assert d.labels.shape == (ROWS,) and set(np.unique(d.labels)) <= {0.0, 1.0}
    return d


def collect(loader):
    """Every batch of one pass, copied, concatenated; and the batches' sizes."""
    dense, sparse, labels, sizes = [], [], [], []
    for b in loader:
        b = [np.asarray(x.cpu()) if hasattr(x, "cpu") else x for x in b]
        dense.append(b[0].copy())
        sparse.append(b[1].copy())
        labels.append(b[2].copy())
        sizes.append(b[2].shape[0])
    if not sizes:
        return np.zeros((0, 13), np.float32), np.zeros((0, 26), np.int32), np.zeros((0,), np.float32), sizes
    return np.concatenate(dense), np.concatenate(sparse), np.concatenate(labels), sizes
