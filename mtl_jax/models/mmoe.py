"""MMoE (Ma et al., KDD 2018) and OMoE: E shared experts mixed per task by softmax gates.

MMoE has one gate per task; OMoE one gate shared by all tasks. Gates take the same input as the
experts and may have hidden layers (``gate_hidden``), as in the paper's section 2.1.2.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.assembly import Assembly
from mtl_jax.models.experts import ExpertBank
from mtl_jax.models.gates import SoftmaxGates
from mtl_jax.models.options import ModelOptions
from mtl_jax.models.registry import register


class _MixtureOfExperts(Assembly):
    one_gate: bool = False

    def build_bottom(self, schema, opts: ModelOptions, in_features: int, *, rngs: nnx.Rngs) -> int:
        T = schema.num_tasks
        self.num_tasks = T
        self.experts = ExpertBank(
            opts.num_experts,
            in_features,
            opts.expert_hidden,
            activation=opts.expert_activation,
            dropout=opts.dropout,
            rngs=rngs,
        )
        self.gates = SoftmaxGates(
            1 if self.one_gate else T, in_features, opts.num_experts, opts.gate_hidden, rngs=rngs
        )
        return self.experts.out_features

    def run_bottom(self, batch, inputs, out, *, train, key):
        x = inputs["flat"]  # [B, I]
        experts = self.experts(x, train=train, key=key)  # [B, E, H]
        gates = self.gates(x, train=train)  # [B, G, E]
        out["gates"] = jnp.broadcast_to(gates, (x.shape[0], self.num_tasks, gates.shape[-1]))
        return jnp.einsum("bte,beh->bth", out["gates"].astype(experts.dtype), experts)  # [B, T, H]


@register("mmoe")
class MMoE(_MixtureOfExperts):
    one_gate = False


@register("omoe")
class OMoE(_MixtureOfExperts):
    one_gate = True
