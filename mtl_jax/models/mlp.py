"""MLP single-task baseline: one independent MLP + tower per task (no sharing above the embeddings).

The embedding tables are shared by the tasks (one input layer); everything above them is
per-task, so the only coupling between the tasks is through the embeddings' gradients.
"""

from __future__ import annotations

from flax import nnx

from mtl_jax.models.assembly import Assembly, fold
from mtl_jax.models.layers import StackedMLP
from mtl_jax.models.options import ModelOptions
from mtl_jax.models.registry import register


@register("mlp")
class MLP(Assembly):
    def build_bottom(self, schema, opts: ModelOptions, in_features: int, *, rngs: nnx.Rngs) -> int:
        self.bottoms = StackedMLP(
            schema.num_tasks,
            in_features,
            opts.expert_hidden,
            activation=opts.expert_activation,
            dropout=opts.dropout,
            rngs=rngs,
        )
        return self.bottoms.out_features

    def run_bottom(self, batch, inputs, out, *, train, key):
        return self.bottoms(inputs["flat"], train=train, key=fold(key, 0))  # [B, T, H]

    def tower_key(self, key):
        return fold(key, 1)
