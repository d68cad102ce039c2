"""sluice.Loader: batches from a prep output or raw day files, as arrays that view the engine's ring."""

import collections
import os

import numpy

from . import _sluice

try:  # torch is optional: without it the batches are numpy arrays
    import torch
    import torch.utils.data

    _Base = torch.utils.data.IterableDataset
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
    _Base = object

# One batch with where its memory lives: `buffers` are the addresses of the ring slot's dense, sparse
# and labels buffers (the arrays view them: dense.data_ptr() == buffers[0] unless a copy was asked
# for), `first_row` the batch's first row in the split (start_row counted).
Batch = collections.namedtuple("Batch", ["dense", "sparse", "labels", "first_row", "buffers"])


def _device_ordinal(device):
    device = str(device)
    if device == "cpu":
        return -1
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise ValueError("device must be 'cpu', 'cuda' or 'cuda:N', not %r" % device)


class Loader(_Base):
    """Batches ``(dense, sparse, labels)`` of ``batch_size`` rows (the last one may be shorter), in
    input order: float32 [B, 13], int32 [B, 26] (int64 with ``sparse_dtype="int64"``, a copy),
    float32 [B].

    ``data``: a ``sluice prep`` output directory, a folder of raw day files (``day_N.tsv[.gz]``), or a
    list of raw day files in order (the last one holds the test and validation rows).
    ``split``: ``"all"`` (every row), ``"train"`` (every day but the last), ``"test"`` (the first half
    of the last day, rounded up) or ``"val"`` (the rest of it), as ``sluice train`` and Meta split.
    ``engine``: the engine that preprocesses raw files (``"auto"``: cuda when a GPU is usable).
    ``device``: ``"cpu"`` or ``"cuda[:N]"``; with the cuda engine the batches are made in that GPU's
    memory (no copy); host batches are copied there (``tensor.to``) when the output is torch.
    ``output``: ``"torch"``, ``"numpy"`` or ``"auto"`` (torch when it is installed).
    ``start_row``: resume at this row of the split. ``drop_last``: leave out a last short batch.
    ``online_ids``, ``max_ind_range``, ``vocab_dir``: how raw rows get their ids, as in
    ``sluice train`` (first-seen ids by default: those ``sluice prep`` gives, whatever the split).
    ``ring_depth``: batches prepared ahead. Holding more batches than that never lets one be
    overwritten: the ring grows by one buffer each time the loop asks for a batch while it holds
    every buffer (see docs/python.md).
    """

    def __init__(self, data, batch_size, engine="auto", device="cpu", split="all", *, drop_last=False, start_row=0,
                 output="auto", ring_depth=4, threads=0, online_ids="first-seen", max_ind_range=0, vocab_dir=None,
                 sparse_dtype="int32"):
        if output not in ("auto", "torch", "numpy"):
            raise ValueError("output must be 'auto', 'torch' or 'numpy', not %r" % (output,))
        if output == "torch" and torch is None:
            raise ImportError("output='torch' needs PyTorch (pip install torch)")
        self._torch = output == "torch" or (output == "auto" and torch is not None)
        if sparse_dtype not in ("int32", "int64"):
            raise ValueError("sparse_dtype must be 'int32' or 'int64', not %r" % (sparse_dtype,))
        self._device = str(device)
        self._ordinal = _device_ordinal(self._device)
        if self._ordinal >= 0 and not self._torch:
            raise ValueError("device=%r needs torch tensors (output='torch'): numpy arrays live in host memory"
                             % self._device)
        if isinstance(data, (str, os.PathLike)):
            self._files, self._dir = [], os.fspath(data)
        else:
            self._files, self._dir = [os.fspath(p) for p in data], ""
            if not self._files:
                raise ValueError("data: an empty list of files")
        self.batch_size = int(batch_size)
        self.split = split
        self.drop_last = bool(drop_last)
        self.start_row = int(start_row)
        self._engine = engine
        self._ring_depth = int(ring_depth)
        self._threads = int(threads)
        self._online_ids = online_ids
        self._max_ind_range = int(max_ind_range)
        self._vocab_dir = os.fspath(vocab_dir) if vocab_dir else ""
        self._sparse_dtype = sparse_dtype
        # Inspects (and checks) the dataset once: the row count, kind and table sizes. Each pass is a
        # fresh stream over it, started by its first batch.
        self._meta = _sluice.Stream(self._files, self._dir, self.batch_size, self.split, self._engine, self._ordinal,
                                    self.start_row, self._ring_depth, self._threads, self._online_ids,
                                    self._max_ind_range, self._vocab_dir)
        self.rows = self._meta.rows
        self.kind = self._meta.kind
        self.parts = list(self._meta.parts)
        # Prepared data with max_ind_range: ids % N, as `sluice train` does (a copy of the ids).
        self._modulo = self._max_ind_range if self.kind != "raw" and self._max_ind_range > 0 else 0
        self.table_sizes = [min(s, self._modulo) if self._modulo else s for s in self._meta.table_sizes]

    def _open(self):
        """A new pass (the C++ stream behind one iteration)."""
        return self._meta.fresh()

    def __len__(self):
        """Batches one pass yields (from ``start_row``)."""
        if self.drop_last:
            return self.rows // self.batch_size
        return (self.rows + self.batch_size - 1) // self.batch_size

    def _array(self, nd):
        if self._torch:
            return torch.from_dlpack(nd)
        return numpy.from_dlpack(nd)

    def batches(self):
        """Yields ``Batch`` tuples: the arrays and the addresses of the ring buffers they view."""
        if torch is not None:
            info = torch.utils.data.get_worker_info()
            if info is not None and info.num_workers > 1:
                raise RuntimeError("sluice.Loader runs its own threads: use it with DataLoader(num_workers=0) "
                                   "(each worker would read every row)")
        stream = self._open()
        try:
            while True:
                got = stream.next()
                if got is None:
                    return
                dense, sparse, labels, first_row, buffers = got
                dense, sparse, labels = self._array(dense), self._array(sparse), self._array(labels)
                if self.drop_last and labels.shape[0] < self.batch_size:
                    return
                if self._modulo:
                    sparse = sparse % self._modulo
                if self._sparse_dtype == "int64":
                    sparse = sparse.to(torch.int64) if self._torch else sparse.astype(numpy.int64)
                if self._torch and self._ordinal >= 0 and dense.device.type != "cuda":
                    dev = torch.device("cuda", self._ordinal)
                    dense, sparse, labels = dense.to(dev), sparse.to(dev), labels.to(dev)
                yield Batch(dense, sparse, labels, self.start_row + first_row, buffers)
        finally:
            stream.close()

    def __iter__(self):
        for b in self.batches():
            yield b.dense, b.sparse, b.labels
