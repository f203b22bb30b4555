"""The embedding rows a training batch touches: found on the host, or inside the step.

The sparse embedding update (``optim.embedding_update`` lazy_adam or rowwise_adagrad) takes the
gradient with respect to the rows a batch reads, not the whole tables. For each fused table it
needs ``unique``: the sorted distinct row ids of the batch, padded to the number of lookups with
the table's row count R (an id past the end: reads give 0, writes are dropped), and ``slot``: for
each lookup, its position in ``unique``.

Inside the jitted step that is a ``jnp.unique`` with a static size: on the paper's MMoE (23,000
lookups per batch of 1,000) its sorts and the scan over them were ~20 ms of a ~175 ms CPU step,
on the step's critical path. ``host_transform`` computes the same arrays with numpy in the input
pipeline (Grain's prefetch thread, overlapped with the previous step) and puts them into the batch
under ``UNIQUE``/``SLOT`` keys; ``steps.train_step`` uses them when present and otherwise finds
them itself (``in_step``). Both give identical arrays, so the choice changes no arithmetic.

The host version is used by a single process only: a process sees only its own rows of the
global batch, and the distinct rows of the global batch are not the union of each process's
(a row touched by two processes would appear twice and its two gradients would not add up).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mtl_jax import weighting

UNIQUE = "touched_unique:"  # + fused table key: [N] sorted distinct row ids, padded with R
SLOT = "touched_slot:"  # + fused table key: [B, n] each lookup's position in the unique ids


def in_step(row_ids: dict[str, jax.Array], num_rows: dict[str, int]):
    """(unique, slot) per fused table key, inside a jitted function (static size)."""
    unique, slot = {}, {}
    for k, ids in row_ids.items():
        u, inv = jnp.unique(ids.ravel(), size=ids.size, fill_value=num_rows[k], return_inverse=True)
        unique[k] = u
        slot[k] = inv.reshape(ids.shape).astype(jnp.int32)
    return unique, slot


def on_host(row_ids: dict[str, np.ndarray], num_rows: dict[str, int]) -> dict[str, np.ndarray]:
    """The batch entries ``UNIQUE + key`` and ``SLOT + key`` of each fused table, with numpy."""
    out = {}
    for k, ids in row_ids.items():
        u, inv = np.unique(ids.ravel(), return_inverse=True)
        padded = np.full(ids.size, num_rows[k], dtype=ids.dtype)
        padded[: u.size] = u
        out[UNIQUE + k] = padded
        out[SLOT + k] = inv.reshape(ids.shape).astype(np.int32)
    return out


def host_row_ids(layer, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``InputLayer.row_ids`` with numpy, from the layer's static gather plan (``models/`` uses
    jax only, so its twin for the input pipeline lives here; tests check they agree)."""
    cat = batch["cat"]
    out = {}
    for key, idx, offs in layer.plan:
        ids = cat[:, list(idx)] + np.asarray(offs, dtype=cat.dtype)  # [B, Fk]
        if layer.use_sequence and key == layer.seq_key:
            ids = np.concatenate([ids, batch["seq_item"] + layer.seq_offset], axis=1)
        out[key] = ids
    return out


def from_batch(batch: dict) -> tuple[dict, dict, dict] | None:
    """(unique, slot, the batch without them) when ``host_transform`` filled them, else None."""
    if not any(k.startswith(UNIQUE) for k in batch):
        return None
    unique = {k[len(UNIQUE) :]: v for k, v in batch.items() if k.startswith(UNIQUE)}
    slot = {k[len(SLOT) :]: v for k, v in batch.items() if k.startswith(SLOT)}
    rest = {k: v for k, v in batch.items() if not k.startswith((UNIQUE, SLOT))}
    return unique, slot, rest


def host_transform(graphdef, params, model_state, *, sparse: bool) -> Callable | None:
    """The input pipeline's per-batch function that adds ``on_host``'s entries, or None when the
    step does not need them (dense embedding update, a model without tables) or cannot use them
    (more than one process, see the module docstring).

    ``params`` may be abstract (shapes only): only the tables' row counts are read.
    """
    if not sparse or jax.process_count() > 1:
        return None
    _, model_params = weighting.split_params(params)
    layer = getattr(nnx.merge(graphdef, model_params, model_state), "inputs", None)
    if layer is None or not layer.tables:
        return None
    num_rows = {k: int(t.shape[0]) for k, t in layer.tables.items()}

    def add_touched_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(batch, **on_host(host_row_ids(layer, batch), num_rows))

    return add_touched_rows
