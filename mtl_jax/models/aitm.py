"""AITM (Xi et al., KDD 2021): adaptive information transfer along the click → order funnel.

Each task t has a tower over the shared embeddings (an MLP of widths ``expert_hidden`` then
``tower_hidden``) giving its representation q_t [B, H]. The AIT module passes information from
task t−1 to task t:

  p_{t−1} = relu(W_p z_{t−1} + b_p)                      the transferred information
  w_u     = softmax_u(<W_q u, W_k u> / sqrt(H)),  u ∈ {p_{t−1}, q_t}
  z_t     = Σ_u w_u · W_v u                              (z_1 = q_1 for the first task)

and each task's logit is a linear head on z_t. Training adds the behavioural-expectation
calibrator, which keeps the funnel ordered (an order implies a click):

  aux_loss = λ · mean_rows Σ_{t≥2} max(p_t − p_{t−1}, 0),   λ = config.model.aitm_constraint_weight

(paper default λ = 0.6). ``aux_metrics`` logs ``aitm_constraint`` (the unweighted mean violation)
and ``aitm_transfer_weight`` (the mean attention weight w on the transferred information).

Every head predicts its label over all impressions (the order head: P(click and order)), so AITM
configs use ``config.loss.cascade = "none"``; under a cascade the order logit would be a CVR and
the constraint would compare a CVR with a CTR. Parameters of the T−1 transfer steps are stacked,
but the steps run in a loop because step t needs step t−1's output (T is 2 for click/order).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.layers import StackedHead, StackedMLP
from mtl_jax.models.mlp import MLP
from mtl_jax.models.options import ModelOptions, needs_two_tasks, number, required
from mtl_jax.models.registry import register

# Fan-in scaling per transfer step: the leading axis indexes the step.
_init = jax.nn.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1, batch_axis=(0,)
)


class InformationTransfer(nnx.Module):
    """The AIT modules of the T−1 consecutive task pairs, parameters stacked on the first axis."""

    def __init__(self, num_steps: int, features: int, *, rngs: nnx.Rngs):
        S, H = num_steps, features
        self.transfer_kernel = nnx.Param(_init(rngs.params(), (S, H, H)))
        self.transfer_bias = nnx.Param(jnp.zeros((S, H)))
        # Query, key and value projections (no bias, as in the authors' code).
        self.w_query = nnx.Param(_init(rngs.params(), (S, H, H)))
        self.w_key = nnx.Param(_init(rngs.params(), (S, H, H)))
        self.w_value = nnx.Param(_init(rngs.params(), (S, H, H)))
        self.features = H

    def __call__(self, step: int, prev: jax.Array, cur: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Task ``step + 1``'s representation from task ``step``'s; returns (z [B, H], w [B, 2])."""
        dt = cur.dtype
        p = jax.nn.relu(
            prev @ self.transfer_kernel[...][step].astype(dt)
            + self.transfer_bias[...][step].astype(dt)
        )  # [B, H]
        u = jnp.stack([p, cur], axis=1)  # [B, 2, H]: transferred information, own tower
        q = u @ self.w_query[...][step].astype(dt)  # [B, 2, H]
        k = u @ self.w_key[...][step].astype(dt)
        v = u @ self.w_value[...][step].astype(dt)
        scores = (q * k).sum(-1).astype(jnp.float32) / jnp.sqrt(float(self.features))  # [B, 2]
        w = jax.nn.softmax(scores, axis=-1)  # [B, 2]
        z = jnp.einsum("bu,buh->bh", w.astype(dt), v)  # [B, H]
        return z, w


@dataclasses.dataclass(frozen=True)
class AITMOptions(ModelOptions):
    aitm_constraint_weight: float


@register("aitm")
class AITM(MLP):
    """MLP's per-task bottoms; on top, per-task MLPs, the AIT modules and a head per task."""

    @classmethod
    def read_options(cls, cfg, schema) -> AITMOptions:
        opts = ModelOptions.read(cfg)
        needs_two_tasks(schema, "aitm", "transfers information between tasks")
        weight = required(cfg, "aitm_constraint_weight")
        return opts.extend(
            AITMOptions,
            aitm_constraint_weight=number(weight, "config.model.aitm_constraint_weight"),
        )

    def build_top(self, schema, opts: AITMOptions, width: int, *, rngs: nnx.Rngs) -> None:
        T = schema.num_tasks
        self.constraint_weight = opts.aitm_constraint_weight
        self.towers = StackedMLP(
            T,
            width,
            opts.tower_hidden,
            activation=opts.tower_activation,
            dropout=opts.dropout,
            rngs=rngs,
        )
        H = self.towers.out_features
        self.transfer = InformationTransfer(T - 1, H, rngs=rngs)
        self.heads = StackedHead(T, H, rngs=rngs)

    def run_top(self, h, batch, out, *, train, key):
        q = self.towers(h, train=train, key=key)  # [B, T, H]
        z = [q[:, 0]]
        transfer_w = []
        for t in range(1, q.shape[1]):
            z_t, w = self.transfer(t - 1, z[-1], q[:, t])
            z.append(z_t)
            transfer_w.append(w[:, 0])
        out["logits"] = logits = self.heads(jnp.stack(z, axis=1)).astype(jnp.float32)  # [B, T]

        p = jax.nn.sigmoid(logits)
        violation = jax.nn.relu(p[:, 1:] - p[:, :-1]).sum(axis=-1)  # [B]
        valid = batch.get("valid")
        if valid is None:
            constraint = violation.mean()
        else:  # padding rows of an eval batch do not count
            valid = valid.astype(jnp.float32)
            constraint = (violation * valid).sum() / jnp.maximum(valid.sum(), 1.0)
        out["aux_loss"] = self.constraint_weight * constraint
        out["aux_metrics"] = {
            "aitm_constraint": constraint,
            "aitm_transfer_weight": jnp.stack(transfer_w).mean(),
        }
