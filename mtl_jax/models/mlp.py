"""MLP single-task baseline: one independent MLP + tower per task (no sharing above the embeddings).

The embedding tables are shared by the tasks (one input layer); everything above them is
per-task, so the only coupling between the tasks is through the embeddings' gradients.
"""

from __future__ import annotations

import jax
from flax import nnx

from mtl_jax.models.embedding import InputLayer
from mtl_jax.models.layers import StackedMLP
from mtl_jax.models.registry import register
from mtl_jax.models.towers import Towers


@register("mlp")
class MLP(nnx.Module):
    def __init__(self, schema, cfg, *, rngs: nnx.Rngs):
        T = schema.num_tasks
        self.inputs = InputLayer(schema, cfg.embed_dim, rngs=rngs)
        self.bottoms = StackedMLP(
            T,
            self.inputs.flat_dim,
            cfg.expert_hidden,
            activation=cfg.expert_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )
        self.towers = Towers(
            T,
            self.bottoms.out_features,
            cfg.tower_hidden,
            activation=cfg.tower_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )

    def __call__(self, batch, *, train: bool, key: jax.Array | None = None):
        x = self.inputs(batch)["flat"]  # [B, I]
        bottom_key = None if key is None else jax.random.fold_in(key, 0)
        tower_key = None if key is None else jax.random.fold_in(key, 1)
        h = self.bottoms(x, train=train, key=bottom_key)  # [B, T, H]
        return {"logits": self.towers(h, train=train, key=tower_key)}  # [B, T]
