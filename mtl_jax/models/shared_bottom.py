"""Shared-Bottom (Caruana 1997): one MLP shared by all tasks, then a tower per task."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.assembly import Assembly
from mtl_jax.models.layers import StackedMLP
from mtl_jax.models.options import ModelOptions
from mtl_jax.models.registry import register


@register("shared_bottom")
class SharedBottom(Assembly):
    def build_bottom(self, schema, opts: ModelOptions, in_features: int, *, rngs: nnx.Rngs) -> int:
        self.num_tasks = schema.num_tasks
        self.bottom = StackedMLP(
            1,
            in_features,
            opts.expert_hidden,
            activation=opts.expert_activation,
            dropout=opts.dropout,
            rngs=rngs,
        )
        return self.bottom.out_features

    def run_bottom(self, batch, inputs, out, *, train, key):
        h = self.bottom(inputs["flat"], train=train, key=key)  # [B, 1, H]
        return jnp.broadcast_to(h, (h.shape[0], self.num_tasks, h.shape[-1]))  # [B, T, H]
