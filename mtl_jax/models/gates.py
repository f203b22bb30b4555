"""MMoE softmax gates: per task an MLP (the paper's gates have hidden layers), E logits, softmax."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from mtl_jax.models.layers import StackedLinear, StackedMLP


class SoftmaxGates(nnx.Module):
    """G gates over one input: ``[B, I] → [B, G, E]`` weights that sum to 1 over experts."""

    def __init__(
        self,
        num_gates: int,
        in_features: int,
        num_experts: int,
        hidden: Sequence[int] = (),
        *,
        rngs: nnx.Rngs,
    ):
        self.hidden = StackedMLP(num_gates, in_features, hidden, activation="relu", rngs=rngs)
        self.out = StackedLinear(num_gates, self.hidden.out_features, num_experts, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        h = self.hidden(x, train=train, keep_shared=True)  # [B, G, I'], or x when no hidden layers
        return jax.nn.softmax(self.out(h).astype("float32"), axis=-1)  # [B, G, E]
