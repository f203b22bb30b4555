"""Attention gates of the paper's sections 3.1 (coarse-grained) and 3.2 (fine-grained).

MMoE's gate is ``softmax(W x)``: the weights come from the input alone. The paper replaces it by an
attention in which each task holds a learned query that is compared with the experts' outputs, so
the weight of an expert depends on what the expert says about this example.

Coarse-grained (3.1, eqs. 6-9). Per task t a learned gate vector ``e_g`` goes through the gate
network ``y_g = σ(W_g e_g + b_g)`` (eq. 7; "one layer with shape [1, 128]", H = 128) to a query
``q_t`` [H]. The attention score of expert e is ``a_e = ⟨q_t, expert_e(x)⟩`` (steps 3-4:
element-wise product, reduce-sum over H), turned into weights ``w_e`` (``norm``, below) and the
task's tower reads ``Σ_e w_e · expert_e`` [H] (steps 5-6).

Fine-grained (3.2). The query differs per expert *and* per hidden unit: ``q_t`` is [E, H]. The
score of expert e at hidden unit h is ``a_eh = q_t[e, h] · expert_e(x)[h]`` (no sum over H), turned
into weights ``w_eh`` separately for every unit, so each unit of the mixed vector chooses its own
expert mixture: ``mixed[h] = Σ_e w_eh · expert_e[h]``.

Normalisation of the scores (``config.model.attention_gate_norm``, ``norm`` here). The paper's
steps say: "we get attention dot tensor with the shape of [N, 8]" (3.1.2 step 4), "by expanding
and copying the attention dot tensor, we calculate the expert weights with the shape of
[N, 128, 8]" (step 5), "we add weights for the experts and calculate the final output of
[N, 128]" (step 6), and 3.1 "regard the result of inner product as the attention weight of the
task's corresponding expert". No softmax and no scale are stated. The options:

* ``softmax_scaled`` (the default of ``configs/fine_attention.py`` and ``configs/paper_full.py``):
  ``w = softmax_e(a / sqrt(H))`` for the coarse gate, as in scaled dot-product attention: without
  the scale the logits of a 128-wide expert grow with H and the softmax saturates at
  initialisation. The fine gate's scores are one product each (no sum
  over H), so its scale is 1: ``w = softmax_e(a)`` per unit.
* ``softmax``: ``w = softmax_e(a)`` (no scale); the same as ``softmax_scaled`` for the fine gate.
* ``none`` (the default of ``configs/coarse_attention.py``, chosen by measurement: README): the
  literal steps, ``w = a``: the raw inner products weigh the experts. No normalisation, so the mix
  is not convex and its scale grows with the experts' activations (quadratically: ``mixed = Σ_e
  ⟨q, x_e⟩ x_e``); the scores are ≥ 0 when the experts end in ReLU (the default
  ``expert_activation``), since the sigmoid query is positive.

``gates`` [B, T, E] (the diagnostic every gated model returns, which the gate statistics read as
a distribution over experts) is ``w`` under the softmax norms; under ``none`` it is each expert's
share ``|a_e| / Σ_e' |a_e'|`` of the raw weights (uniform where they are all 0), and so is
``fine_gates`` per unit.

Where the paper is ambiguous, and what this module does:

* ``e_g`` is a free parameter per task (the paper calls it "the query vector for the initialize gate
  network" and gives no input to it), of width H, initialised N(0, 1). The gate is therefore input
  independent; the mixture depends on the example only through the experts' outputs.
* ``σ`` ("the mapping operator") is the logistic sigmoid. ``config.model.attention_gate_hidden``
  widths (ReLU) may come between ``e_g`` and ``W_g``; with none (the default) the gate is the
  paper's single layer. (``config.model.gate_hidden`` sizes MMoE's softmax gates, not these.)
* The score normalisation: see above (``attention_gate_norm``).
* Fine-grained ``gates`` is the mean over H of the per-unit weights (shares under ``none``); it
  sums to 1 over experts. The full per-unit weights are ``fine_gates``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.layers import StackedLinear, StackedMLP

GATE_NORMS = ("softmax_scaled", "softmax", "none")


def _shares(a: jax.Array, axis: int) -> jax.Array:
    """``|a| / Σ|a|`` along ``axis`` (uniform where every entry is 0): a distribution over the
    experts for the gate diagnostics when the raw scores weigh them (``norm="none"``)."""
    mag = jnp.abs(a)
    total = mag.sum(axis=axis, keepdims=True)
    uniform = jnp.full_like(mag, 1.0 / a.shape[axis])
    return jnp.where(total > 0, mag / jnp.where(total > 0, total, 1.0), uniform)


class GateQueries(nnx.Module):
    """S learned queries ``σ(W_g · MLP(e_g) + b_g)``, [S, H] (eq. 7), one per stack.

    Args:
      num_queries: S (tasks for the coarse gate, tasks × experts for the fine gate).
      width: H, the experts' output width (and the width of ``e_g``).
      hidden: widths of optional ReLU layers between ``e_g`` and ``W_g``.
      rngs: parameter RNG.
    """

    def __init__(self, num_queries: int, width: int, hidden: Sequence[int] = (), *, rngs: nnx.Rngs):
        self.init_query = nnx.Param(jax.random.normal(rngs.params(), (num_queries, width)))  # e_g
        self.hidden = StackedMLP(num_queries, width, hidden, activation="relu", rngs=rngs)
        self.out = StackedLinear(num_queries, self.hidden.out_features, width, rngs=rngs)

    def __call__(self, dtype) -> jax.Array:
        e = self.init_query[...].astype(dtype)[None]  # [1, S, H]
        h = self.hidden(e, train=False)  # [1, S, H'] (ReLU layers only: no train-time state)
        return jax.nn.sigmoid(self.out(h))[0]  # [S, H]


class CoarseAttentionGates(nnx.Module):
    """One query [H] per task; one weight per expert: ``[B, E, H] → [B, T, H]``.

    Args:
      num_tasks: T.
      num_experts: E.
      width: H, the experts' output width.
      hidden: ``config.model.attention_gate_hidden``, layers between ``e_g`` and ``W_g``.
      norm: ``config.model.attention_gate_norm`` (module docstring).
      rngs: parameter RNG.

    Returns ``(mixed [B, T, H], gates [B, T, E])``; the gates sum to 1 over experts (the weights,
    or under ``norm="none"`` each expert's share of them).
    """

    def __init__(
        self,
        num_tasks: int,
        num_experts: int,
        width: int,
        hidden: Sequence[int] = (),
        *,
        norm: str = "softmax_scaled",
        rngs: nnx.Rngs,
    ):
        self.queries = GateQueries(num_tasks, width, hidden, rngs=rngs)
        self.num_experts = num_experts
        self.width = width
        self.norm = norm

    def __call__(self, experts: jax.Array) -> tuple[jax.Array, jax.Array]:
        q = self.queries(experts.dtype)  # [T, H]
        scores = jnp.einsum("beh,th->bte", experts, q).astype(jnp.float32)  # [B, T, E]
        if self.norm == "none":
            weights, gates = scores, _shares(scores, axis=-1)
        else:
            scale = self.width**-0.5 if self.norm == "softmax_scaled" else 1.0
            weights = gates = jax.nn.softmax(scores * scale, axis=-1)  # [B, T, E]
        mixed = jnp.einsum("bte,beh->bth", weights.astype(experts.dtype), experts)  # [B, T, H]
        return mixed, gates


class FineAttentionGates(nnx.Module):
    """One query [E, H] per task; one weight per expert and hidden unit: ``[B, E, H] → [B, T, H]``.

    Args as ``CoarseAttentionGates``.

    Returns ``(mixed [B, T, H], gates [B, T, E], fine_gates [B, T, E, H])``; ``fine_gates`` sums
    to 1 over experts for every unit (the weights, or under ``norm="none"`` each expert's share
    of them), and ``gates`` is its mean over H.
    """

    def __init__(
        self,
        num_tasks: int,
        num_experts: int,
        width: int,
        hidden: Sequence[int] = (),
        *,
        norm: str = "softmax_scaled",
        rngs: nnx.Rngs,
    ):
        # T·E independent query networks, stacked (task-major) so that one einsum runs them all.
        self.queries = GateQueries(num_tasks * num_experts, width, hidden, rngs=rngs)
        self.num_tasks = num_tasks
        self.num_experts = num_experts
        self.norm = norm

    def __call__(self, experts: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        T, E = self.num_tasks, self.num_experts
        q = self.queries(experts.dtype).reshape(T, E, -1)  # [T, E, H]
        scores = (experts[:, None] * q[None]).astype(jnp.float32)  # [B, T, E, H]
        if self.norm == "none":
            weights, fine = scores, _shares(scores, axis=2)
        else:  # one product per score: the scale 1/sqrt(1) of "softmax_scaled" is 1
            weights = fine = jax.nn.softmax(scores, axis=2)  # [B, T, E, H], sums to 1 over E
        mixed = jnp.einsum("bteh,beh->bth", weights.astype(experts.dtype), experts)  # [B, T, H]
        return mixed, fine.mean(axis=-1), fine
