"""A split's evaluation report: every row's predictions, gathered from all processes, then metrics.

Training's periodic and final evaluation (``loop.py``) and the ``mtl_jax.evaluate`` command (a
restored checkpoint) both report through here; ``mtl_jax.predict`` uses ``predict_split`` alone.

Reported keys (``t`` is each task name, e.g. click / order; ``N`` is ``config.metrics.top_n``):

  t/auc, t/logloss, t/gauc, t/pos_rate, t/rows   binary tasks: P(task) over all impressions. Under a
                                                 cascade the order column is P(click and order).
  t/oracle_auc, t/oracle_gap                     with the truth known (synthetic data)
  t/mse, t/rmse, t/r2, t/label_mean, t/rows      regression tasks
  t/oracle_mse, t/oracle_gap                     regression with the noise-free values known:
                                                 MSE of the truth, and mse − oracle_mse
  t/degenerate                                   1 when the task's predictions are degenerate
                                                 (diagnostics.degenerate_reasons), else 0
  cvr/auc, cvr/logloss, ...                      under a cascade: P(order | click) on clicked rows
  t@N                                            CLICK@N / ORDER@N (binary tasks): per user, the
                                                 share of the top-N rows by ranking score
                                                 Σ_k w_k p_k with label t
  loss                                           Σ_k λ_k · logloss_k (mse_k for regression tasks;
                                                 the paper's Loss column)
  gates/mean, gates/utilisation                  [T, E] mean gate weight of each expert per task,
                                                 and the share of rows whose top gate is it
  gates/entropy, gates/entropy_norm              [T] mean gate entropy (nats, and / log E)
  gates/collapsed                                [T] 1 when a task's gate collapsed onto one
                                                 expert (a diagnostics.GateCollapseWarning is
                                                 issued naming the task and expert)
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from mtl_jax import diagnostics, metrics
from mtl_jax.data import loading, pipeline
from mtl_jax.sharding import to_global


def predict_split(
    eval_fn, params, model_state, columns, *, batch_size: int, mesh, bar=None
) -> dict:
    """Runs ``eval_fn`` over every row of ``columns``; returns host arrays for all rows, in order.

    Host-side keys (labels, user, p_true) never travel to the device. ``bar`` (a progress bar)
    advances by one per batch.
    """
    pi, pc = jax.process_index(), jax.process_count()
    parts: dict[str, list] = {}
    for batch in pipeline.eval_batches(
        columns, batch_size=batch_size, process_index=pi, process_count=pc
    ):
        pred = eval_fn(params, model_state, to_global(loading.model_inputs(batch), mesh))
        # Each process keeps the rows it fed; a global array's local shards are exactly those.
        local = {k: _local_rows(v) for k, v in pred.items()}
        for k in ("labels", "user", "p_true", "valid"):
            if k in batch:
                local[k] = batch[k]
        for k, v in local.items():
            parts.setdefault(k, []).append(v)
        if bar is not None:
            bar.update(1)
    host = {k: np.concatenate(v) for k, v in parts.items()}
    if pc > 1:
        host = {
            k: np.asarray(multihost_utils.process_allgather(v, tiled=True)) for k, v in host.items()
        }
    keep = host.pop("valid") > 0
    return {k: v[keep] for k, v in host.items()}


def evaluate_split(
    eval_step, params, model_state, columns, *, config, schema, mesh
) -> tuple[dict, dict[str, float]]:
    """Every row of ``columns`` predicted, then reported as ``config`` and ``schema`` say.

    The one evaluation of the training loop and of ``mtl_jax.evaluate``. Returns
    ``(pred, metrics)``: ``predict_split``'s output and ``report``'s.
    """
    pred = predict_split(
        eval_step, params, model_state, columns, batch_size=config.eval_batch_size, mesh=mesh
    )
    return pred, report(
        pred,
        tasks=schema.tasks,
        task_types=schema.task_types,
        cascade=config.loss.cascade,
        loss_weights=list(config.loss.loss_weights),
        top_n=config.metrics.top_n,
    )


def _local_rows(x) -> np.ndarray:
    """This process's rows of a batch-sharded global array, in row order."""
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    seen, out = set(), []
    for s in shards:
        start = s.index[0].start or 0
        if start in seen:  # replicas of the same rows on other devices
            continue
        seen.add(start)
        out.append(np.asarray(s.data))
    return np.concatenate(out)


def degenerate_tasks(pred: dict, *, tasks, task_types=None) -> dict[str, list[str]]:
    """Task name → why its predictions are degenerate, for the degenerate tasks only."""
    task_types = task_types or ("binary",) * len(tasks)
    out = {}
    for k, (t, kind) in enumerate(zip(tasks, task_types)):
        y, p = pred["labels"][:, k], pred["probs"][:, k]
        auc = metrics.auc(y, p) if kind == "binary" and np.isfinite(p).all() else None
        reasons = diagnostics.degenerate_reasons(p, y, task_type=kind, auc=auc)
        if reasons:
            out[t] = reasons
    return out


def report(
    pred: dict, *, tasks, cascade: str, loss_weights, top_n: int, task_types=None
) -> dict[str, float]:
    """Metrics of one split from ``predict_split``'s output.

    ``task_types`` (``schema.task_types``; default all binary) chooses each task's metrics.

    With ``gates`` in ``pred`` it adds the gate diagnostics of ``mtl_jax.diagnostics``:
    ``gates/mean`` [T, E], ``gates/entropy`` [T] (nats), ``gates/entropy_norm`` [T],
    ``gates/utilisation`` [T, E] and ``gates/collapsed`` [T] (0/1), and warns
    (``diagnostics.GateCollapseWarning``) for each collapsed task.
    """
    labels, probs = pred["labels"], pred["probs"]
    users, p_true = pred.get("user"), pred.get("p_true")
    task_types = task_types or ("binary",) * len(tasks)
    out: dict = {}
    total = 0.0
    for k, t in enumerate(tasks):
        if task_types[k] == "regression":
            m = metrics.regression_metrics(
                labels[:, k],
                probs[:, k],
                truth=None if p_true is None else p_true[:, k],
                prefix=f"{t}/",
            )
            out.update(m)
            total += loss_weights[k] * m[f"{t}/mse"]
            reasons = diagnostics.degenerate_reasons(
                probs[:, k], labels[:, k], task_type="regression"
            )
            out[f"{t}/degenerate"] = float(bool(reasons))
            continue
        m = metrics.task_metrics(
            labels[:, k],
            probs[:, k],
            users=users,
            p_true=None if p_true is None else p_true[:, k],
            top_n=None,  # CLICK@N / ORDER@N rank by the export-weighted score, below
            prefix=f"{t}/",
        )
        out.update(m)
        total += loss_weights[k] * m[f"{t}/logloss"]
        reasons = diagnostics.degenerate_reasons(
            probs[:, k], labels[:, k], task_type="binary", auc=m[f"{t}/auc"]
        )
        out[f"{t}/degenerate"] = float(bool(reasons))
        if users is not None:
            out[f"{t}@{top_n}"] = metrics.top_n_hit_rate(
                labels[:, k], pred["score"], users, n=top_n
            )
    out["loss"] = total
    if cascade in ("masked", "product") and "cvr" in pred:
        clicked = labels[:, 0] > 0
        p_cvr_true = None
        if p_true is not None:
            p_cvr_true = p_true[clicked, -1] / np.maximum(p_true[clicked, 0], 1e-12)
        out.update(
            metrics.task_metrics(
                labels[clicked, -1],
                pred["cvr"][clicked],
                users=None if users is None else users[clicked],
                p_true=p_cvr_true,
                top_n=None,
                prefix="cvr/",
            )
        )
    if "gates" in pred:
        stats = diagnostics.gate_diagnostics(pred["gates"])  # gates: [N, T, E]
        out.update({f"gates/{k}": v for k, v in stats.items()})
        diagnostics.warn_collapsed(stats, tasks)
    return out
