"""CGC and PLE (Tang et al., RecSys 2020): task-specific and shared experts with per-task gates.

One extraction level (CGC, Customized Gate Control) has, per task, ``num_specific_experts``
experts that only that task's gate reads, plus ``num_shared_experts`` experts that every task's
gate reads. Task t's gate mixes its own specific experts and the shared ones (E_task = specific +
shared experts, specific first), so task t's loss never reaches another task's specific experts.

PLE (Progressive Layered Extraction) stacks ``num_levels`` such levels. At every level but the last
there is also a shared gate over *all* experts of the level (every task's specific experts and the
shared ones); its output is the next level's shared-expert input, while each task's gate output is
that task's next-level input (for its specific experts and its gate). The first level reads the
flat embedding everywhere. The towers read the last level's task outputs.

Every level's experts use the widths ``config.model.expert_hidden`` (so levels after the first read
``expert_hidden[-1]``-wide inputs); gates may have hidden layers (``gate_hidden``) like MMoE's.
All experts of a level (T · specific + shared of them) are one ``StackedMLP``: each stack reads its
task's input (or the shared input), built by repeating the inputs along the stack axis.

Config keys (``config.model``): ``num_specific_experts`` (per task, >= 1), ``num_shared_experts``
(>= 1), and for ``ple`` ``num_levels`` (>= 1; 1 is CGC). ``num_experts`` is not read. Returns
``gates`` [B, T, E_task]: the last level's task gates.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax.models.assembly import Assembly, fold
from mtl_jax.models.gates import SoftmaxGates
from mtl_jax.models.layers import StackedMLP
from mtl_jax.models.options import ModelOptions, positive_int, required
from mtl_jax.models.registry import register


def _count(cfg, key: str) -> int:
    return positive_int(required(cfg, key), f"config.model.{key}")


@dataclasses.dataclass(frozen=True)
class PLEOptions(ModelOptions):
    num_levels: int
    num_specific_experts: int
    num_shared_experts: int


class ExtractionLevel(nnx.Module):
    """One CGC level: T·K_s specific + K_h shared experts, T task gates, optional shared gate.

    Args:
      num_tasks: T.
      num_specific: K_s, specific experts per task.
      num_shared: K_h, shared experts.
      in_features: width I of every input of this level.
      hidden: expert widths.
      gate_hidden: hidden widths of every gate.
      shared_gate: whether the level has a gate over all experts (PLE's inner levels).
      activation, dropout: of the experts.
      rngs: parameter RNG.
    """

    def __init__(
        self,
        num_tasks: int,
        num_specific: int,
        num_shared: int,
        in_features: int,
        hidden,
        *,
        gate_hidden=(),
        shared_gate: bool,
        activation: str = "relu",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        T, Ks, Kh = num_tasks, num_specific, num_shared
        self.num_tasks, self.num_specific, self.num_shared = T, Ks, Kh
        # Stacks 0..T·Ks-1 are the specific experts, task-major; the last Kh are shared.
        self.experts = StackedMLP(
            T * Ks + Kh, in_features, hidden, activation=activation, dropout=dropout, rngs=rngs
        )
        self.task_gates = SoftmaxGates(T, in_features, Ks + Kh, gate_hidden, rngs=rngs)
        self.shared_gate = (
            SoftmaxGates(1, in_features, T * Ks + Kh, gate_hidden, rngs=rngs)
            if shared_gate
            else None
        )
        self.out_features = self.experts.out_features

    def __call__(
        self,
        task_in: jax.Array,
        shared_in: jax.Array,
        *,
        train: bool,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None, jax.Array]:
        """Mixes the level's experts.

        Args:
          task_in: [B, T, I] each task's input, or [B, I] one input for every task (first level).
          shared_in: [B, I] the shared experts' (and shared gate's) input.
          train: training mode (dropout, Dice statistics).
          key: dropout key.

        Returns:
          (task_out [B, T, H], shared_out [B, H] or None without a shared gate,
          gates [B, T, Ks + Kh]).
        """
        T, Ks, Kh = self.num_tasks, self.num_specific, self.num_shared
        B = shared_in.shape[0]
        if task_in.ndim == 2:  # every stack reads the same input: the cheaper [B, I] einsum
            expert_in = task_in
        else:
            expert_in = jnp.concatenate(  # [B, T·Ks + Kh, I]
                [
                    jnp.repeat(task_in, Ks, axis=1),  # task t's input for its Ks experts
                    jnp.broadcast_to(shared_in[:, None], (B, Kh, shared_in.shape[-1])),
                ],
                axis=1,
            )
        experts = self.experts(expert_in, train=train, key=key)  # [B, T·Ks + Kh, H]
        H = experts.shape[-1]
        specific = experts[:, : T * Ks].reshape(B, T, Ks, H)  # [B, T, Ks, H]
        shared = experts[:, T * Ks :]  # [B, Kh, H]

        gates = self.task_gates(task_in, train=train)  # [B, T, Ks + Kh]
        g = gates.astype(experts.dtype)
        task_out = jnp.einsum("bte,bteh->bth", g[..., :Ks], specific) + jnp.einsum(
            "bte,beh->bth", g[..., Ks:], shared
        )  # [B, T, H]
        shared_out = None
        if self.shared_gate is not None:
            sg = self.shared_gate(shared_in, train=train)[:, 0]  # [B, T·Ks + Kh]
            shared_out = jnp.einsum("be,beh->bh", sg.astype(experts.dtype), experts)  # [B, H]
        return task_out, shared_out, gates


class _ProgressiveLayeredExtraction(Assembly):
    @classmethod
    def read_options(cls, cfg, schema) -> PLEOptions:
        opts = ModelOptions.read(cfg)
        return opts.extend(
            PLEOptions,
            num_levels=cls._num_levels(cfg),
            num_specific_experts=_count(cfg, "num_specific_experts"),
            num_shared_experts=_count(cfg, "num_shared_experts"),
        )

    @classmethod
    def _num_levels(cls, cfg) -> int:
        return _count(cfg, "num_levels")

    def build_bottom(self, schema, opts: PLEOptions, in_features: int, *, rngs: nnx.Rngs) -> int:
        levels = []
        for level in range(opts.num_levels):
            levels.append(
                ExtractionLevel(
                    schema.num_tasks,
                    opts.num_specific_experts,
                    opts.num_shared_experts,
                    in_features,
                    opts.expert_hidden,
                    gate_hidden=opts.gate_hidden,
                    shared_gate=level < opts.num_levels - 1,  # the last level feeds only towers
                    activation=opts.expert_activation,
                    dropout=opts.dropout,
                    rngs=rngs,
                )
            )
            in_features = levels[-1].out_features
        self.levels = nnx.List(levels)
        return in_features

    def run_bottom(self, batch, inputs, out, *, train, key):
        x = inputs["flat"]  # [B, I]
        task_in, shared_in = x, x  # the first level reads the embedding everywhere
        for i, level in enumerate(self.levels):
            task_in, shared_in, out["gates"] = level(
                task_in, shared_in, train=train, key=fold(key, i)
            )
        return task_in  # [B, T, H]; out["gates"]: [B, T, Ks + Kh], the last level's

    def tower_key(self, key):
        return fold(key, len(self.levels))


@register("ple")
class PLE(_ProgressiveLayeredExtraction):
    """PLE: ``config.model.num_levels`` extraction levels (CGC is ``num_levels = 1``)."""


@register("cgc")
class CGC(_ProgressiveLayeredExtraction):
    """CGC: one extraction level (PLE with ``num_levels = 1``; no shared gate)."""

    @classmethod
    def _num_levels(cls, cfg) -> int:
        if cfg.get("num_levels", 1) != 1:
            raise ValueError(
                f"config.model.num_levels must be 1 for model 'cgc' (one extraction level), got "
                f"{cfg.num_levels!r}; use config.model.name='ple' for more levels"
            )
        return 1
