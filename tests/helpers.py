"""Small builders shared by the tests."""

from __future__ import annotations

import ml_collections
import numpy as np

from mtl_jax.data.schema import CategoricalFeature, Schema, SequenceFeature


def tiny_schema(*, sequence: bool = True, tasks=("click", "order")) -> Schema:
    cats = (
        CategoricalFeature("user", 50, group="user"),
        CategoricalFeature("item", 40, group="item"),
        CategoricalFeature("cat", 7, group="item"),
        CategoricalFeature("pos", 3, group="context"),
    )
    seq = SequenceFeature("behaviour", table="item", target="item", max_len=5, num_locations=4)
    return Schema(
        categorical=cats,
        dense=("d0", "d1"),
        sequence=seq if sequence else None,
        tasks=tuple(tasks),
        user_field="user",
    )


def tiny_batch(schema: Schema, batch: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    cat = np.stack(
        [rng.integers(0, f.vocab_size, batch) for f in schema.categorical], axis=1
    ).astype(np.int32)
    out = {
        "cat": cat,
        "dense": rng.random((batch, schema.num_dense), dtype=np.float32),
        "labels": (rng.random((batch, schema.num_tasks)) < 0.3).astype(np.float32),
        "source": np.zeros(batch, np.int32),
        "user": cat[:, 0].copy(),
    }
    if schema.sequence is not None:
        L = schema.sequence.max_len
        items = rng.integers(1, 40, (batch, L)).astype(np.int32)
        lengths = rng.integers(0, L + 1, batch)
        items[np.arange(L)[None, :] >= lengths[:, None]] = 0
        out["seq_item"] = items
        out["seq_days"] = (rng.random((batch, L)) * 14).astype(np.float32) * (items > 0)
        out["seq_loc"] = rng.integers(1, 4, (batch, L)).astype(np.int32) * (items > 0)
    return out


def model_config(name: str = "mmoe", **overrides) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(
        dict(
            name=name,
            embed_dim=8,
            num_experts=3,
            expert_hidden=(16, 12),
            gate_hidden=(),
            tower_hidden=(6,),
            expert_activation="relu",
            tower_activation="dice",
            dropout=0.0,
        )
    )
    c.update(overrides)
    return c
