"""A bank of E experts evaluated as one einsum per layer (no Python loop over experts)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from mtl_jax.models.layers import StackedMLP


def check_expert_shape(num_experts: int, hidden: Sequence[int]) -> None:
    """The checks every expert bank (plain or boosting) makes, naming the config keys."""
    if num_experts < 1:
        raise ValueError(f"config.model.num_experts must be >= 1, got {num_experts}")
    if not hidden:
        raise ValueError("config.model.expert_hidden must name at least one layer width")


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
        check_expert_shape(num_experts, hidden)
        self.mlp = StackedMLP(
            num_experts, in_features, hidden, activation=activation, dropout=dropout, rngs=rngs
        )
        self.num_experts = num_experts
        self.out_features = hidden[-1]

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        return self.mlp(x, train=train, key=key)  # [B, E, H]
