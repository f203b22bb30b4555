"""Pure train and eval steps: no jit, no I/O, no globals; the loop jits them with shardings
(``loop.jit_train_step``, ``loop.jit_eval_step``).

Dropout randomness is ``fold_in(seed_key, step)``, so a resumed run needs no saved RNG.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from mtl_jax import losses, optim, touched_rows, weighting
from mtl_jax.state import TrainState


def _compute_dtype(name: str):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def _forward(graphdef, params, model_state, batch, *, train: bool, key, compute_dtype):
    model = nnx.merge(graphdef, params, model_state)
    if compute_dtype != jnp.float32:
        batch = dict(batch, dense=batch["dense"].astype(compute_dtype))
    out = model(batch, train=train, key=key)
    new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    return out, new_model_state


def _compact_tables(graphdef, params, model_state, batch):
    """Swaps each table for the block of rows this batch touches.

    Returns (rows: key → [U] unique row ids, padded with R; compact: key → [U, D] those rows;
    batch with ``embedding_rows``: key → ids into the compact block). The unique rows come from
    the batch when the input pipeline found them (``touched_rows.host_transform``), else from
    ``touched_rows.in_step``.
    """
    tables, _ = optim.split_tables(params)
    found = touched_rows.from_batch(batch)
    if found is None:
        inputs = nnx.merge(graphdef, params, model_state).inputs  # only its static gather plan
        num_rows = {k: t.shape[0] for k, t in tables.items()}
        rows, local = touched_rows.in_step(inputs.row_ids(batch), num_rows)
    else:
        rows, local, batch = found
    # The padding ids (R) read the last row ("clip", no select over the block): no lookup reads
    # a padding slot, so its gradient is 0, and the update drops it.
    compact = {k: jnp.take(tables[k], u, axis=0, mode="clip") for k, u in rows.items()}
    return rows, compact, dict(batch, embedding_rows=local)


# Folded into the step key for PCGrad's task order.
_PCGRAD_ORDER_STREAM = 0x9C6


def _to_params_fn(sparse: bool):
    """Maps a tree in the differentiated layout (``(rest, compact)`` when sparse) to the params
    layout, and back; works on per-task stacked trees too."""
    if not sparse:
        return (lambda d: d), (lambda p: p)

    def to_diff(p):
        tables, rest = optim.split_tables(p)
        return rest, tables

    return (lambda d: optim.merge_tables(*d)), to_diff


def _task_gradients(losses_fn, diff_params, task_scales):
    """Each task's gradient ∇(c_k L_k) and the auxiliary loss's, in one batched backward pass.

    Returns ((task losses [T], aux loss), model aux, per-task grads with leading [T], aux grads).
    """
    (task, aux_loss), vjp_fn, model_aux = jax.vjp(losses_fn, diff_params, has_aux=True)
    T = task.shape[0]
    scales = jnp.asarray(task_scales, task.dtype)  # [T] c_k
    # Row k < T pulls back c_k e_k (task k alone); row T pulls back the auxiliary loss.
    ct_task = jnp.concatenate([jnp.diag(scales), jnp.zeros((1, T), task.dtype)])  # [T+1, T]
    ct_aux = jnp.concatenate([jnp.zeros((T,), aux_loss.dtype), jnp.ones((1,), aux_loss.dtype)])
    (rows,) = jax.vmap(vjp_fn)((ct_task, ct_aux))
    task_rows = jax.tree.map(lambda r: r[:T], rows)
    aux_row = jax.tree.map(lambda r: r[T], rows)
    return (task, aux_loss), model_aux, task_rows, aux_row


def _gradnorm(task_rows, aux_row, task, weights, initial_losses, loss_cfg, task_rows_as_params):
    """GradNorm: the model's gradient Σ_k w_k g_k + g_aux, the weights' gradient, the objective.

    ``task_rows`` are the per-task gradients g_k = ∇L_k [T, ...] in the differentiated
    layout; ``task_rows_as_params`` the same in the params layout, to select the balanced subtree.
    """
    model_grads = jax.tree.map(
        lambda r, a: jnp.tensordot(weights.astype(r.dtype), r, axes=1) + a, task_rows, aux_row
    )
    leaves = weighting.gradnorm_subtree(
        task_rows_as_params, tuple(loss_cfg.task_specific_params), tuple(loss_cfg.gradnorm_params)
    )
    sq_norms = sum(
        jnp.sum(jnp.square(x.astype(jnp.float32)), axis=tuple(range(1, x.ndim))) for x in leaves
    )  # [T]
    (objective, _), weight_grads = jax.value_and_grad(weighting.gradnorm_loss, has_aux=True)(
        weights, jnp.sqrt(sq_norms), task, initial_losses, loss_cfg.gradnorm_alpha
    )
    return model_grads, weight_grads, objective


def _pcgrad(task_rows_as_params, task_specific, key):
    """PCGrad: Σ_k g_k^PC for the shared params, Σ_k g_k for the task-specific ones.

    Returns the combined gradient (params layout) and the fraction of conflicting task pairs.
    """
    shared_rows, specific_rows = weighting.split_shared(task_rows_as_params, task_specific)
    flat_rows = jax.vmap(lambda t: ravel_pytree(t)[0])(shared_rows)  # [T, P]
    _, unravel = ravel_pytree(jax.tree.map(lambda r: r[0], shared_rows))
    projected, conflicts = weighting.pcgrad(flat_rows, key)
    grads = dict(
        unravel(projected.sum(axis=0)), **jax.tree.map(lambda r: r.sum(axis=0), specific_rows)
    )
    return grads, conflicts


class Objective(NamedTuple):
    """What a gradient strategy differentiates."""

    forward: Callable  # diff params → (task losses [T], aux loss or None, model state, aux metrics)
    diff_params: Any  # the model's params in the differentiated layout (``_to_params_fn``)
    to_params: Callable  # differentiated layout → params layout (per-task stacked trees too)
    to_diff: Callable  # params layout → differentiated layout


class Gradients(NamedTuple):
    """A gradient strategy's result: the gradients to apply and what the step reports."""

    model: Any  # the model's gradient, in the differentiated layout
    weighting: dict | None  # the gradient of params[optim.TASK_WEIGHTING]; None: there are none
    weighting_state: dict | None  # the new opt_state["weighting"] (GradNorm's initial losses)
    total: jax.Array  # the weighted total loss
    task_losses: jax.Array  # [T]
    task_weights: jax.Array  # [T] the factor of each task loss L_k in the total
    model_state: dict  # the model's new non-trainable state
    aux_metrics: dict  # the model's auxiliary metrics
    metrics: dict  # the weighting's diagnostics


def _with_aux(total, aux):
    return total if aux is None else total + aux


def _static_gradients(objective, weighting_params, weighting_state, loss_cfg, key) -> Gradients:
    """total = Σ_k λ_k L_k (+ aux); one backward pass."""

    def loss_fn(diff):
        task, aux, model_state, aux_metrics = objective.forward(diff)
        total = _with_aux(losses.weighted_total(task, loss_cfg.loss_weights), aux)
        return total, (task, model_state, aux_metrics)

    (total, (task, model_state, aux_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        objective.diff_params
    )
    return Gradients(
        model=grads,
        weighting=None,
        weighting_state=weighting_state,
        total=total,
        task_losses=task,
        task_weights=jnp.asarray(loss_cfg.loss_weights, jnp.float32),
        model_state=model_state,
        aux_metrics=aux_metrics,
        metrics={},
    )


def _uncertainty_gradients(objective, weighting_params, weighting_state, loss_cfg, key):
    """total = Σ_k (λ_k exp(−s_k) L_k + s_k / 2) (+ aux), differentiated in the params and s."""

    def loss_fn(diff, log_var):
        task, aux, model_state, aux_metrics = objective.forward(diff)
        total, task_weights = weighting.uncertainty_total(task, loss_cfg.loss_weights, log_var)
        return _with_aux(total, aux), (task, task_weights, model_state, aux_metrics)

    (total, (task, task_weights, model_state, aux_metrics)), (grads, g_log_var) = (
        jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            objective.diff_params, weighting_params["log_var"]
        )
    )
    return Gradients(
        model=grads,
        weighting={"log_var": g_log_var, "weight": jnp.zeros_like(weighting_params["weight"])},
        weighting_state=weighting_state,
        total=total,
        task_losses=task,
        task_weights=task_weights,
        model_state=model_state,
        aux_metrics=aux_metrics,
        metrics={},
    )


def _per_task_gradients(objective, task_scales):
    """``_task_gradients`` of the objective: ((task [T], aux), (model state, aux metrics),
    per-task grads [T, ...], aux grads), all in the differentiated layout."""

    def losses_fn(diff):
        task, aux, model_state, aux_metrics = objective.forward(diff)
        aux = jnp.zeros((), jnp.float32) if aux is None else aux.astype(jnp.float32)
        return (task, aux), (model_state, aux_metrics)

    return _task_gradients(losses_fn, objective.diff_params, task_scales)


def _gradnorm_gradients(objective, weighting_params, weighting_state, loss_cfg, key):
    """total = Σ_k w_k L_k (+ aux); GradNorm's weights w replace λ (see weighting.py)."""
    w = weighting_params["weight"]  # [T]
    (task, aux_loss), (model_state, aux_metrics), task_rows, aux_row = _per_task_gradients(
        objective, jnp.ones(len(loss_cfg.loss_weights), jnp.float32)
    )
    initial = weighting.update_initial(weighting_state["initial_losses"], task)
    grads, g_w, objective_value = _gradnorm(
        task_rows, aux_row, task, w, initial, loss_cfg, objective.to_params(task_rows)
    )
    return Gradients(
        model=grads,
        weighting={"log_var": jnp.zeros_like(w), "weight": g_w},
        weighting_state=dict(weighting_state, initial_losses=initial),
        total=jnp.sum(w * task) + aux_loss,
        task_losses=task,
        task_weights=w,
        model_state=model_state,
        aux_metrics=aux_metrics,
        metrics={"gradnorm_loss": objective_value},
    )


def _pcgrad_gradients(objective, weighting_params, weighting_state, loss_cfg, key):
    """total = Σ_k λ_k L_k (+ aux); the shared params get the projected ∇(λ_k L_k)."""
    lam = jnp.asarray(loss_cfg.loss_weights, jnp.float32)
    (task, aux_loss), (model_state, aux_metrics), task_rows, aux_row = _per_task_gradients(
        objective, lam
    )
    # The other tasks are visited in a random order per step: fold_in(seed, step), folded once
    # more so that the order is independent of the models' dropout masks.
    order_key = jax.random.fold_in(key, _PCGRAD_ORDER_STREAM)
    shared_grads, conflicts = _pcgrad(
        objective.to_params(task_rows), tuple(loss_cfg.task_specific_params), order_key
    )
    grads = jax.tree.map(jnp.add, objective.to_diff(shared_grads), aux_row)
    return Gradients(
        model=grads,
        weighting=None,
        weighting_state=weighting_state,
        total=jnp.dot(lam, task) + aux_loss,
        task_losses=task,
        task_weights=lam,
        model_state=model_state,
        aux_metrics=aux_metrics,
        metrics={"pcgrad_conflicts": conflicts},
    )


# config.loss.weighting → fn(objective, weighting params, opt_state["weighting"], config.loss,
# step key) → Gradients. weighting.py describes each weighting.
GRADIENTS = {
    "static": _static_gradients,
    "uncertainty": _uncertainty_gradients,
    "gradnorm": _gradnorm_gradients,
    "pcgrad": _pcgrad_gradients,
}


def _gradients_fn(kind: str) -> Callable[..., Gradients]:
    if kind not in GRADIENTS:
        raise ValueError(f"config.loss.weighting must be one of {tuple(GRADIENTS)}, got {kind!r}")
    return GRADIENTS[kind]


def _objective(state, batch, model_params, *, graphdef, sparse, config, regression, key):
    """The objective of ``model_params`` on ``batch`` and the rows it touches (None if dense).

    Sparse, the model reads the touched rows' block (``_compact_tables``), not the tables.
    """
    loss_cfg, compute_dtype = config.loss, _compute_dtype(config.compute_dtype)
    rows, diff_params = None, model_params
    if sparse:
        with jax.named_scope("embedding_gather"):
            rows, compact, batch = _compact_tables(graphdef, model_params, state.model_state, batch)
        diff_params = (optim.split_tables(model_params)[1], compact)
    to_params, to_diff = _to_params_fn(sparse)

    def forward(diff):
        out, new_model_state = _forward(
            graphdef,
            to_params(diff),
            state.model_state,
            batch,
            train=True,
            key=key,
            compute_dtype=compute_dtype,
        )
        task = losses.task_losses(
            out["logits"],
            batch["labels"],
            cascade=loss_cfg.cascade,
            label_weights=loss_cfg.label_weights,
            valid=batch.get("valid"),
            regression=regression,
        )
        return task, out.get("aux_loss"), new_model_state, out.get("aux_metrics", {})

    return Objective(forward, diff_params, to_params, to_diff), rows


def apply_update(
    state: TrainState, grads: Gradients, tx: optim.Optimizer, rows: dict | None
) -> tuple[dict, dict]:
    """The new params and opt_state: ``tx.dense_tx`` on the params (and the task-weighting
    params, ``constrain``-ed after), without the tables when sparse, whose touched ``rows`` get
    ``tx.update_rows``."""
    with jax.named_scope("optimizer_update"):
        params, g = state.params, grads.model
        if tx.sparse:
            (g, g_rows), (tables, params) = g, optim.split_tables(params)
        g = weighting.merge_params(g, grads.weighting)
        updates, tx_state = tx.dense_tx(params).update(g, state.opt_state["tx"], params)
        params = optax.apply_updates(params, updates)
        opt_state = {"tx": tx_state}
        if tx.sparse:
            tables, opt_state["embed"] = tx.update_rows(
                tables, state.opt_state["embed"], rows, g_rows, state.step
            )
            params = optim.merge_tables(params, tables)
        weighting_params, params = weighting.split_params(params)
        if weighting_params is not None:
            params = weighting.merge_params(params, weighting.constrain(weighting_params))
            opt_state["weighting"] = grads.weighting_state
    return params, opt_state


def train_step(
    state: TrainState,
    batch: dict,
    *,
    graphdef,
    tx: optim.Optimizer,
    config,
    regression: tuple[bool, ...] | None = None,
) -> tuple[TrainState, dict]:
    """One update on a (global) batch.

    Returns the new state and metrics: ``loss`` (weighted total), ``task_losses`` [T],
    ``task_weights`` [T] (the factor of each task loss L_k in the total), ``grad_norm`` (of the
    model's update direction), any auxiliary metrics of the model, and the weighting's diagnostics
    (``gradnorm_loss``; ``pcgrad_conflicts``: the fraction of task pairs whose gradients conflict).
    With a sparse embedding update the gradient is taken with respect to the touched rows only
    (``_compact_tables``), so nothing of size vocabulary is read or written besides the rows
    themselves. ``config.loss.weighting`` chooses the gradient strategy (``GRADIENTS``, see
    ``mtl_jax/weighting.py``). ``regression`` marks the regression tasks (``schema.task_types``):
    squared error instead of BCE.
    """
    gradients_fn = _gradients_fn(config.loss.get("weighting", "static"))
    key = jax.random.fold_in(jax.random.key(config.seed), state.step)
    weighting_params, model_params = weighting.split_params(state.params)
    # The named scopes (embedding_gather, optimizer_update) label the gather and the update in the
    # compiled program's op metadata, so that a profiler trace's ops can be attributed to them
    # (bench/accelerator.py).
    objective, rows = _objective(
        state,
        batch,
        model_params,
        graphdef=graphdef,
        sparse=tx.sparse,
        config=config,
        regression=regression,
        key=key,
    )
    grads = gradients_fn(
        objective, weighting_params, state.opt_state.get("weighting"), config.loss, key
    )
    params, opt_state = apply_update(state, grads, tx, rows)
    new_state = TrainState(
        step=state.step + 1, params=params, model_state=grads.model_state, opt_state=opt_state
    )
    metrics = {
        "loss": grads.total,
        "task_losses": grads.task_losses,
        "task_weights": grads.task_weights.astype(jnp.float32),
        "grad_norm": optax.tree.norm(grads.model),
    }
    return new_state, {**metrics, **grads.metrics, **grads.aux_metrics}


def eval_step(
    params: dict,
    model_state: dict,
    batch: dict,
    *,
    graphdef,
    config,
    regression: tuple[bool, ...] | None = None,
) -> dict:
    """Predictions for one batch: impression-space probabilities (values of regression tasks),
    cvr, ranking score, gates."""
    _, model_params = weighting.split_params(params)
    out, _ = _forward(
        graphdef,
        model_params,
        model_state,
        batch,
        train=False,
        key=None,
        compute_dtype=_compute_dtype(config.compute_dtype),
    )
    pred = losses.predict(out["logits"], config.loss.cascade, regression)
    pred["score"] = losses.ranking_score(pred["probs"], config.loss.export_weights)
    if "gates" in out:
        pred["gates"] = out["gates"].astype(jnp.float32)
    return pred
