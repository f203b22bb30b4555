"""Task towers: T MLPs (the paper uses Dice) followed by one logit each, run as one einsum."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from mtl_jax.models.layers import StackedHead, StackedMLP


class Towers(nnx.Module):
    """``[B, T, H] → [B, T]`` task logits."""

    def __init__(
        self,
        num_tasks: int,
        in_features: int,
        hidden: Sequence[int],
        *,
        activation: str = "dice",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        self.mlp = StackedMLP(
            num_tasks, in_features, hidden, activation=activation, dropout=dropout, rngs=rngs
        )
        self.head = StackedHead(num_tasks, self.mlp.out_features, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        return self.head(self.mlp(x, train=train, key=key)).astype("float32")
