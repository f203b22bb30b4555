"""TrainState: arrays only (step, params, model_state, opt_state), and how to create it.

``params`` and ``model_state`` (Dice running statistics) are pure nested dicts of arrays taken
from an NNX model with ``nnx.split``; steps rebuild the module with ``nnx.merge(graphdef, ...)``.
Nothing here holds a Module.

Under a learned loss weighting (``weighting.LEARNED``) ``params`` also holds its parameters under
``params["task_weighting"]`` (``mtl_jax/weighting.py``), so that checkpoints and shardings treat
them like any other parameter, and ``opt_state["weighting"]`` its non-trainable state; the steps
split them off before merging the model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from mtl_jax import models, optim, sharding, weighting


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: the number of updates applied
    params: dict  # trainable parameters (nnx.Param)
    model_state: dict  # non-trainable state (nnx.BatchStat: Dice running statistics)
    opt_state: Any


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def init_model(
    schema, model_config, seed: int, loss_weighting: str = "static"
) -> tuple[nnx.GraphDef, dict, dict]:
    """Builds the model and splits it into its graph definition, params and model state.

    Under a learned ``loss_weighting`` (``config.loss.weighting`` in ``weighting.LEARNED``) the
    params include its parameters (``weighting.init_params``).
    """
    graphdef, params, model_state = split_model(models.build_model(schema, model_config, seed=seed))
    if loss_weighting in weighting.LEARNED:
        params = weighting.merge_params(params, weighting.init_params(schema.num_tasks))
    return graphdef, params, model_state


def create_train_state(params: dict, model_state: dict, tx) -> TrainState:
    """A fresh state; ``tx`` is an ``optim.Optimizer``."""
    opt_state = tx.init(params)
    weighting_params, _ = weighting.split_params(params)
    if weighting_params is not None:
        opt_state["weighting"] = weighting.init_state(weighting_params)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, model_state=model_state, opt_state=opt_state
    )


def abstract_model(schema, model_config, seed: int) -> tuple[nnx.GraphDef, dict, dict]:
    """Graph definition and abstract params / model state of the model (no loss weighting),
    without allocating parameters."""
    model = nnx.eval_shape(lambda: models.build_model(schema, model_config, seed=seed))
    return split_model(model)


def abstract_train_state(
    schema, model_config, tx, seed: int, loss_weighting: str = "static"
) -> TrainState:
    """Shapes and dtypes of the state without allocating it (for restoring and sharding)."""

    def build():
        _, params, model_state = init_model(schema, model_config, seed, loss_weighting)
        return create_train_state(params, model_state, tx)

    return jax.eval_shape(build)


class Layout(NamedTuple):
    """What a run's state will look like, before any of it is allocated: built the same way by
    training (``loop.train_and_evaluate``) and by restoring (``restore.restore_run``)."""

    mesh: jax.sharding.Mesh
    graphdef: nnx.GraphDef
    tx: optim.Optimizer
    abstract: TrainState  # shapes and dtypes
    sharding: TrainState  # a NamedSharding per leaf


def layout(config, schema, num_steps: int) -> Layout:
    """The mesh, model graph, optimizer (its schedule ``num_steps`` long), abstract state and
    state sharding of ``config`` on data of ``schema``."""
    mesh = sharding.make_mesh(config.mesh)
    graphdef, _, _ = abstract_model(schema, config.model, config.seed)
    tx = optim.make_optimizer(config, num_steps)
    abstract = abstract_train_state(
        schema, config.model, tx, config.seed, config.loss.get("weighting", "static")
    )
    state_sh = sharding.state_sharding(abstract, mesh, sharding.sharding_rules(config.mesh))
    return Layout(mesh, graphdef, tx, abstract, state_sh)


def count_params(params: dict) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
