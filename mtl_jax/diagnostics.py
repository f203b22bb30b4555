"""Run diagnostics: degenerate task outputs, and gate / expert statistics (MMoE, CGC, PLE, ...).

``degenerate_reasons(preds, labels, task_type)`` says why a task's evaluation predictions are
degenerate, or nothing when they are not (see ``CONSTANT_SPREAD`` for the threshold):

* non-finite predictions (NaN or inf);
* constant predictions: the spread of the predicted logit (binary) or value (regression, relative
  to the labels' spread) is below ``CONSTANT_SPREAD`` — a dead output (e.g. every unit of a ReLU
  tower inactive) predicts the same for every row;
* a binary task whose AUC is exactly 0.5 (ties everywhere, or no ranking information at all).

``eval_report.report`` adds ``t/degenerate`` (0/1) per task; the training loop warns, and writes
the reasons to ``final_metrics.json`` under ``flags``; ``ablate`` counts flagged runs per row and
leaves them out of every mean, spread and test.

``gate_diagnostics(gates)`` takes the per-row gate weights ``gates`` [N, T, E] (row, task, expert;
each row's weights sum to 1 over E) that ``eval_report.predict_split`` collects when a model returns
``gates``, and gives per task:

  mean          [T, E]  mean gate weight of each expert
  entropy       [T]     mean over rows of the gate's entropy −Σ_e g_e log g_e, in nats
  entropy_norm  [T]     entropy / log E, in [0, 1] (1 = uniform gate); nan when E = 1
  utilisation   [T, E]  share of rows whose largest gate weight is on each expert
  collapsed     [T]     1 when one expert's mean weight > ``threshold`` (default 0.9) or the
                        normalised entropy < ``min_entropy`` (default 0.1), else 0 (always 0 for
                        E = 1: one expert leaves nothing to choose)

The low-entropy criterion also flags gates that route each row hard to one expert but to different
experts for different rows; ``utilisation`` tells that case (spread) from a real collapse (one-hot).
For CGC/PLE the expert axis is the task's gate: its specific experts first, then the shared ones.

``eval_report.report`` adds these as ``gates/mean``, ``gates/entropy``, ``gates/entropy_norm``,
``gates/utilisation`` and ``gates/collapsed`` and warns (``GateCollapseWarning``) naming each
collapsed task and its dominant expert. They land in ``metrics.jsonl`` (one line per eval, split
``val`` / ``test``) as flat lists, row-major over [T, E]; to plot expert weights over training::

    rows = [r for r in mtl_jax.logs.read_metrics(workdir) if r["split"] == "val"]
    steps = [r["step"] for r in rows]
    mean = np.array([r["gates/mean"] for r in rows]).reshape(len(rows), T, -1)  # [steps, T, E]
    for e in range(mean.shape[-1]):
        plt.plot(steps, mean[:, 0, e], label=f"task 0, expert {e}")
    plt.plot(steps, [r["gates/entropy_norm"][0] for r in rows])  # task 0's normalised entropy
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

#: Predictions whose spread is below this are constant: for a binary task the standard deviation
#: of the logit log(p / (1 − p)) over the rows (a spread of 1e-3 in the logit changes no
#: probability by more than 0.1% of itself, so it carries no ranking information a model could have
#: learned); for a regression task the standard deviation of the predictions divided by that of
#: the labels (a model explaining any of the label variance has a ratio near √R² ≫ 1e-3).
CONSTANT_SPREAD = 1e-3


def degenerate_reasons(preds, labels, *, task_type: str = "binary", auc: float | None = None):
    """Why one task's predictions are degenerate (a list of sentences; empty when they are not).

    Args:
      preds: [n] probabilities (binary) or values (regression) of the task.
      labels: [n] its labels.
      task_type: ``binary`` or ``regression``.
      auc: the task's AUC when already computed (binary).
    """
    p = np.asarray(preds, dtype=np.float64)
    if p.size == 0:
        return []
    bad = int((~np.isfinite(p)).sum())
    if bad:
        return [f"{bad} of {p.size} predictions are NaN or inf"]
    reasons = []
    if task_type == "binary":
        q = np.clip(p, 1e-15, 1 - 1e-15)
        spread = float(np.std(np.log(q) - np.log1p(-q)))
        if spread < CONSTANT_SPREAD:
            reasons.append(
                f"constant predictions (std of the logit {spread:.2g} < {CONSTANT_SPREAD:g}; "
                f"every row ≈ {float(np.mean(p)):.4g})"
            )
        if auc is not None and auc == 0.5:
            reasons.append("AUC exactly 0.5")
    else:
        y = np.asarray(labels, dtype=np.float64)
        scale = float(np.std(y)) or 1.0
        spread = float(np.std(p)) / scale
        if spread < CONSTANT_SPREAD:
            reasons.append(
                f"constant predictions (std of the predictions / std of the labels {spread:.2g} "
                f"< {CONSTANT_SPREAD:g}; every row ≈ {float(np.mean(p)):.4g})"
            )
    return reasons


class GateCollapseWarning(UserWarning):
    """A task's gate puts (almost) all its weight on one expert."""


def gate_diagnostics(
    gates, *, threshold: float = 0.9, min_entropy: float = 0.1
) -> dict[str, np.ndarray]:
    """Per-task gate statistics of ``gates`` [N, T, E]; see the module docstring for the keys."""
    g = np.asarray(gates, dtype=np.float64)
    if g.ndim != 3:
        raise ValueError(f"gates must be [rows, tasks, experts], got shape {g.shape}")
    N, T, E = g.shape
    if N == 0:
        raise ValueError("gate_diagnostics needs at least one row of gates")
    mean = g.mean(axis=0)  # [T, E]
    plogp = np.where(g > 0, g * np.log(np.where(g > 0, g, 1.0)), 0.0)  # 0 · log 0 = 0
    entropy = -plogp.sum(axis=-1).mean(axis=0)  # [T]
    if E > 1:
        entropy_norm = entropy / np.log(E)
        collapsed = (mean.max(axis=-1) > threshold) | (entropy_norm < min_entropy)
    else:
        entropy_norm = np.full(T, np.nan)
        collapsed = np.zeros(T, bool)
    top = g.argmax(axis=-1)  # [N, T]
    utilisation = (top[..., None] == np.arange(E)).mean(axis=0)  # [T, E]
    return {
        "mean": mean,
        "entropy": entropy,
        "entropy_norm": entropy_norm,
        "utilisation": utilisation,
        "collapsed": collapsed.astype(np.int32),
    }


def warn_collapsed(stats: dict[str, np.ndarray], tasks: Sequence[str] | None = None) -> list[str]:
    """Warns once per collapsed task, naming the task and its dominant expert; returns messages."""
    messages = []
    for t in np.flatnonzero(stats["collapsed"]):
        name = tasks[t] if tasks is not None and len(tasks) == len(stats["collapsed"]) else t
        e = int(stats["mean"][t].argmax())
        msg = (
            f"gate collapse: task {name!r} gives expert {e} a mean gate weight of "
            f"{stats['mean'][t, e]:.3f} (normalised gate entropy {stats['entropy_norm'][t]:.3f}, "
            f"share of rows routed mostly to it {stats['utilisation'][t, e]:.3f})"
        )
        warnings.warn(msg, GateCollapseWarning, stacklevel=2)
        messages.append(msg)
    return messages
