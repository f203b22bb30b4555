"""Multi-head self-attention, and the paper's "auto interact layer" over the experts (section 3.4).

``MultiHeadSelfAttention`` is AutoInt's key-value attention (eqs. 10-11) over S tokens: per head h

    α^(h)_{m,k} = softmax_k ⟨W_q^(h) e_m, W_k^(h) e_k⟩ / sqrt(d_head),
    ẽ^(h)_m     = Σ_k α^(h)_{m,k} W_v^(h) e_k,

with the heads concatenated. ``ExpertAttentionLayer`` treats the E expert outputs [B, E, H] as
tokens (d_head = H / heads, so the result is again [B, E, H]) and combines the interaction result
with the original experts, which are then gated per task as in MMoE.

Where the paper is ambiguous, and what this module does:

* Eq. 10 has no scale; logits are scaled by ``1/sqrt(d_head)`` as in scaled dot-product attention,
  so the softmax does not saturate at initialisation for wide experts.
* "We employ an inner product operation between expert output and the high-order feature":
  ``interaction_combine='product'`` (the default) is the element-wise product ``e ⊙ ẽ`` per
  expert (the tower input keeps the shape [H]); ``'residual'`` is ``e + ẽ`` (AutoInt's residual
  form, an option: the product can shrink or flip signals early in training).
* The paper's attention has no output projection (the heads are concatenated), and neither does
  this one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

COMBINES = ("product", "residual")

# Fan-in init over the input axis of a [W, N, K] projection.
_proj_init = jax.nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=0, out_axis=(1, 2)
)


class MultiHeadSelfAttention(nnx.Module):
    """Key-value self-attention over tokens: ``[B, S, W] → [B, S, N·K]``.

    Args:
      in_features: token width W.
      num_heads: N.
      head_dim: K, the width of each head's query, key and value.
      rngs: parameter RNG.

    Returns ``(out [B, S, N·K], attention [B, N, S, S])``; attention rows sum to 1.
    """

    def __init__(self, in_features: int, num_heads: int, head_dim: int, *, rngs: nnx.Rngs):
        shape = (in_features, num_heads, head_dim)
        self.w_query = nnx.Param(_proj_init(rngs.params(), shape))
        self.w_key = nnx.Param(_proj_init(rngs.params(), shape))
        self.w_value = nnx.Param(_proj_init(rngs.params(), shape))
        self.head_dim = head_dim

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        dt = x.dtype
        q = jnp.einsum("bsw,wnk->bsnk", x, self.w_query[...].astype(dt))  # [B, S, N, K]
        k = jnp.einsum("bsw,wnk->bsnk", x, self.w_key[...].astype(dt))  # [B, S, N, K]
        v = jnp.einsum("bsw,wnk->bsnk", x, self.w_value[...].astype(dt))  # [B, S, N, K]
        logits = jnp.einsum("bsnk,btnk->bnst", q, k).astype(jnp.float32)  # [B, N, S, S]
        attention = jax.nn.softmax(logits * (self.head_dim**-0.5), axis=-1)  # [B, N, S, S]
        out = jnp.einsum("bnst,btnk->bsnk", attention.astype(dt), v)  # [B, S, N, K]
        return out.reshape(*out.shape[:2], -1), attention  # [B, S, N·K]


class ExpertAttentionLayer(nnx.Module):
    """The auto interact layer: ``[B, E, H] → [B, E, H]``.

    Args:
      width: H, the experts' output width; must be divisible by ``num_heads``.
      num_heads: attention heads (``config.model.attention_heads``).
      combine: ``product`` (paper) or ``residual``.
      rngs: parameter RNG.

    Returns ``(experts [B, E, H], attention [B, N, E, E])``.
    """

    def __init__(self, width: int, num_heads: int, combine: str = "product", *, rngs: nnx.Rngs):
        self.attention = MultiHeadSelfAttention(width, num_heads, width // num_heads, rngs=rngs)
        self.combine = combine

    def __call__(self, experts: jax.Array) -> tuple[jax.Array, jax.Array]:
        interacted, attention = self.attention(experts)  # [B, E, H], [B, N, E, E]
        if self.combine == "product":
            return experts * interacted, attention
        return experts + interacted, attention
