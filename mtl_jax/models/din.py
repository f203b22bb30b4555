"""DIN target attention over the behaviour sequence, with time and space embeddings (section 3.5).

The paper's MMoE_DIN pools the user's behaviour sequence with Deep Interest Network's attention
against the target item, after giving every behaviour a time embedding and a space (location)
embedding, and feeds the pooled interest vector to the bottom of the multi-task model.

Per behaviour item j (``seq`` [B, L, D] from ``InputLayer(use_sequence=True)``):

* time: ``t = days_j / time_scale``, six features of t (``time_features``, below: the paper's
  "exponential, sine, cosine, root, square and logarithmic operations", Figure 7), concatenated
  and linearly projected to ``time_embedding_dim``;
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

* Weights (``config.model.din_weight_norm``). DIN's paper (Zhou et al., KDD 2018, section 4.3):
  "the constraint of Σ_i w_i = 1 is relaxed in Eq. (3), aiming to reserve the intensity of user
  interests. That is, normalization with softmax on the output of a(·) is abandoned"; its
  released code (``din/model.py``, ``attention``) nevertheless divides the scores by sqrt(D')
  and takes a softmax. ``softmax`` (the default): a softmax over the real items of the row,
  unscaled; normalised weights keep the interest vector's scale independent of the history
  length, which the bottom MLPs of the experts handle better. The score has no bias (the
  softmax is shift-invariant: a bias would get a zero gradient and Adam would amplify its
  rounding noise). ``none``: DIN's paper, ``w_j = a(q, k_j)``, the raw output of the activation
  unit, whose last layer then has a bias (it is no longer shift-invariant). Either way padded
  items get exactly zero weight (and zero gradient), whatever their days or location, and a row
  without behaviours pools to the zero vector.
* Concatenation, not addition, of the time and space embeddings, so they can have their own widths.
* Time features (``config.model.time_features``). The paper (3.5): "We normalize the timestamp
  as days, and make some mathematic operations. The mathematic operations include exponential
  function operation, sine function operation, cosine function operation, root operation,
  square operation, and logarithmic operation." With t the gap in units of ``time_scale`` days:

  - ``stabilised`` (the default): ``[exp(−t), sin t, cos t, sqrt t, t², log(1 + t)]``. exp(−t)
    is a recency decay in (0, 1] and log(1 + t) is 0 at t = 0, both bounded where t is small;
  - ``literal``: ``[exp(t), sin t, cos t, sqrt t, t², log t]``, made finite in the least
    changing way: ``exp(min(t, 30))`` (exact up to t = 30; exp(30) ≈ 1.1e13, whose square, as in
    a batch variance downstream, stays inside float32, where exp(89) alone would overflow) and
    ``log(max(t, ε))`` with ε one minute in units of t (``1 / (1440 · time_scale)``): log 0 is
    −∞, and the query (the candidate, shown now) has t = 0, as may a same-day behaviour. The
    paper's unit is days: ``time_scale=1`` with ``literal`` is the paper's reading; with the
    default 7 the same functions see weeks.
* ``time_scale`` (days, default 7) scales t before the features: on raw days (up to 14 in the
  synthetic data, more in real logs) t² (and under ``literal`` exp(t)) dwarfs every other input
  of the projection.
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
WEIGHT_NORMS = ("softmax", "none")
TIME_FEATURES = ("stabilised", "literal")
NUM_TIME_FEATURES = 6
# The literal features' finite reading (module docstring): exp's argument is capped here, and
# log's floors at one minute.
LITERAL_EXP_CAP = 30.0
LITERAL_MIN_GAP_DAYS = 1.0 / 1440.0


def time_features(t: jax.Array, kind: str = "stabilised", *, log_floor: float = 0.0) -> jax.Array:
    """Six features of ``t`` ≥ 0: ``[...] → [..., 6]``.

    ``stabilised``: ``[exp(−t), sin t, cos t, sqrt t, t², log(1+t)]``; ``literal``:
    ``[exp(min(t, LITERAL_EXP_CAP)), sin t, cos t, sqrt t, t², log(max(t, log_floor))]``
    (``log_floor`` > 0 is then required: log 0 is −∞).
    """
    if kind == "stabilised":
        exp, log = jnp.exp(-t), jnp.log1p(t)
    else:
        if not log_floor > 0:
            raise ValueError(f"time_features('literal') needs log_floor > 0, got {log_floor}")
        exp, log = jnp.exp(jnp.minimum(t, LITERAL_EXP_CAP)), jnp.log(jnp.maximum(t, log_floor))
    return jnp.stack([exp, jnp.sin(t), jnp.cos(t), jnp.sqrt(t), jnp.square(t), log], axis=-1)


class TimeEmbedding(nnx.Module):
    """Days since a behaviour → ``dim`` features: ``[B, L] → [B, L, dim]``.

    ``kind``: ``config.model.time_features`` (``stabilised`` or ``literal``; module docstring).
    """

    def __init__(
        self, dim: int, *, time_scale: float = 7.0, kind: str = "stabilised", rngs: nnx.Rngs
    ):
        self.proj = StackedLinear(1, NUM_TIME_FEATURES, dim, rngs=rngs)
        self.time_scale = time_scale
        self.kind = kind

    def __call__(self, days: jax.Array, dtype) -> jax.Array:
        t = jnp.maximum(days.astype(jnp.float32), 0.0) / self.time_scale
        floor = LITERAL_MIN_GAP_DAYS / self.time_scale
        feats = time_features(t, self.kind, log_floor=floor).astype(dtype)  # [..., 6]
        return self.proj(feats.reshape(-1, 1, NUM_TIME_FEATURES)).reshape(*days.shape, -1)


class ActivationUnit(nnx.Module):
    """DIN's local activation unit: ``(q [B, D'], k [B, L, D']) → scores [B, L]``.

    ``bias``: whether the score has a bias (not under a softmax over items: module docstring).
    """

    def __init__(
        self,
        width: int,
        hidden: Sequence[int],
        activation: str = "sigmoid",
        *,
        bias: bool = False,
        rngs: nnx.Rngs,
    ):
        dims = [4 * width, *hidden]
        self.layers = nnx.List(
            [StackedLinear(1, i, o, rngs=rngs) for i, o in zip(dims[:-1], dims[1:])]
        )
        acts = {"dice": Dice, "prelu": PReLU}
        self.acts = nnx.List(
            [acts[activation](1, o) if activation in acts else None for o in hidden]
        )
        # Under a softmax over items the score has no bias: the softmax is shift-invariant, so a
        # bias would get a zero gradient (in exact arithmetic) and Adam would amplify its rounding
        # noise. Raw scores (DIN's paper) are not shift-invariant and get one.
        self.head = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), (dims[-1], 1)))
        self.head_bias = nnx.Param(jnp.zeros((1,))) if bias else None
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
        scores = h[:, 0] @ self.head[...].astype(h.dtype)  # [B·L, 1]
        if self.head_bias is not None:
            scores = scores + self.head_bias[...].astype(h.dtype)
        return scores.reshape(B, L)  # [B, L]


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
      weight_norm: ``config.model.din_weight_norm``: ``softmax`` or ``none`` (raw scores).
      time_kind: ``config.model.time_features``: ``stabilised`` or ``literal``.
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
        weight_norm: str = "softmax",
        time_kind: str = "stabilised",
        rngs: nnx.Rngs,
    ):
        self.weight_norm = weight_norm
        self.time = TimeEmbedding(time_dim, time_scale=time_scale, kind=time_kind, rngs=rngs)
        self.locations = nnx.Embed(
            num_locations,
            location_dim,
            embedding_init=jax.nn.initializers.truncated_normal(0.02),
            rngs=rngs,
        )
        self.out_features = item_dim + time_dim + location_dim
        self.unit = ActivationUnit(
            self.out_features, hidden, activation, bias=weight_norm == "none", rngs=rngs
        )

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
        if self.weight_norm == "none":
            weights = jnp.where(mask, scores, 0.0)  # [B, L]; exactly 0 on padding
        else:
            scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
            weights = jax.nn.softmax(scores, axis=-1) * mask  # [B, L]; exactly 0 on padding
        interest = jnp.einsum("bl,bld->bd", weights.astype(dt), keys)  # [B, D']
        return interest, weights
