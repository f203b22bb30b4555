"""A finished (or any checkpointed) run, restored: the one entry point of evaluate, predict, export.

:func:`restore_run` reads what ``mtl_jax.train`` left in a workdir (the checkpoint's config,
``schema.json``, ``preprocessing.json`` for reader-based data) and restores the checkpoint's
params and model state onto the mesh the config names, without loading any data.
:meth:`Run.eval_step` is the jitted eval step those commands share, so every command scores a row
with the same program as training's own evaluation.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections

from mtl_jax import loop, sharding
from mtl_jax.checkpoint import Checkpointer, abstract_with_sharding, failure_reason
from mtl_jax.cli import UserError
from mtl_jax.data.preprocessing import Preprocessing
from mtl_jax.data.schema import Schema
from mtl_jax.state import layout


@dataclasses.dataclass
class Run:
    """What a restored run holds; ``preprocessing`` is None for synthetic data and prepared
    shards (their columns are already ids)."""

    workdir: str
    step: int
    config: ml_collections.ConfigDict
    schema: Schema
    preprocessing: Preprocessing | None
    mesh: jax.sharding.Mesh
    graphdef: object
    params: dict
    model_state: dict
    params_sharding: dict
    model_state_sharding: dict

    @property
    def regression(self) -> tuple[bool, ...]:
        return tuple(self.schema.is_regression(k) for k in range(self.schema.num_tasks))

    def eval_step(self):
        """The jitted eval step, sharded like training's (batch rows over ``data``)."""
        return loop.jit_eval_step(
            self.graphdef,
            self.config,
            self.params_sharding,
            self.model_state_sharding,
            sharding.batch_sharding(self.mesh),
            self.regression,
        )


def _read(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no {what}; is this a workdir written by mtl_jax.train?")
    with open(path) as f:
        return f.read()


def restore_run(workdir: str, step: int | None = None) -> Run:
    """Restores ``workdir``'s checkpoint at ``step`` (default: the latest).

    Raises:
      FileNotFoundError: no checkpoints or no ``schema.json`` in ``workdir``.
      ValueError: ``step`` is not one of the checkpoints.
      UserError: the checkpoint does not restore (the message says why and what to do).
    """
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"{ckpt_dir}: no checkpoints; train first with mtl_jax.train")
    ckpt = Checkpointer(ckpt_dir)
    try:
        steps_there = ckpt.all_steps()
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{ckpt_dir}: no checkpoint found")
        if step not in steps_there:
            raise ValueError(
                f"--step {step}: no such checkpoint in {ckpt_dir}; steps: {steps_there}"
            )

        def unusable(e: Exception) -> UserError:
            return UserError(
                f"{ckpt_dir}/{step} does not restore ({failure_reason(e)}); rerun mtl_jax.train "
                f"on this workdir to fall back to an older checkpoint and retrain from it, or "
                f"pass --step with another of {steps_there}"
            )

        try:
            config = ml_collections.ConfigDict(ckpt.restore_config(step))
        except Exception as e:
            raise unusable(e) from e
        schema = Schema.from_json(_read(os.path.join(workdir, "schema.json"), "schema.json"))
        prep_path = os.path.join(workdir, "preprocessing.json")
        preprocessing = (
            Preprocessing.from_json(_read(prep_path, "preprocessing.json"))
            if os.path.isfile(prep_path)
            else None
        )
        # The checkpoint is one tree, optimizer state included, so the whole state is restored;
        # its structure does not depend on the schedule's length, which is all ``step`` sets.
        run = layout(config, schema, max(step, 1))
        mesh, graphdef, state_sh = run.mesh, run.graphdef, run.sharding
        try:
            state = ckpt.restore(step, abstract_with_sharding(run.abstract, state_sh))
        except Exception as e:
            raise unusable(e) from e
    finally:
        ckpt.close()
    return Run(
        workdir=workdir,
        step=int(step),
        config=config,
        schema=schema,
        preprocessing=preprocessing,
        mesh=mesh,
        graphdef=graphdef,
        params=state.params,
        model_state=state.model_state,
        params_sharding=state_sh.params,
        model_state_sharding=state_sh.model_state,
    )
