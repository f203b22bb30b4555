"""A bank of E experts evaluated as one einsum per layer (no Python loop over experts)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from mtl_jax.models.layers import StackedMLP


class ExpertBank(nnx.Module):
    """E MLP experts over one shared input: ``[B, I] → [B, E, H]``."""

    def __init__(
        self,
        num_experts: int,
        in_features: int,
        hidden: Sequence[int],
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        self.mlp = StackedMLP(
            num_experts, in_features, hidden, activation=activation, dropout=dropout, rngs=rngs
        )
        self.num_experts = num_experts
        self.out_features = hidden[-1]

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        return self.mlp(x, train=train, key=key)  # [B, E, H]
