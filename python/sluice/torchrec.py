"""TorchRec adapter: sluice batches as ``torchrec.datasets.utils.Batch``.

``sluice.torchrec.Loader`` takes ``sluice.Loader``'s arguments and yields what
``torchrec.datasets.criteo``'s loaders yield: ``Batch(dense_features, sparse_features, labels)`` with
``sparse_features`` a ``KeyedJaggedTensor`` of the 26 features ``cat_0`` .. ``cat_25`` (one id per row
and feature), so it replaces those loaders in TorchRec's DLRM example. Needs torch and torchrec.

The dense features and labels are the ring's tensors (no copy); the ids are laid out key-major as
TorchRec wants them (``sparse.t().reshape(-1)``), which is one copy, int64 by default
(``sparse_dtype``), made on the batch's device.
"""

import torch
from torchrec.datasets.utils import Batch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from ._loader import Loader as _Loader

CAT_NAMES = ["cat_%d" % i for i in range(26)]


class Loader(torch.utils.data.IterableDataset):
    def __init__(self, data, batch_size, *args, sparse_dtype="int64", **kwargs):
        kwargs["output"] = "torch"
        self.loader = _Loader(data, batch_size, *args, **kwargs)
        self._dtype = torch.int64 if sparse_dtype == "int64" else torch.int32

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for dense, sparse, labels in self.loader:
            yield to_batch(dense, sparse, labels, self._dtype)


def to_batch(dense, sparse, labels, dtype=torch.int64):
    """One (dense, sparse, labels) batch as TorchRec's ``Batch``."""
    rows, features = sparse.shape
    values = sparse.t().reshape(-1).to(dtype)
    lengths = torch.ones(rows * features, dtype=torch.int32, device=sparse.device)
    offsets = torch.arange(0, rows * features + 1, dtype=torch.int32, device=sparse.device)
    kjt = KeyedJaggedTensor(keys=CAT_NAMES, values=values, lengths=lengths, offsets=offsets, stride=rows,
                            length_per_key=[rows] * features, offset_per_key=[rows * i for i in range(features + 1)],
                            index_per_key={k: i for i, k in enumerate(CAT_NAMES)})
    return Batch(dense_features=dense, sparse_features=kjt, labels=labels)
