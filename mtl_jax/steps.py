"""Pure train and eval steps: no jit, no I/O, no globals; the loop jits them with shardings.

Dropout randomness is ``fold_in(seed_key, step)``, so a resumed run needs no saved RNG.
"""

from __future__ import annotations

import functools

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


def train_step(
    state: TrainState,
    batch: dict,
    *,
    graphdef,
    opt: optim.Optimizer,
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
    themselves. ``config.loss.weighting`` chooses how the task losses combine (see
    ``mtl_jax/weighting.py``). ``regression`` marks the regression tasks (``schema.task_types``):
    squared error instead of BCE.
    """
    loss_cfg = config.loss
    kind = loss_cfg.get("weighting", "static")
    if kind not in weighting.WEIGHTINGS:
        raise ValueError(
            f"config.loss.weighting must be one of {weighting.WEIGHTINGS}, got {kind!r}"
        )
    key = jax.random.fold_in(jax.random.key(config.seed), state.step)
    compute_dtype = _compute_dtype(config.compute_dtype)
    weighting_params, model_params = weighting.split_params(state.params)
    if kind != "static" and weighting_params is None:
        raise ValueError(
            f"config.loss.weighting={kind!r} needs params[{weighting.KEY!r}]; build the state "
            "with state.init_model"
        )
    loss_weights = loss_cfg.loss_weights

    # The named scopes label the gather and the update in the compiled program's op metadata, so
    # that a profiler trace's ops can be attributed to them (bench/accelerator.py).
    if opt.sparse:
        with jax.named_scope("embedding_gather"):
            rows, compact, batch = _compact_tables(graphdef, model_params, state.model_state, batch)
        _, rest = optim.split_tables(model_params)
        diff_params = (rest, compact)
    else:
        diff_params = model_params
    to_params, to_diff = _to_params_fn(opt.sparse)

    def forward_losses(diff):
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

    extra_metrics = {}
    weighting_grads = None
    if kind == "static":

        def loss_fn(diff):
            task, aux, new_model_state, aux_metrics = forward_losses(diff)
            total = losses.weighted_total(task, loss_weights)
            if aux is not None:
                total = total + aux
            return total, (task, new_model_state, aux_metrics)

        (total, (task, new_model_state, aux_metrics)), grads = jax.value_and_grad(
            loss_fn, has_aux=True
        )(diff_params)
        task_weights = jnp.asarray(loss_weights, jnp.float32)

    elif kind == "uncertainty":

        def loss_fn(diff, log_var):
            task, aux, new_model_state, aux_metrics = forward_losses(diff)
            total, task_weights = weighting.uncertainty_total(task, loss_weights, log_var)
            if aux is not None:
                total = total + aux
            return total, (task, task_weights, new_model_state, aux_metrics)

        (total, (task, task_weights, new_model_state, aux_metrics)), (grads, g_log_var) = (
            jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
                diff_params, weighting_params["log_var"]
            )
        )
        weighting_grads = {
            "log_var": g_log_var,
            "weight": jnp.zeros_like(weighting_params["weight"]),
        }

    else:  # gradnorm, pcgrad: per-task gradients

        def losses_fn(diff):
            task, aux, new_model_state, aux_metrics = forward_losses(diff)
            aux = jnp.zeros((), jnp.float32) if aux is None else aux.astype(jnp.float32)
            return (task, aux), (new_model_state, aux_metrics)

        # GradNorm's weights replace λ (see weighting.py); PCGrad projects ∇(λ_k L_k).
        lam = jnp.asarray(loss_weights, jnp.float32)
        task_scales = jnp.ones_like(lam) if kind == "gradnorm" else lam
        (task, aux_loss), (new_model_state, aux_metrics), task_rows, aux_row = _task_gradients(
            losses_fn, diff_params, task_scales
        )
        if kind == "gradnorm":
            w = weighting_params["weight"]  # [T]
            initial = weighting.update_initial(state.opt_state["weighting"]["initial_losses"], task)
            grads, g_w, extra_metrics["gradnorm_loss"] = _gradnorm(
                task_rows, aux_row, task, w, initial, loss_cfg, to_params(task_rows)
            )
            total = jnp.sum(w * task) + aux_loss
            task_weights = w
            weighting_grads = {"log_var": jnp.zeros_like(w), "weight": g_w}
        else:
            # The other tasks are visited in a random order per step: fold_in(seed, step), folded
            # once more so that the order is independent of the models' dropout masks.
            order_key = jax.random.fold_in(key, _PCGRAD_ORDER_STREAM)
            shared_grads, extra_metrics["pcgrad_conflicts"] = _pcgrad(
                to_params(task_rows), tuple(loss_cfg.task_specific_params), order_key
            )
            grads = jax.tree.map(jnp.add, to_diff(shared_grads), aux_row)
            total = jnp.dot(lam, task) + aux_loss
            task_weights = lam

    with jax.named_scope("optimizer_update"):
        if opt.sparse:
            g_rest, g_rows = grads
            tables, _ = optim.split_tables(model_params)
            updates, tx_state = opt.tx.update(g_rest, state.opt_state["tx"], rest)
            rest = optax.apply_updates(rest, updates)
            tables, embed_state = opt.update_rows(
                tables, state.opt_state["embed"], rows, g_rows, state.step
            )
            params = optim.merge_tables(rest, tables)
            opt_state = {"tx": tx_state, "embed": embed_state}
        else:
            updates, tx_state = opt.tx.update(grads, state.opt_state["tx"], model_params)
            params = optax.apply_updates(model_params, updates)
            opt_state = {"tx": tx_state}
        if weighting_params is not None:
            weighting_state = state.opt_state["weighting"]
            if weighting_grads is not None:
                weighting_params, weighting_state = opt.update_task_weighting(
                    weighting_params, weighting_grads, weighting_state, loss_cfg.weighting_lr
                )
            if kind == "gradnorm":
                weighting_params = dict(
                    weighting_params, weight=weighting.renormalise(weighting_params["weight"])
                )
                weighting_state = dict(weighting_state, initial_losses=initial)
            params = weighting.merge_params(params, weighting_params)
            opt_state["weighting"] = weighting_state
    new_state = TrainState(
        step=state.step + 1, params=params, model_state=new_model_state, opt_state=opt_state
    )
    metrics = {
        "loss": total,
        "task_losses": task,
        "task_weights": task_weights.astype(jnp.float32),
        "grad_norm": optax.tree.norm(grads),
    }
    metrics.update(extra_metrics)
    metrics.update(aux_metrics)
    return new_state, metrics


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


def jit_train_step(graphdef, opt, config, state_sharding, batch_sharding, regression=None):
    """The jitted train step: donated state, shardings fixed, so it compiles once."""
    regression = None if regression is None else tuple(bool(r) for r in regression)
    return jax.jit(
        functools.partial(
            train_step, graphdef=graphdef, opt=opt, config=config, regression=regression
        ),
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, None),
        donate_argnums=(0,),
    )


def jit_eval_step(
    graphdef, config, params_sharding, model_state_sharding, batch_sharding, regression=None
):
    regression = None if regression is None else tuple(bool(r) for r in regression)
    return jax.jit(
        functools.partial(eval_step, graphdef=graphdef, config=config, regression=regression),
        in_shardings=(params_sharding, model_state_sharding, batch_sharding),
    )
