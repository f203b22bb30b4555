"""Attention gates of the paper's sections 3.1 (coarse-grained) and 3.2 (fine-grained).

MMoE's gate is ``softmax(W x)``: the weights come from the input alone. The paper replaces it by an
attention in which each task holds a learned query that is compared with the experts' outputs, so
the weight of an expert depends on what the expert says about this example.

Coarse-grained (3.1, eqs. 6-9). Per task t a learned gate vector ``e_g`` goes through the gate
network ``y_g = σ(W_g e_g + b_g)`` (eq. 7; "one layer with shape [1, 128]", H = 128) to a query
``q_t`` [H]. The attention logit of expert e is ``⟨q_t, expert_e(x)⟩`` (steps 3-4: element-wise
product, reduce-sum over H), the weights are a softmax over the E experts (step 5) and the task's
tower reads ``Σ_e w_e · expert_e`` [H] (step 6).

Fine-grained (3.2). The query differs per expert *and* per hidden unit: ``q_t`` is [E, H]. The
weights are a softmax over the experts of ``q_t[e, h] · expert_e(x)[h]`` separately for every
hidden unit h, so each unit of the mixed vector chooses its own expert mixture.

Where the paper is ambiguous, and what this module does:

* ``e_g`` is a free parameter per task (the paper calls it "the query vector for the initialize gate
  network" and gives no input to it), of width H, initialised N(0, 1). The gate is therefore input
  independent; the mixture depends on the example only through the experts' outputs.
* ``σ`` ("the mapping operator") is the logistic sigmoid. ``gate_hidden`` widths (ReLU) may come
  between ``e_g`` and ``W_g``; with none the gate is the paper's single layer.
* Coarse logits are scaled by ``1/sqrt(H)``, as in scaled dot-product attention: the paper states
  no scale, but without it the logits of a 128-wide expert grow with H and the softmax saturates at
  initialisation. Fine logits are one product per unit (no sum over H) and are not scaled.
* Fine-grained ``gates`` (the [B, T, E] diagnostic every gated model returns) is the mean over H of
  the per-unit weights; it still sums to 1 over experts. The full weights are ``fine_gates``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.layers import StackedLinear, StackedMLP


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

    Returns ``(mixed [B, T, H], gates [B, T, E])``; the gates sum to 1 over experts.
    """

    def __init__(
        self,
        num_tasks: int,
        num_experts: int,
        width: int,
        hidden: Sequence[int] = (),
        *,
        rngs: nnx.Rngs,
    ):
        self.queries = GateQueries(num_tasks, width, hidden, rngs=rngs)
        self.num_experts = num_experts
        self.width = width

    def __call__(self, experts: jax.Array) -> tuple[jax.Array, jax.Array]:
        q = self.queries(experts.dtype)  # [T, H]
        logits = jnp.einsum("beh,th->bte", experts, q).astype(jnp.float32)  # [B, T, E]
        gates = jax.nn.softmax(logits * (self.width**-0.5), axis=-1)  # [B, T, E]
        mixed = jnp.einsum("bte,beh->bth", gates.astype(experts.dtype), experts)  # [B, T, H]
        return mixed, gates


class FineAttentionGates(nnx.Module):
    """One query [E, H] per task; one weight per expert and hidden unit: ``[B, E, H] → [B, T, H]``.

    Returns ``(mixed [B, T, H], gates [B, T, E], fine_gates [B, T, E, H])``; ``fine_gates`` sums
    to 1 over experts for every unit, and ``gates`` is its mean over H.
    """

    def __init__(
        self,
        num_tasks: int,
        num_experts: int,
        width: int,
        hidden: Sequence[int] = (),
        *,
        rngs: nnx.Rngs,
    ):
        # T·E independent query networks, stacked (task-major) so that one einsum runs them all.
        self.queries = GateQueries(num_tasks * num_experts, width, hidden, rngs=rngs)
        self.num_tasks = num_tasks
        self.num_experts = num_experts

    def __call__(self, experts: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        T, E = self.num_tasks, self.num_experts
        q = self.queries(experts.dtype).reshape(T, E, -1)  # [T, E, H]
        logits = (experts[:, None] * q[None]).astype(jnp.float32)  # [B, T, E, H]
        fine = jax.nn.softmax(logits, axis=2)  # [B, T, E, H], sums to 1 over E
        mixed = jnp.einsum("bteh,beh->bth", fine.astype(experts.dtype), experts)  # [B, T, H]
        return mixed, fine.mean(axis=-1), fine
