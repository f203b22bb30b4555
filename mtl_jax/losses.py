"""Per-task losses, label weights, the click→order cascade, loss weights and the ranking score.

Task 0 is the click task and the last task the order task when ``cascade`` is used. The order
label can be learned three ways (``config.loss.cascade``):

* ``none``    every task is an independent BCE over all impressions. For click/order data the order
              head then predicts P(order) over impressions, i.e. the CTCVR label.
* ``masked``  the order head predicts P(order | click) and is trained on clicked rows only; over
              impressions the order probability is p_click · p_cvr.
* ``product`` ESMM: the order head predicts P(order | click) but is trained through
              p_ctcvr = p_click · p_cvr on all impressions (no selection bias, no masking).

A ``regression`` task (``schema.task_types``) is trained with the squared error of its raw output
(no sigmoid) and predicts that output; label weights do not apply to it (its rows weigh 1) and no
cascade may involve it.

Label weights ``(positive, negative)`` per task weight each row's BCE (the paper's "label weight");
loss weights per task weight the task means (paper: click 1 : order 0.02); export weights per task
make the ranking score Σ_k w_k p_k used by CLICK@N / ORDER@N (paper: 0.8 : 0.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

CASCADES = ("none", "masked", "product")


def _log1mexp(x: jax.Array) -> jax.Array:
    """log(1 − exp(x)) for x ≤ 0, accurate on both ends."""
    x = jnp.minimum(x, -1e-7)
    return jnp.where(x > -0.6931, jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


def bce_from_log_probs(log_p: jax.Array, log_1mp: jax.Array, labels: jax.Array) -> jax.Array:
    return -(labels * log_p + (1.0 - labels) * log_1mp)


def log_probs(logits: jax.Array, cascade: str) -> tuple[jax.Array, jax.Array]:
    """log p and log(1 − p) of each task's training target, [B, T] each.

    Under ``product`` the last task's target is p_click · p_cvr (ESMM's CTCVR).
    """
    logits = logits.astype(jnp.float32)
    lp, l1mp = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    if cascade == "product":
        ctcvr = lp[:, 0] + lp[:, -1]
        lp = lp.at[:, -1].set(ctcvr)
        l1mp = l1mp.at[:, -1].set(_log1mexp(ctcvr))
    return lp, l1mp


def task_losses(
    logits: jax.Array,
    labels: jax.Array,
    *,
    cascade: str,
    label_weights: Sequence[Sequence[float]],
    valid: jax.Array | None = None,
    regression: Sequence[bool] | None = None,
) -> jax.Array:
    """Mean weighted BCE (binary tasks) or mean squared error (regression tasks) of each task, [T].

    Args:
      logits: [B, T] model outputs: logits of binary tasks, values of regression tasks.
      labels: [B, T] labels: 0/1 for binary tasks (the order label is the impression-level order
        label), real values for regression tasks.
      cascade: one of ``CASCADES``.
      label_weights: per task ``(positive weight, negative weight)``; binary tasks only.
      valid: [B] 1 for real rows, 0 for padding.
      regression: per task, True for a regression task; None = every task is binary.
    """
    if cascade not in CASCADES:
        raise ValueError(f"config.loss.cascade must be one of {CASCADES}, got {cascade!r}")
    labels = labels.astype(jnp.float32)
    lp, l1mp = log_probs(logits, cascade)
    per_row = bce_from_log_probs(lp, l1mp, labels)  # [B, T]
    lw = jnp.asarray(label_weights, jnp.float32)  # [T, 2]
    w = labels * lw[:, 0] + (1.0 - labels) * lw[:, 1]  # [B, T]
    if regression is not None and any(regression):
        reg = jnp.asarray(tuple(regression), bool)  # [T]
        per_row = jnp.where(reg, jnp.square(logits.astype(jnp.float32) - labels), per_row)
        w = jnp.where(reg, 1.0, w)
    if valid is not None:
        w = w * valid[:, None].astype(jnp.float32)
    if cascade == "masked":
        w = w.at[:, -1].multiply(labels[:, 0])  # order learned on clicked rows only
    return (per_row * w).sum(axis=0) / jnp.maximum(w.sum(axis=0), 1e-9)


def predict(
    logits: jax.Array, cascade: str, regression: Sequence[bool] | None = None
) -> dict[str, jax.Array]:
    """Probabilities in impression space (values for regression tasks).

    Returns ``probs`` [B, T]: P(task) over impressions for every binary task (the order column is
    P(click and order) when a cascade is used) and the predicted value of every regression task,
    and under a cascade also ``cvr`` [B]: P(order | click), to be evaluated on clicked rows.
    """
    logits = logits.astype(jnp.float32)
    p = jax.nn.sigmoid(logits)
    if regression is not None and any(regression):
        p = jnp.where(jnp.asarray(tuple(regression), bool), logits, p)
    out = {}
    if cascade in ("masked", "product"):
        out["cvr"] = p[:, -1]
        p = p.at[:, -1].set(p[:, 0] * p[:, -1])
    out["probs"] = p
    return out


def ranking_score(probs: jax.Array, export_weights: Sequence[float]) -> jax.Array:
    """Σ_k w_k p_k, [B]: the score that ranks a user's items for CLICK@N / ORDER@N."""
    return probs @ jnp.asarray(export_weights, probs.dtype)


def weighted_total(losses: jax.Array, loss_weights: Sequence[float]) -> jax.Array:
    """Static task weighting: Σ_k λ_k L_k."""
    return jnp.dot(losses, jnp.asarray(loss_weights, losses.dtype))
