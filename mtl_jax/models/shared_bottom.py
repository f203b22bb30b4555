"""Shared-Bottom (Caruana 1997): one MLP shared by all tasks, then a tower per task."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.embedding import InputLayer
from mtl_jax.models.layers import StackedMLP
from mtl_jax.models.registry import register
from mtl_jax.models.towers import Towers


@register("shared_bottom")
class SharedBottom(nnx.Module):
    def __init__(self, schema, cfg, *, rngs: nnx.Rngs):
        self.num_tasks = schema.num_tasks
        self.inputs = InputLayer(schema, cfg.embed_dim, rngs=rngs)
        self.bottom = StackedMLP(
            1,
            self.inputs.flat_dim,
            cfg.expert_hidden,
            activation=cfg.expert_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )
        self.towers = Towers(
            self.num_tasks,
            self.bottom.out_features,
            cfg.tower_hidden,
            activation=cfg.tower_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )

    def __call__(self, batch, *, train: bool, key: jax.Array | None = None):
        x = self.inputs(batch)["flat"]
        h = self.bottom(x, train=train, key=key)  # [B, 1, H]
        h = jnp.broadcast_to(h, (h.shape[0], self.num_tasks, h.shape[-1]))  # [B, T, H]
        return {"logits": self.towers(h, train=train, key=key)}
