"""Grain pipelines that read whole batches from memory (or memory-mapped) columns.

Training: the element of the Grain dataset is a *batch index*, not an example. Batch ``i`` of the
run belongs to epoch ``i // steps_per_epoch``; each epoch is a fresh global permutation of all
rows (seeded by ``(seed, epoch)``), and the batch takes its ``batch_size`` consecutive entries of
that permutation. Every process takes its own contiguous ``batch_size / process_count`` slice of
those rows, so the global batch is the same whatever the number of processes, and the processes'
rows are disjoint. Reading is one fancy-index per column per batch: no per-example Python.

    MapDataset.range(steps) ─► map(read global batch i, this process's slice) ─► to_iter_dataset
    ─► thread prefetch

The iterator's state (the next batch index) goes into every checkpoint, so a resumed run
continues at the exact batch. Evaluation reads the rows in order, padding the last batch and
marking padded rows with ``valid = 0``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import grain
import numpy as np

Columns = dict[str, np.ndarray]


def num_rows(columns: Columns) -> int:
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"columns have different lengths: {lengths}")
    return next(iter(lengths.values()))


@functools.lru_cache(maxsize=2)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


class _TrainBatchReader(grain.transforms.Map):
    """Global batch index → this process's rows of that batch."""

    def __init__(self, columns, batch_size, steps_per_epoch, seed, process_index, process_count):
        self.columns = columns
        self.n = num_rows(columns)
        self.batch_size = batch_size
        self.local = batch_size // process_count
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.process_index = process_index

    def map(self, index: int) -> Columns:
        epoch, within = divmod(int(index), self.steps_per_epoch)
        perm = _epoch_permutation(self.n, self.seed, epoch)
        start = within * self.batch_size + self.process_index * self.local
        # Sorted rows read memory-mapped columns sequentially; row order inside a batch is
        # irrelevant to the step.
        rows = np.sort(perm[start : start + self.local])
        return {k: v[rows] for k, v in self.columns.items()}


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    steps = n_rows // batch_size
    if steps == 0:
        raise ValueError(
            f"config.batch_size={batch_size} is larger than the {n_rows} training rows; "
            "lower the batch size or add data"
        )
    return steps


def train_batches(
    columns: Columns,
    *,
    batch_size: int,
    num_steps: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    prefetch: int = 2,
    transform: Callable[[Columns], Columns] | None = None,
) -> grain.IterDataset:
    """An iterable of ``num_steps`` training batches (drops each epoch's remainder rows).

    ``transform`` is applied to each batch after it is read, in the prefetch thread when
    ``prefetch > 0`` (e.g. ``touched_rows.host_transform``: work taken off the train step).
    """
    if batch_size % process_count:
        raise ValueError(
            f"config.batch_size={batch_size} must be divisible by the {process_count} processes"
        )
    spe = steps_per_epoch(num_rows(columns), batch_size)
    reader = _TrainBatchReader(columns, batch_size, spe, seed, process_index, process_count)
    ds = grain.MapDataset.range(num_steps).map(reader)
    if transform is not None:
        ds = ds.map(transform)
    ds = ds.to_iter_dataset()
    if prefetch > 0:
        ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch)
    return ds


def eval_batches(
    columns: Columns,
    *,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
):
    """Yields every row once, in order, in global batches of ``batch_size`` (this process's part).

    The last batch is padded by repeating row 0; padded rows carry ``valid = 0``.
    """
    n = num_rows(columns)
    local = batch_size // process_count
    for start in range(0, n, batch_size):
        rows = np.arange(start + process_index * local, start + (process_index + 1) * local)
        valid = rows < n
        rows = np.where(valid, rows, 0)
        batch = {k: v[rows] for k, v in columns.items()}
        batch["valid"] = valid.astype(np.float32)
        yield batch
