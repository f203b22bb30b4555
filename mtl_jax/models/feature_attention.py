"""Feature-level multi-head self-attention before the experts (the paper's section 3.4, last part).

The paper also tried AutoInt's interacting layer on the field embeddings instead of on the experts
("feature-level multi-head self-attention is introduced to feature engineering, and then input to
the expert network") and found it worse than the expert-level layer; it is kept as an option.

One AutoInt interacting layer over the F field embeddings [B, F, D]: multi-head key-value
self-attention (d_head = D / heads, so each field stays D wide), plus AutoInt's projected residual
and a ReLU, ``relu(MHSA(e) + e W_res)``. The result is flattened to [B, F·D]; the caller joins the
dense features to it, so the expert input has the same width as without the layer.

Choices (the paper gives no detail): one layer; head width D / heads; AutoInt's residual
projection ``W_res`` (D × D). The layer needs every field to have the same embedding width (the
fields are tokens of one attention); a schema with per-field widths is a configuration error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.expert_attention import MultiHeadSelfAttention

_residual_init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


class FeatureAttentionLayer(nnx.Module):
    """AutoInt interacting layer: ``[B, F, D] → [B, F, D]``.

    Args:
      embed_dim: D, the width of every field embedding; must be divisible by ``num_heads``.
      num_heads: attention heads (``config.model.attention_heads``).
      rngs: parameter RNG.

    Returns ``(fields [B, F, D], attention [B, N, F, F])``.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, rngs: nnx.Rngs):
        self.attention = MultiHeadSelfAttention(
            embed_dim, num_heads, embed_dim // num_heads, rngs=rngs
        )
        self.residual = nnx.Param(_residual_init(rngs.params(), (embed_dim, embed_dim)))  # W_res

    def __call__(self, fields: jax.Array) -> tuple[jax.Array, jax.Array]:
        attended, attention = self.attention(fields)  # [B, F, D], [B, N, F, F]
        res = jnp.einsum(
            "bfd,de->bfe", fields, self.residual[...].astype(fields.dtype)
        )  # [B, F, D]
        return jax.nn.relu(attended + res), attention  # [B, F, D]
