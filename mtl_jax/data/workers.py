"""Ordered parallel map over forked worker processes, with results handed back in shared memory.

``ordered_map(fn, tasks, workers)`` yields ``fn(task)`` in task order with at most
``2 * workers`` tasks in flight. A reader's result is mostly large numpy arrays (a block of parsed
rows); sending them through the pool's pipe pickles and copies every byte four times (pickle,
pipe write, pipe read, unpickle), which cost as much CPU as the parsing itself. With
``shared_bytes`` each task gets one of ``2 * workers + 1`` anonymous shared-memory slots, mapped
before the workers fork: the worker copies the result's arrays into its slot and sends only their
(offset, dtype, shape); the parent reads them in place. A result is consumed before its slot is
handed to a new task (the generator submits the next task only when the consumer asks for the
next result), so a slot is never overwritten while its views are in use. Arrays that do not fit
the slot travel through the pipe as before.
"""

from __future__ import annotations

import collections
import dataclasses
import mmap
import multiprocessing

import numpy as np

_SLOTS: list[mmap.mmap] = []  # set in the parent before the fork, inherited by the workers


@dataclasses.dataclass(frozen=True)
class _InSlot:
    offset: int
    dtype: str
    shape: tuple[int, ...]


def _pack(value, slot: mmap.mmap, pos: list[int]):
    """``value`` with every ndarray copied into ``slot`` and replaced by its ``_InSlot``."""
    if isinstance(value, np.ndarray) and value.dtype != object:
        off = -(-pos[0] // 64) * 64  # 64-byte aligned
        if off + value.nbytes > len(slot):
            return value
        dst = np.ndarray(value.shape, value.dtype, buffer=slot, offset=off)
        dst[...] = value
        pos[0] = off + value.nbytes
        return _InSlot(off, value.dtype.str, value.shape)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _pack(getattr(value, f.name), slot, pos) for f in dataclasses.fields(value)
        }
        return dataclasses.replace(value, **changes)
    if isinstance(value, dict):
        return {k: _pack(v, slot, pos) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_pack(v, slot, pos) for v in value)
    return value


def _unpack(value, slot: mmap.mmap):
    """The inverse of :func:`_pack`: ``_InSlot`` → a view of the slot."""
    if isinstance(value, _InSlot):
        return np.ndarray(value.shape, np.dtype(value.dtype), buffer=slot, offset=value.offset)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _unpack(getattr(value, f.name), slot) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    if isinstance(value, dict):
        return {k: _unpack(v, slot) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_unpack(v, slot) for v in value)
    return value


def _run_in_slot(fn, task, slot_index: int):
    return _pack(fn(task), _SLOTS[slot_index], [0])


def ordered_map(fn, tasks, workers: int, *, shared_bytes: int = 0):
    """``fn`` over ``tasks`` in order, with at most ``2 * workers`` tasks in flight.

    ``workers <= 1`` runs in this process. ``shared_bytes`` > 0 returns results through
    shared-memory slots of that size (see the module docstring); each yielded result is valid
    until the consumer asks for the next one.
    """
    if workers <= 1:
        for t in tasks:
            yield fn(t)
        return
    global _SLOTS
    n_slots = 2 * workers + 1 if shared_bytes > 0 else 0
    _SLOTS = [mmap.mmap(-1, shared_bytes) for _ in range(n_slots)]
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pending: collections.deque = collections.deque()

            def take():
                slot, fut = pending.popleft()
                res = fut.get()
                return res if slot is None else _unpack(res, _SLOTS[slot])

            for i, t in enumerate(tasks):
                if n_slots:
                    slot = i % n_slots
                    pending.append((slot, pool.apply_async(_run_in_slot, (fn, t, slot))))
                else:
                    pending.append((None, pool.apply_async(fn, (t,))))
                if len(pending) >= 2 * workers:
                    yield take()
            while pending:
                yield take()
    finally:
        slots, _SLOTS = _SLOTS, []
        for s in slots:
            try:
                s.close()
            except BufferError:  # a view of it is still alive somewhere: the GC will unmap it
                pass
