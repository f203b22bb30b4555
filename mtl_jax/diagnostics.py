"""Gate and expert diagnostics from the evaluation predictions' gates (MMoE, OMoE, CGC, PLE, ...).

``gate_diagnostics(gates)`` takes the per-row gate weights ``gates`` [N, T, E] (row, task, expert;
each row's weights sum to 1 over E) that ``evaluation.predict_split`` collects when a model returns
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

``evaluation.report`` adds these as ``gates/mean``, ``gates/entropy``, ``gates/entropy_norm``,
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
