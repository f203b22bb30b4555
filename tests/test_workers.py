"""mtl_jax.data.workers: ordered parallel map, results through shared-memory slots."""

import dataclasses
import mmap

import numpy as np

from mtl_jax.data import workers


@dataclasses.dataclass
class Result:
    index: int
    rows: np.ndarray
    parts: dict
    note: str


def make(i: int) -> Result:
    rng = np.random.default_rng(i)
    big = 5000 if i % 3 == 0 else 10  # every third result does not fit a 4 KB slot
    return Result(
        index=i,
        rows=rng.integers(0, 1 << 40, big),
        parts={"w": rng.random((i + 1, 3)).astype(np.float32), "pair": (np.arange(i), "x")},
        note=f"block {i}",
    )


def test_results_come_back_in_order_and_equal_through_slots_and_the_pipe():
    want = [make(i) for i in range(12)]
    for shared in (0, 4096, 1 << 20):
        got, in_slot = [], 0
        for r in workers.ordered_map(make, range(12), 2, shared_bytes=shared):
            in_slot += isinstance(r.rows.base, mmap.mmap)
            # Copy out: a slot is reused once the next result is requested.
            got.append(
                (r.index, r.rows.copy(), r.parts["w"].copy(), r.parts["pair"][0].copy(), r.note)
            )
        assert [g[0] for g in got] == list(range(12))
        assert in_slot == {0: 0, 4096: 8, 1 << 20: 12}[shared]  # big rows of 0, 3, 6, 9 > 4 KB
        for (i, rows, w, a, note), ref in zip(got, want):
            assert rows.dtype == ref.rows.dtype and np.array_equal(rows, ref.rows), (shared, i)
            assert w.dtype == np.float32 and np.array_equal(w, ref.parts["w"])
            assert np.array_equal(a, ref.parts["pair"][0]) and note == ref.note


def test_one_worker_runs_in_this_process():
    assert [r.index for r in workers.ordered_map(make, range(3), 1, shared_bytes=4096)] == [0, 1, 2]
