"""sluice: Criteo click logs to DLRM training tensors.

``sluice.Loader`` hands out batches ``(dense, sparse, labels)`` that view the engine's ring buffers
through DLPack (numpy arrays, or torch tensors when torch is installed); ``sluice.prep`` and
``sluice.gen`` run the CLI's ``prep`` and ``gen``. See docs/python.md.
"""

from ._sluice import Error, available_engines, cuda_available
from ._loader import Batch, Loader
from ._run import gen, prep

__all__ = ["Batch", "Error", "Loader", "available_engines", "cuda_available", "gen", "prep"]
__version__ = "0.1.0"
