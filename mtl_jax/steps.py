"""Pure train and eval steps: no jit, no I/O, no globals; the loop jits them with shardings.

Dropout randomness is ``fold_in(seed_key, step)``, so a resumed run needs no saved RNG.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mtl_jax import losses, optim
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
    batch with ``embedding_rows``: key → ids into the compact block).
    """
    inputs = nnx.merge(graphdef, params, model_state).inputs  # only its static gather plan
    row_ids = inputs.row_ids(batch)
    tables, _ = optim.split_tables(params)
    rows, compact, local = {}, {}, {}
    for k, ids in row_ids.items():
        num_rows = tables[k].shape[0]
        u, inv = jnp.unique(ids.ravel(), size=ids.size, fill_value=num_rows, return_inverse=True)
        rows[k] = u
        local[k] = inv.reshape(ids.shape).astype(jnp.int32)
        compact[k] = jnp.take(tables[k], u, axis=0, mode="fill", fill_value=0)
    return rows, compact, dict(batch, embedding_rows=local)


def train_step(
    state: TrainState, batch: dict, *, graphdef, opt: optim.Optimizer, config
) -> tuple[TrainState, dict]:
    """One update on a (global) batch.

    Returns the new state and metrics: ``loss`` (weighted total), ``task_losses`` [T],
    ``grad_norm`` and any auxiliary metrics of the model. With a sparse embedding update the
    gradient is taken with respect to the touched rows only (``_compact_tables``), so nothing of
    size vocabulary is read or written besides the rows themselves.
    """
    loss_cfg = config.loss
    key = jax.random.fold_in(jax.random.key(config.seed), state.step)
    compute_dtype = _compute_dtype(config.compute_dtype)

    if opt.sparse:
        rows, compact, batch = _compact_tables(graphdef, state.params, state.model_state, batch)
        _, rest = optim.split_tables(state.params)
        diff_params = (rest, compact)
        to_params = lambda d: optim.merge_tables(*d)
    else:
        diff_params = state.params
        to_params = lambda d: d

    def loss_fn(diff):
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
        )
        total = losses.weighted_total(task, loss_cfg.loss_weights)
        aux = out.get("aux_loss")
        if aux is not None:
            total = total + aux
        return total, (task, new_model_state, out.get("aux_metrics", {}))

    (total, (task, new_model_state, aux_metrics)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(diff_params)
    if opt.sparse:
        g_rest, g_rows = grads
        tables, _ = optim.split_tables(state.params)
        updates, tx_state = opt.tx.update(g_rest, state.opt_state["tx"], rest)
        rest = optax.apply_updates(rest, updates)
        tables, embed_state = opt.update_rows(
            tables, state.opt_state["embed"], rows, g_rows, state.step
        )
        params = optim.merge_tables(rest, tables)
        opt_state = {"tx": tx_state, "embed": embed_state}
    else:
        updates, tx_state = opt.tx.update(grads, state.opt_state["tx"], state.params)
        params = optax.apply_updates(state.params, updates)
        opt_state = {"tx": tx_state}
    new_state = TrainState(
        step=state.step + 1, params=params, model_state=new_model_state, opt_state=opt_state
    )
    metrics = {"loss": total, "task_losses": task, "grad_norm": optax.tree.norm(grads)}
    metrics.update(aux_metrics)
    return new_state, metrics


def eval_step(params: dict, model_state: dict, batch: dict, *, graphdef, config) -> dict:
    """Predictions for one batch: impression-space probabilities, cvr, ranking score, gates."""
    out, _ = _forward(
        graphdef,
        params,
        model_state,
        batch,
        train=False,
        key=None,
        compute_dtype=_compute_dtype(config.compute_dtype),
    )
    pred = losses.predict(out["logits"], config.loss.cascade)
    pred["score"] = losses.ranking_score(pred["probs"], config.loss.export_weights)
    if "gates" in out:
        pred["gates"] = out["gates"].astype(jnp.float32)
    return pred


def jit_train_step(graphdef, opt, config, state_sharding, batch_sharding):
    """The jitted train step: donated state, shardings fixed, so it compiles once."""
    return jax.jit(
        functools.partial(train_step, graphdef=graphdef, opt=opt, config=config),
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, None),
        donate_argnums=(0,),
    )


def jit_eval_step(graphdef, config, params_sharding, model_state_sharding, batch_sharding):
    return jax.jit(
        functools.partial(eval_step, graphdef=graphdef, config=config),
        in_shardings=(params_sharding, model_state_sharding, batch_sharding),
    )
