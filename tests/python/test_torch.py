"""sluice.Loader with PyTorch: tensors through DLPack, IterableDataset, the GPU (skipped without one)."""

import numpy as np
import pytest

import sluice
from conftest import ROWS, collect

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

gpu = pytest.mark.skipif(not (torch.cuda.is_available() and sluice.cuda_available()
                              and "cuda" in sluice.available_engines()),
                         reason="needs a CUDA GPU and the cuda engine built in")


def test_torch_tensors_view_the_ring(data):
    loader = sluice.Loader(data.prep_dir, 512, threads=2)  # output="auto": torch when installed
    rows = 0
    for b in loader.batches():
        assert isinstance(b.dense, torch.Tensor) and b.dense.dtype == torch.float32
        assert b.sparse.dtype == torch.int32 and b.labels.dtype == torch.float32
        assert (b.dense.data_ptr(), b.sparse.data_ptr(), b.labels.data_ptr()) == tuple(b.buffers)
        rows += b.labels.shape[0]
    assert rows == ROWS
    dense, sparse, labels, _ = collect(loader)
    np.testing.assert_array_equal(sparse, data.sparse)
    np.testing.assert_array_equal(dense, data.dense)
    np.testing.assert_array_equal(labels, data.labels)


def test_iterable_dataset_in_a_dataloader(data):
    loader = sluice.Loader(data.files, 256, engine="cpu", threads=2, sparse_dtype="int64", drop_last=True)
    assert isinstance(loader, torch.utils.data.IterableDataset)
    dl = torch.utils.data.DataLoader(loader, batch_size=None)
    got = list(dl)
    assert len(got) == len(loader) == ROWS // 256
    sparse = torch.cat([b[1] for b in got])
    assert sparse.dtype == torch.int64
    np.testing.assert_array_equal(sparse.numpy(), data.sparse[:len(sparse)])


def test_torchrec_batches(data):
    pytest.importorskip("torchrec", reason="torchrec is not installed")
    import sluice.torchrec

    loader = sluice.torchrec.Loader(data.prep_dir, 100, threads=2)
    b = next(iter(loader))
    assert b.sparse_features.keys() == ["cat_%d" % i for i in range(26)]
    for i, key in enumerate(b.sparse_features.keys()):
        np.testing.assert_array_equal(b.sparse_features[key].values().numpy(), data.sparse[:100, i])
    np.testing.assert_array_equal(b.dense_features.numpy(), data.dense[:100])
    np.testing.assert_array_equal(b.labels.numpy(), data.labels[:100])


@gpu
def test_cuda_engine_batches_live_on_the_gpu_without_copies(data):
    loader = sluice.Loader(data.files, 64, engine="cuda", device="cuda", threads=2)  # 47 batches: past the ring
    held = []
    for b in loader.batches():
        assert b.dense.is_cuda and b.sparse.is_cuda and b.labels.is_cuda
        assert (b.dense.data_ptr(), b.sparse.data_ptr(), b.labels.data_ptr()) == tuple(b.buffers)
        held.append(b)  # every batch held: past the ring's depth
    dense = torch.cat([b.dense for b in held]).cpu().numpy()
    sparse = torch.cat([b.sparse for b in held]).cpu().numpy()
    labels = torch.cat([b.labels for b in held]).cpu().numpy()
    np.testing.assert_array_equal(sparse, data.sparse)
    np.testing.assert_array_equal(dense, data.dense)
    np.testing.assert_array_equal(labels, data.labels)


@gpu
def test_host_batches_are_copied_to_the_gpu(data):
    loader = sluice.Loader(data.prep_dir, 1000, device="cuda", threads=2)
    dense, sparse, labels = next(iter(loader))
    assert dense.is_cuda and sparse.is_cuda and labels.is_cuda
    np.testing.assert_array_equal(sparse.cpu().numpy(), data.sparse[:1000])
