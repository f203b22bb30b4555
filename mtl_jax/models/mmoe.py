"""MMoE (Ma et al., KDD 2018) and OMoE: E shared experts mixed per task by softmax gates.

MMoE has one gate per task; OMoE one gate shared by all tasks. Gates take the same input as the
experts and may have hidden layers (``gate_hidden``), as in the paper's section 2.1.2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.embedding import InputLayer
from mtl_jax.models.experts import ExpertBank
from mtl_jax.models.gates import SoftmaxGates
from mtl_jax.models.registry import register
from mtl_jax.models.towers import Towers


class _MixtureOfExperts(nnx.Module):
    one_gate: bool = False

    def __init__(self, schema, cfg, *, rngs: nnx.Rngs):
        T = schema.num_tasks
        self.num_tasks = T
        self.inputs = InputLayer(schema, cfg.embed_dim, rngs=rngs)
        in_dim = self.inputs.flat_dim
        self.experts = ExpertBank(
            cfg.num_experts,
            in_dim,
            cfg.expert_hidden,
            activation=cfg.expert_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )
        self.gates = SoftmaxGates(
            1 if self.one_gate else T, in_dim, cfg.num_experts, cfg.gate_hidden, rngs=rngs
        )
        self.towers = Towers(
            T,
            self.experts.out_features,
            cfg.tower_hidden,
            activation=cfg.tower_activation,
            dropout=cfg.dropout,
            rngs=rngs,
        )

    def __call__(self, batch, *, train: bool, key: jax.Array | None = None):
        x = self.inputs(batch)["flat"]  # [B, I]
        experts = self.experts(x, train=train, key=key)  # [B, E, H]
        gates = self.gates(x, train=train)  # [B, G, E]
        gates = jnp.broadcast_to(gates, (x.shape[0], self.num_tasks, gates.shape[-1]))
        mixed = jnp.einsum("bte,beh->bth", gates.astype(experts.dtype), experts)  # [B, T, H]
        logits = self.towers(mixed, train=train, key=key)  # [B, T]
        return {"logits": logits, "gates": gates}


@register("mmoe")
class MMoE(_MixtureOfExperts):
    one_gate = False


@register("omoe")
class OMoE(_MixtureOfExperts):
    one_gate = True
