"""Grain pipeline: global shuffle per epoch, per-process slices, eval padding, exact resume."""

import numpy as np
import pytest

from mtl_jax.data import pipeline


def _columns(n=103):
    return {"x": np.arange(n, dtype=np.int64), "y": np.arange(n, dtype=np.float32)[:, None] * 2}


def _batches(ds):
    return [b["x"] for b in ds]


def test_each_epoch_is_a_permutation_and_epochs_differ():
    cols = _columns(100)
    ds = pipeline.train_batches(cols, batch_size=10, num_steps=20, seed=3, prefetch=0)
    batches = _batches(ds)
    e0, e1 = np.concatenate(batches[:10]), np.concatenate(batches[10:])
    np.testing.assert_array_equal(np.sort(e0), np.arange(100))
    np.testing.assert_array_equal(np.sort(e1), np.arange(100))
    assert not all(np.array_equal(a, b) for a, b in zip(batches[:10], batches[10:]))
    # Columns stay aligned row by row.
    b = next(iter(pipeline.train_batches(cols, batch_size=10, num_steps=1, seed=3)))
    np.testing.assert_array_equal(b["y"][:, 0], b["x"] * 2)


def test_deterministic_by_seed():
    cols = _columns()
    a = _batches(pipeline.train_batches(cols, batch_size=8, num_steps=15, seed=1))
    b = _batches(pipeline.train_batches(cols, batch_size=8, num_steps=15, seed=1))
    c = _batches(pipeline.train_batches(cols, batch_size=8, num_steps=15, seed=2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_process_slices_are_disjoint_and_form_the_global_batch():
    cols = _columns()
    full = _batches(pipeline.train_batches(cols, batch_size=12, num_steps=9, seed=0))
    parts = [
        _batches(
            pipeline.train_batches(
                cols, batch_size=12, num_steps=9, seed=0, process_index=p, process_count=3
            )
        )
        for p in range(3)
    ]
    for step, glob in enumerate(full):
        pieces = [parts[p][step] for p in range(3)]
        assert all(len(x) == 4 for x in pieces)
        joined = np.concatenate(pieces)
        assert len(np.unique(joined)) == 12
        np.testing.assert_array_equal(np.sort(joined), np.sort(glob))


def test_iterator_state_resumes_at_the_exact_batch():
    cols = _columns()
    straight = _batches(pipeline.train_batches(cols, batch_size=8, num_steps=30, seed=5))
    it = iter(pipeline.train_batches(cols, batch_size=8, num_steps=30, seed=5))
    for _ in range(17):
        next(it)
    state = it.get_state()
    fresh = iter(pipeline.train_batches(cols, batch_size=8, num_steps=30, seed=5))
    fresh.set_state(state)
    rest = [b["x"] for b in fresh]
    assert len(rest) == 13
    for a, b in zip(rest, straight[17:]):
        np.testing.assert_array_equal(a, b)


def test_eval_batches_cover_every_row_once_with_padding_marked():
    cols = _columns(103)
    batches = list(pipeline.eval_batches(cols, batch_size=20))
    assert len(batches) == 6
    xs = np.concatenate([b["x"][b["valid"] > 0] for b in batches])
    np.testing.assert_array_equal(xs, np.arange(103))
    assert batches[-1]["valid"].sum() == 3 and len(batches[-1]["x"]) == 20
    # Two processes: each gets half of every global batch; together all rows once.
    halves = [
        list(pipeline.eval_batches(cols, batch_size=20, process_index=p, process_count=2))
        for p in range(2)
    ]
    xs2 = np.concatenate([b["x"][b["valid"] > 0] for pair in zip(*halves) for b in pair])
    np.testing.assert_array_equal(np.sort(xs2), np.arange(103))


def test_batch_larger_than_data_is_a_clear_error():
    with pytest.raises(ValueError, match="config.batch_size=200"):
        pipeline.train_batches(_columns(50), batch_size=200, num_steps=1, seed=0)
