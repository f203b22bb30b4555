"""DIN target attention over the behaviour sequence, with time and space embeddings (section 3.5).

The paper's MMoE_DIN pools the user's behaviour sequence with Deep Interest Network's attention
against the target item, after giving every behaviour a time embedding and a space (location)
embedding, and feeds the pooled interest vector to the bottom of the multi-task model.

Per behaviour item j (``seq`` [B, L, D] from ``InputLayer(use_sequence=True)``):

* time: ``t = days_j / time_scale``, the features ``[exp(−t), sin t, cos t, sqrt t, t², log(1+t)]``
  (the paper's "exponential, sine, cosine, root, square and logarithmic operations", Figure 7),
  concatenated and linearly projected to ``time_embedding_dim``;
* space: the location id (``seq_loc``) looked up in a small table of ``schema.sequence.
  num_locations`` rows and ``location_embedding_dim`` columns (Figure 6). The table is a plain
  ``nnx.Embed`` of this module, not part of ``inputs/tables``: it is tiny and every batch touches
  most of it, so the sparse row update of the big tables has nothing to gain from it;
* the key ``k_j = [item_j, time_j, space_j]`` (concatenated, width D' = D + time + location dims).

The query is the target item in the same space: ``q = [target, time(t = 0), space(id 0)]`` (the
candidate is shown now, at no recorded location; id 0 is the "unknown" location). DIN's activation
unit, an MLP over ``[q, k_j, q − k_j, q ⊙ k_j]`` (``din_hidden``, default 36 units, then 1), scores
every item, and the interest is ``Σ_j w_j k_j`` [B, D'].

Where the paper (or DIN) leaves a choice, and what this module does:

* Weights: DIN uses the raw scores without normalisation (to keep the intensity of interest).
  Here they are a softmax over the real items of the row: scores of padded items are replaced by
  the most negative number and the weights are multiplied by the mask, so padded items get exactly
  zero weight (and zero gradient), whatever their days or location, and a row without behaviours
  pools to the zero vector. Normalised weights keep the interest vector's scale independent of
  the history length, which the bottom MLPs of the experts handle better.
* Concatenation, not addition, of the time and space embeddings, so they can have their own widths.
* ``time_scale`` (days, default 7) scales t before the features: on raw days (up to 14 in the
  synthetic data, more in real logs) t² dwarfs every other input of the projection.
* Activation unit: ``din_activation`` in ``sigmoid`` (the default, as in DIN's released code),
  ``prelu`` (the DIN paper's), ``dice`` or ``relu``. With ``dice`` the training-time batch
  statistics are taken over all B·L items, padded ones included (padded items still get zero
  weight, but in training they shift the statistics the real items are normalised with).

Ali-CCP has no behaviour timestamps: its sequence-like fields carry a weight per id instead. The
Ali-CCP reader puts those weights into ``seq_days``, so there the weight takes the role of t in the
time features (set ``time_scale`` to the weights' typical magnitude).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.layers import Dice, PReLU, StackedLinear

DIN_ACTIVATIONS = ("sigmoid", "prelu", "dice", "relu")
NUM_TIME_FEATURES = 6


def time_features(t: jax.Array) -> jax.Array:
    """``[exp(−t), sin t, cos t, sqrt t, t², log(1+t)]`` of ``t`` ≥ 0: ``[...] → [..., 6]``."""
    return jnp.stack(
        [jnp.exp(-t), jnp.sin(t), jnp.cos(t), jnp.sqrt(t), jnp.square(t), jnp.log1p(t)], axis=-1
    )


class TimeEmbedding(nnx.Module):
    """Days since a behaviour → ``dim`` features: ``[B, L] → [B, L, dim]``."""

    def __init__(self, dim: int, *, time_scale: float = 7.0, rngs: nnx.Rngs):
        self.proj = StackedLinear(1, NUM_TIME_FEATURES, dim, rngs=rngs)
        self.time_scale = time_scale

    def __call__(self, days: jax.Array, dtype) -> jax.Array:
        t = jnp.maximum(days.astype(jnp.float32), 0.0) / self.time_scale
        feats = time_features(t).astype(dtype)  # [..., 6]
        return self.proj(feats.reshape(-1, 1, NUM_TIME_FEATURES)).reshape(*days.shape, -1)


class ActivationUnit(nnx.Module):
    """DIN's local activation unit: ``(q [B, D'], k [B, L, D']) → scores [B, L]``."""

    def __init__(
        self, width: int, hidden: Sequence[int], activation: str = "sigmoid", *, rngs: nnx.Rngs
    ):
        if activation not in DIN_ACTIVATIONS:
            raise ValueError(
                f"config.model.din_activation must be one of {DIN_ACTIVATIONS}, got {activation!r}"
            )
        dims = [4 * width, *hidden]
        self.layers = nnx.List(
            [StackedLinear(1, i, o, rngs=rngs) for i, o in zip(dims[:-1], dims[1:])]
        )
        acts = {"dice": Dice, "prelu": PReLU}
        self.acts = nnx.List(
            [acts[activation](1, o) if activation in acts else None for o in hidden]
        )
        # The score has no bias: the softmax over items is shift-invariant, so a bias would get a
        # zero gradient (in exact arithmetic) and Adam would amplify its rounding noise.
        self.head = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), (dims[-1], 1)))
        self.activation = activation

    def __call__(self, q: jax.Array, k: jax.Array, *, train: bool) -> jax.Array:
        B, L, W = k.shape
        q = jnp.broadcast_to(q[:, None], k.shape)  # [B, L, D']
        h = jnp.concatenate([q, k, q - k, q * k], axis=-1).reshape(B * L, 1, 4 * W)
        for layer, act in zip(self.layers, self.acts):
            h = layer(h)  # [B·L, 1, h]
            if act is not None:
                h = act(h, train=train)
            elif self.activation == "relu":
                h = jax.nn.relu(h)
            else:
                h = jax.nn.sigmoid(h)
        return (h[:, 0] @ self.head[...].astype(h.dtype)).reshape(B, L)  # [B, L]


class SequenceInterest(nnx.Module):
    """Pools the behaviour sequence against the target item: the user's interest vector.

    Args:
      item_dim: D, the item embedding width.
      num_locations: rows of the location table (``schema.sequence.num_locations``).
      time_dim: ``config.model.time_embedding_dim``.
      location_dim: ``config.model.location_embedding_dim``.
      hidden: ``config.model.din_hidden``, the activation unit's widths.
      activation: ``config.model.din_activation``.
      time_scale: ``config.model.time_scale``, days per unit of t.
      rngs: parameter RNG.

    Call with the ``InputLayer(use_sequence=True)`` outputs; returns ``(interest [B, D'],
    weights [B, L])`` with D' = ``out_features``.
    """

    def __init__(
        self,
        item_dim: int,
        num_locations: int,
        *,
        time_dim: int,
        location_dim: int,
        hidden: Sequence[int] = (36,),
        activation: str = "sigmoid",
        time_scale: float = 7.0,
        rngs: nnx.Rngs,
    ):
        self.time = TimeEmbedding(time_dim, time_scale=time_scale, rngs=rngs)
        self.locations = nnx.Embed(
            num_locations,
            location_dim,
            embedding_init=jax.nn.initializers.truncated_normal(0.02),
            rngs=rngs,
        )
        self.out_features = item_dim + time_dim + location_dim
        self.unit = ActivationUnit(self.out_features, hidden, activation, rngs=rngs)

    def __call__(self, inputs: dict, *, train: bool) -> tuple[jax.Array, jax.Array]:
        seq, mask, target = (
            inputs["seq"],
            inputs["seq_mask"],
            inputs["target"],
        )  # [B,L,D] [B,L] [B,D]
        dt = seq.dtype
        B = seq.shape[0]
        # Padded items: days 0 and location 0, so their (masked) features stay finite.
        days = jnp.where(mask, inputs["seq_days"], 0.0)  # [B, L]
        loc = jnp.where(mask, inputs["seq_loc"], 0)  # [B, L]
        table = self.locations.embedding[...].astype(dt)  # [num_locations, location_dim]
        keys = jnp.concatenate(
            [seq, self.time(days, dt), jnp.take(table, loc, axis=0)], axis=-1
        )  # [B, L, D']
        now = self.time(jnp.zeros((B,), jnp.float32), dt)  # [B, time_dim]
        query = jnp.concatenate(
            [target, now, jnp.broadcast_to(table[0], (B, table.shape[1]))], axis=-1
        )  # [B, D']
        scores = self.unit(query, keys, train=train).astype(jnp.float32)  # [B, L]
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1) * mask  # [B, L]; exactly 0 on padding
        interest = jnp.einsum("bl,bld->bd", weights.astype(dt), keys)  # [B, D']
        return interest, weights
