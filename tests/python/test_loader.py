"""sluice.Loader on a CPU: values, order, splits, zero copy, held and freed batches, errors."""

import gc
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sluice
from conftest import ROWS, collect


def numpy_loader(data, batch_size, **kw):
    kw.setdefault("threads", 2)
    return sluice.Loader(data, batch_size, output="numpy", **kw)


def address(a):
    return a.__array_interface__["data"][0]


@pytest.mark.parametrize("source", ["prep", "raw_dir", "raw_files"])
def test_values_equal_prep_outputs_in_order(data, source):
    src = {"prep": data.prep_dir, "raw_dir": data.raw_dir, "raw_files": data.files}[source]
    loader = numpy_loader(src, 256, engine="cpu" if source != "prep" else "auto")
    assert loader.rows == ROWS
    assert len(loader) == (ROWS + 255) // 256
    dense, sparse, labels, sizes = collect(loader)
    assert sizes == [256] * (ROWS // 256) + [ROWS % 256]
    assert dense.dtype == np.float32 and dense.shape == (ROWS, 13)
    assert sparse.dtype == np.int32 and sparse.shape == (ROWS, 26)
    assert labels.dtype == np.float32 and labels.shape == (ROWS,)
    np.testing.assert_array_equal(dense, data.dense)
    np.testing.assert_array_equal(sparse, data.sparse)
    np.testing.assert_array_equal(labels, data.labels)


def test_batches_count_rows_and_view_the_ring_without_copies(data):
    loader = numpy_loader(data.prep_dir, 500)
    first = []
    for b in loader.batches():
        first.append(b.first_row)
        assert address(b.dense) == b.buffers[0]
        assert address(b.sparse) == b.buffers[1]
        assert address(b.labels) == b.buffers[2]
    assert first == list(range(0, ROWS, 500))


@pytest.mark.parametrize("split", ["train", "test", "val", "all"])
def test_splits_as_the_trainer_splits(data, split):
    d0, d1, d2 = data.part_rows
    half = (d2 + 1) // 2
    lo, hi = {"train": (0, d0 + d1), "test": (d0 + d1, d0 + d1 + half), "val": (d0 + d1 + half, ROWS),
              "all": (0, ROWS)}[split]
    for src in (data.prep_dir, data.files):
        loader = numpy_loader(src, 100, split=split, engine="cpu" if src is data.files else "auto")
        assert loader.rows == hi - lo
        dense, sparse, labels, _ = collect(loader)
        np.testing.assert_array_equal(sparse, data.sparse[lo:hi])  # first-seen ids equal prep's in any split
        np.testing.assert_array_equal(dense, data.dense[lo:hi])
        np.testing.assert_array_equal(labels, data.labels[lo:hi])


def test_drop_last_resume_and_len(data):
    loader = numpy_loader(data.prep_dir, 1000, drop_last=True)
    assert len(loader) == 3
    _, _, _, sizes = collect(loader)
    assert sizes == [1000, 1000, 1000]
    resumed = numpy_loader(data.prep_dir, 1000, start_row=2500)
    assert resumed.rows == ROWS - 2500 and len(resumed) == 1
    assert [b.first_row for b in resumed.batches()] == [2500]
    _, sparse, _, sizes = collect(resumed)
    assert sizes == [ROWS - 2500]
    np.testing.assert_array_equal(sparse, data.sparse[2500:])
    # Iterating again starts over.
    assert collect(loader)[3] == [1000, 1000, 1000]


def test_held_batches_stay_intact_past_the_ring_depth(data):
    loader = numpy_loader(data.files, 64, ring_depth=2, engine="cpu")
    held = list(loader.batches())  # every batch of the pass held at once: 47 batches, 2 ring slots
    assert len(held) == (ROWS + 63) // 64
    assert len({b.buffers[1] for b in held}) == len(held), "two held batches share a buffer"
    np.testing.assert_array_equal(np.concatenate([b.sparse for b in held]), data.sparse)
    np.testing.assert_array_equal(np.concatenate([b.dense for b in held]), data.dense)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in held]), data.labels)


def test_a_slot_is_reused_only_once_all_three_arrays_are_freed(data):
    # Freed at once: the ring's few slots are reused over and over.
    loader = numpy_loader(data.prep_dir, 64, ring_depth=2)
    reused = {b.buffers[1] for b in loader.batches()}
    assert len(reused) <= 4
    # Keeping only the labels of each batch keeps its slot: no dense buffer is handed out twice.
    kept_labels, dense_buffers = [], []
    for dense, sparse, labels, first_row, buffers in loader.batches():
        kept_labels.append(labels)
        dense_buffers.append(buffers[0])
        del dense, sparse
    assert len(set(dense_buffers)) == len(dense_buffers)
    np.testing.assert_array_equal(np.concatenate(kept_labels), data.labels)


def test_freeing_out_of_order(data):
    rng = random.Random(7)
    loader = numpy_loader(data.prep_dir, 50, ring_depth=3)
    held = []
    for i, b in enumerate(loader.batches()):
        held.append((b.first_row, b.dense, b.sparse, b.labels))
        if i % 3 == 2:  # free a random held batch, one array at a time in a random order
            j = rng.randrange(len(held))
            row, *arrays = held.pop(j)
            rng.shuffle(arrays)
            while arrays:
                arrays.pop()
                gc.collect()
        for row, dense, sparse, labels in held:  # what is still held is still right
            np.testing.assert_array_equal(sparse, data.sparse[row:row + len(labels)])
    assert held
    rng.shuffle(held)
    while held:
        row, dense, sparse, labels = held.pop()
        np.testing.assert_array_equal(dense, data.dense[row:row + len(labels)])


def test_several_loaders_at_once(data):
    loaders = [numpy_loader(data.prep_dir, 128), numpy_loader(data.files, 128, engine="cpu"),
               numpy_loader(data.raw_dir, 128, engine="cpu", split="train"), numpy_loader(data.prep_dir, 1000)]
    its = [iter(l) for l in loaders]
    got = [[] for _ in loaders]
    live = set(range(len(its)))
    while live:
        for i in sorted(live):
            b = next(its[i], None)
            if b is None:
                live.discard(i)
            else:
                got[i].append(b[1])  # held, not copied
    train = sum(data.part_rows[:2])
    np.testing.assert_array_equal(np.concatenate(got[0]), data.sparse)
    np.testing.assert_array_equal(np.concatenate(got[1]), data.sparse)
    np.testing.assert_array_equal(np.concatenate(got[2]), data.sparse[:train])
    np.testing.assert_array_equal(np.concatenate(got[3]), data.sparse)


def test_modulo_ids_and_int64(data):
    raw = numpy_loader(data.files, 300, engine="cpu", online_ids="modulo", max_ind_range=97)
    assert raw.table_sizes == [97] * 26
    _, sparse, _, _ = collect(raw)
    assert sparse.max() < 97
    prepared = numpy_loader(data.prep_dir, 300, max_ind_range=97, sparse_dtype="int64")
    _, sparse64, _, _ = collect(prepared)
    assert sparse64.dtype == np.int64
    np.testing.assert_array_equal(sparse64, data.sparse.astype(np.int64) % 97)


def bad_copy(data, tmp_path, line, text):
    lines = open(data.files[0]).read().splitlines(keepends=True)
    lines[line - 1] = text
    path = tmp_path / "day_0.tsv"
    path.write_text("".join(lines))
    return str(path)


def test_bad_data_raises_with_file_and_line(data, tmp_path):
    bad = bad_copy(data, tmp_path, 700, "1\t2\tnot-a-number" + "\t" * 37 + "\n")
    loader = numpy_loader([bad, data.files[1]], 64, engine="cpu")
    with pytest.raises(sluice.Error, match=r"%s:700: " % bad) as e:
        collect(loader)
    assert isinstance(e.value, RuntimeError)
    with pytest.raises(sluice.Error, match=r"%s:700: " % bad):
        sluice.prep([bad], tmp_path / "out", threads=2)
    assert not (tmp_path / "out").exists()
    skipped = sluice.prep([bad], tmp_path / "out", threads=2, on_error="skip")
    assert skipped["rows_skipped"] == 1 and skipped["rows"] == 1000


def test_clear_errors_for_bad_arguments(data, tmp_path):
    with pytest.raises(sluice.Error, match="no such data directory"):
        numpy_loader(str(tmp_path / "missing"), 10)
    with pytest.raises(sluice.Error, match="no such file"):
        numpy_loader([data.files[0], str(tmp_path / "day_9.tsv")], 10)
    with pytest.raises(ValueError, match="split"):
        numpy_loader(data.prep_dir, 10, split="validation")
    with pytest.raises(ValueError, match="batch_size"):
        numpy_loader(data.prep_dir, 0)
    with pytest.raises(sluice.Error, match="need at least 2 days"):
        numpy_loader([data.files[0]], 10, split="train", engine="cpu")
    assert numpy_loader([data.files[0]], 10, engine="cpu").rows == data.part_rows[0]
    with pytest.raises(ValueError, match="output"):
        sluice.Loader(data.prep_dir, 10, output="jax")
    with pytest.raises(ValueError, match="device"):
        numpy_loader(data.prep_dir, 10, device="cuda")  # numpy arrays live in host memory
    with pytest.raises(sluice.Error, match="prepared dataset"):
        numpy_loader(data.prep_dir, 10, engine="cpu")


def test_cpu_only_machine(data):
    assert "cpu" in sluice.available_engines()
    if sluice.cuda_available():
        pytest.skip("a GPU is usable here")
    # auto picks the cpu engine; the cuda engine says why it cannot run.
    assert collect(numpy_loader(data.files, 1000))[3] == [1000, 1000, 1000, 1]
    with pytest.raises(sluice.Error):
        collect(numpy_loader(data.files, 1000, engine="cuda"))


def test_ctrl_c_while_waiting_for_a_batch(data, tmp_path):
    # A batch of every row of a larger dataset takes a while; SIGINT arrives while the loop waits in
    # next() and raises KeyboardInterrupt there; the process goes on and can read again. Python's own
    # handler is put in place first: a process started in the background by a shell without job control
    # inherits SIGINT ignored, and Python then leaves it ignored.
    script = textwrap.dedent("""
        import os, signal, sys, threading, time, traceback
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import sluice
        truth = sluice.gen(sys.argv[1], rows=400000, days=2, seed=3, cardinality_scale=0.01, threads=2)
        loader = sluice.Loader(truth["files"], 400000, engine="cpu", threads=1, output="numpy")
        threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        try:
            for b in loader:
                print("batch before the signal")
        except KeyboardInterrupt as e:
            print("interrupted after %.2f s" % (time.monotonic() - t0))
            # Raised by the wait itself (a wait deaf to signals would raise it in later Python code).
            print("raised in:", traceback.extract_tb(e.__traceback__)[-1].line)
        small = sluice.Loader(truth["files"][1:], 50000, engine="cpu", threads=2, output="numpy", online_ids="modulo", max_ind_range=10)
        print("rows after:", sum(len(b[2]) for b in small))
    """)
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "big")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "interrupted after" in r.stdout, r.stdout
    assert "raised in: got = stream.next()" in r.stdout, r.stdout
    assert float(r.stdout.split("interrupted after ")[1].split()[0]) < 5, r.stdout
    assert "rows after: 200000" in r.stdout, r.stdout


@pytest.mark.parametrize("engine", ["cpu", "fpga"])
def test_each_host_engine_gives_the_prep_values(data, engine):
    if engine not in sluice.available_engines():
        pytest.skip("the %s engine is not built in" % engine)
    dense, sparse, labels, _ = collect(numpy_loader(data.files, 400, engine=engine, split="val"))
    lo = sum(data.part_rows[:2]) + (data.part_rows[2] + 1) // 2
    np.testing.assert_array_equal(sparse, data.sparse[lo:])
    np.testing.assert_array_equal(dense, data.dense[lo:])
    np.testing.assert_array_equal(labels, data.labels[lo:])
