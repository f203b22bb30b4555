"""Exact, vectorised evaluation metrics for click / order prediction (and regression tasks).

Everything here is plain numpy on float64 so that the numbers are exact (no binning, no
streaming approximation) and independent of the accelerator the model ran on. The functions
are written as a handful of sorts plus cumulative sums so that 10M rows evaluate in seconds;
there are no Python loops over rows, tie groups or users.

Conventions shared by every function:

* Inputs are 1-D arrays of equal length.
* ``labels`` are binary (0 or 1, any numeric or bool dtype), except in ``regression_metrics``.
* ``weights`` are optional non-negative sample weights (default: all ones). Rows with weight 0
  are removed before anything else happens, so they do not count at all: not in the class
  check, not in the tie groups, not in the group sizes, and their labels/scores are not
  validated (padding rows may carry garbage).
* Metrics that are undefined for the data (e.g. AUC with a single class) return ``nan``
  rather than raising, so that a periodic eval on a small shard never crashes training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_jax._sorting import run_starts, stable_argsort

__all__ = [
    "auc",
    "gauc",
    "logloss",
    "oracle_gap",
    "regression_metrics",
    "task_metrics",
    "top_n_hit_rate",
]


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _as_1d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _prepare(
    labels: Any,
    weights: Any | None,
    **others: Any,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """Validates inputs, drops weight-0 rows and casts labels to bool.

    Args:
        labels: Binary labels.
        weights: Optional non-negative sample weights.
        **others: Further per-row arrays (scores, groups, ...) filtered alongside.

    Returns:
        ``(labels_bool, weights_float64_or_None, others)`` with weight-0 rows removed.
        ``weights`` is returned as None when it was not given or every remaining weight is 1,
        so callers can take the cheaper unweighted path (integer counts instead of float sums).
    """
    y = _as_1d(labels, "labels")
    arrays = {k: _as_1d(v, k) for k, v in others.items()}
    for k, v in arrays.items():
        if v.shape[0] != y.shape[0]:
            raise ValueError(f"{k} has {v.shape[0]} rows but labels has {y.shape[0]}")
    w = None
    if weights is not None:
        y, w, arrays = _drop_zero_weights(y, weights, arrays)
    if y.dtype != np.bool_:
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("labels must be binary (0 or 1)")
        y = y != 0
    for k in ("scores", "probs", "p_true"):
        if k in arrays:
            arrays[k] = arrays[k].astype(np.float64, copy=False)
            if np.isnan(arrays[k]).any():
                # nan has no place in a ranking; sorting would silently push it to one end.
                raise ValueError(f"{k} contains nan")
    return y, w, arrays


def _drop_zero_weights(
    y: np.ndarray, weights: Any, arrays: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """Validates ``weights`` and removes weight-0 rows from ``y`` and ``arrays``.

    Returns ``(y, weights_float64_or_None, arrays)``: None when every remaining weight is 1.
    """
    w = _as_1d(weights, "weights").astype(np.float64, copy=False)
    if w.shape[0] != y.shape[0]:
        raise ValueError(f"weights has {w.shape[0]} rows but labels has {y.shape[0]}")
    if not np.all(w >= 0):  # also catches nan weights
        raise ValueError("weights must be non-negative and not nan")
    keep = w > 0
    if not keep.all():
        # Filter up front instead of relying on zero contributions, so that padding rows
        # with garbage labels / nan scores pass validation and never count as a row.
        y, w = y[keep], w[keep]
        arrays = {k: v[keep] for k, v in arrays.items()}
    if np.all(w == 1):
        # Typical for a 0/1 padding mask: take the faster exact unweighted paths.
        return y, None, arrays
    return y, w, arrays


def _tie_sums(
    y_sorted: np.ndarray, w_sorted: np.ndarray | None, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight of every run (tie group) of sorted rows, as float64.

    Unweighted sums are integer counts (exact in float64 up to 2**53 rows).
    """
    if w_sorted is None:
        # Counts from an integer cumsum: cheaper than reduceat over a float array.
        cum_pos = np.concatenate(([0], np.cumsum(y_sorted, dtype=np.int64)))
        ends = np.append(starts[1:], y_sorted.shape[0])
        tie_pos = cum_pos[ends] - cum_pos[starts]
        return tie_pos.astype(np.float64), (ends - starts - tie_pos).astype(np.float64)
    # Two separate sums (rather than total - positives) so that a single-class tie group gets
    # exactly 0 for the other class, never a rounding residue.
    tie_pos = np.add.reduceat(np.where(y_sorted, w_sorted, 0.0), starts)
    tie_neg = np.add.reduceat(np.where(y_sorted, 0.0, w_sorted), starts)
    return tie_pos, tie_neg


# --------------------------------------------------------------------------------------------
# Point metrics
# --------------------------------------------------------------------------------------------


def auc(labels: Any, scores: Any, weights: Any | None = None) -> float:
    """Exact (weighted) ROC AUC.

    Computed as the Mann-Whitney statistic: the weighted share of (positive, negative) pairs in
    which the positive has the higher score, with tied pairs counting 1/2. This equals the
    average-rank formulation and the trapezoidal area under the weighted ROC curve (what
    ``sklearn.metrics.roc_auc_score`` returns). Unweighted (or all-ones weights): a value sort
    per class plus binary searches. Weighted: one argsort plus cumulative sums over tie groups.

    Args:
        labels: Binary labels, shape ``[n]``.
        scores: Real-valued scores (higher means more likely positive), shape ``[n]``. Must not
            contain nan.
        weights: Optional non-negative sample weights, shape ``[n]``; weight-0 rows are ignored.

    Returns:
        The AUC in ``[0, 1]``, or ``nan`` when, after dropping weight-0 rows, only one class (or
        no row) is present, since AUC is undefined without both positives and negatives.
    """
    y, w, a = _prepare(labels, weights, scores=scores)
    s = a["scores"]
    if w is None:
        return _auc_unweighted(y, s)
    return _auc_weighted(y, s, w)


def _auc_unweighted(y: np.ndarray, s: np.ndarray) -> float:
    """Unweighted AUC from per-class value sorts; all counts are exact integers."""
    n_pos = int(np.count_nonzero(y))
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Without weights nothing needs to travel with the scores, so sort the two classes' values
    # instead of argsorting all rows: np.sort is SIMD-accelerated and ~5-10x faster than
    # np.argsort on 10M float64. Sorting the positives too makes the binary searches walk
    # monotonically (cache friendly).
    neg = np.sort(s[~y])
    pos = np.sort(s[y])
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    up_to = np.searchsorted(neg, pos, side="right")  # ... plus the tied ones
    # int64 sums are exact; doubling avoids the 1/2 until the final division.
    twice_numer = int(below.sum()) + int(up_to.sum())
    return twice_numer / (2 * n_pos * n_neg)


def _auc_weighted(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> float:
    """Weighted AUC: one sort, then cumulative sums over tie groups."""
    # All remaining weights are > 0, so class presence is decided by the labels alone.
    if y.all() or not y.any():
        return float("nan")
    total_pos = float(w[y].sum())
    total_neg = float(w[~y].sum())
    # Stability is not needed here (ties are aggregated) but stable_argsort is the fast path.
    order = stable_argsort(s)
    starts = run_starts(s[order])
    tie_pos, tie_neg = _tie_sums(y[order], w[order], starts)
    # Negatives strictly below each tie group (exclusive cumsum), plus half of the tied ones.
    neg_below = np.cumsum(tie_neg) - tie_neg
    numer = np.dot(tie_pos, neg_below + 0.5 * tie_neg)
    return float(numer / (total_pos * total_neg))


def logloss(labels: Any, probs: Any, weights: Any | None = None, eps: float = 1e-7) -> float:
    """(Weighted) mean binary cross-entropy.

    Args:
        labels: Binary labels, shape ``[n]``.
        probs: Predicted probabilities of the positive class, shape ``[n]``. Clipped to
            ``[eps, 1 - eps]`` so that a confidently wrong prediction gives a large but finite
            loss instead of inf.
        weights: Optional non-negative sample weights; weight-0 rows are ignored.
        eps: Clipping margin.

    Returns:
        ``sum_i w_i * -(y_i log p_i + (1 - y_i) log(1 - p_i)) / sum_i w_i``, or ``nan`` when no
        row has positive weight.
    """
    y, w, a = _prepare(labels, weights, probs=probs)
    if y.shape[0] == 0:
        return float("nan")
    p = np.clip(a["probs"], eps, 1.0 - eps)
    # Select the relevant log term instead of y*log(p) + (1-y)*log(1-p): same value, half the
    # logs, and no 0 * log(...) products.
    losses = -np.where(y, np.log(p), np.log1p(-p))
    if w is None:
        return float(losses.mean())
    return float(np.dot(losses, w) / w.sum())


def gauc(labels: Any, scores: Any, groups: Any, weights: Any | None = None) -> float:
    """Group AUC (e.g. per-user AUC), impression-weighted.

    AUC is computed within every group exactly as in :func:`auc` (ties count 1/2), then
    averaged over groups with weight = number of impressions of the group (sum of sample
    weights). Groups containing only one class are skipped because their AUC is undefined.

    Fully vectorised: rows are sorted by (group, score), tie groups are runs of equal
    (group, score), and per-group sums use ``np.bincount``; there is no loop over groups.

    Args:
        labels: Binary labels, shape ``[n]``.
        scores: Real-valued scores, shape ``[n]``; must not contain nan.
        groups: Group ids (any sortable dtype, e.g. user ids), shape ``[n]``.
        weights: Optional non-negative sample weights; weight-0 rows are ignored (they neither
            add impressions nor make a group two-class).

    Returns:
        The weighted mean of per-group AUCs, or ``nan`` if no group has both classes.
    """
    y, w, a = _prepare(labels, weights, scores=scores, groups=groups)
    s, g = a["scores"], a["groups"]
    if y.shape[0] == 0:
        return float("nan")
    # Sort by (group, score): sort by score, then *stably* by group so scores stay ascending
    # within each group. Same order as np.lexsort((s, g)), but much faster via stable_argsort.
    order = stable_argsort(s)
    g_by_score = g[order]
    perm = stable_argsort(g_by_score)
    order = order[perm]
    g_sorted = g_by_score[perm]
    tie_starts = run_starts(g_sorted, s[order])
    tie_pos, tie_neg = _tie_sums(y[order], None if w is None else w[order], tie_starts)
    # Group index of every tie group (0..n_groups-1), from group changes at tie starts.
    tie_g = g_sorted[tie_starts]
    new_group = np.ones(tie_g.shape[0], dtype=bool)
    new_group[1:] = tie_g[1:] != tie_g[:-1]
    group_of_tie = np.cumsum(new_group) - 1
    n_groups = int(group_of_tie[-1]) + 1
    # Segmented exclusive cumsum of negatives: global exclusive cumsum minus its value at the
    # first tie group of the same group. Values are integer counts when unweighted, so this is
    # exact in float64 up to 2**53 rows.
    cum_neg = np.cumsum(tie_neg) - tie_neg
    neg_below = cum_neg - cum_neg[np.flatnonzero(new_group)][group_of_tie]
    numer = np.bincount(
        group_of_tie, weights=tie_pos * (neg_below + 0.5 * tie_neg), minlength=n_groups
    )
    g_pos = np.bincount(group_of_tie, weights=tie_pos, minlength=n_groups)
    g_neg = np.bincount(group_of_tie, weights=tie_neg, minlength=n_groups)
    ok = (g_pos > 0) & (g_neg > 0)
    if not ok.any():
        return float("nan")
    g_auc = numer[ok] / (g_pos[ok] * g_neg[ok])
    impressions = g_pos[ok] + g_neg[ok]
    return float(np.dot(g_auc, impressions) / impressions.sum())


def top_n_hit_rate(labels: Any, scores: Any, groups: Any, n: int = 2) -> float:
    """Top-N hit rate per group (the paper's CLICK@N / ORDER@N).

    For each group (user) with at least ``n`` rows, take its ``n`` highest-scored rows and
    compute the share of them whose label is 1; return the mean of that share over qualifying
    groups, each group counting once. Groups with fewer than ``n`` rows are skipped.

    Ties in score are broken deterministically by row index: among equal scores the row that
    appears first in the input ranks higher.

    Args:
        labels: Binary labels, shape ``[rows]``.
        scores: Real-valued scores, shape ``[rows]``; must not contain nan.
        groups: Group ids (any sortable dtype), shape ``[rows]``.
        n: How many top rows per group to inspect; must be >= 1.

    Returns:
        The mean top-``n`` hit share over qualifying groups, or ``nan`` if no group has at
        least ``n`` rows.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    y, _, a = _prepare(labels, None, scores=scores, groups=groups)
    s, g = a["scores"], a["groups"]
    rows = y.shape[0]
    if rows == 0:
        return float("nan")
    # Sort by (group, -score, row index). Both sorts are stable: the first orders by -score
    # with equal scores left in row order (the documented tie break), the second groups rows
    # while preserving that order. Equivalent to np.lexsort((arange, -s, g)).
    order = stable_argsort(-s)
    g_by_score = g[order]
    perm = stable_argsort(g_by_score)
    order = order[perm]
    g_sorted = g_by_score[perm]
    starts = run_starts(g_sorted)
    sizes = np.diff(np.append(starts, rows))
    # Rank of each sorted row within its group: position minus the group's start position.
    rank = np.arange(rows) - np.repeat(starts, sizes)
    group_of_row = np.repeat(np.arange(starts.shape[0]), sizes)
    take = rank < n
    hits = np.bincount(group_of_row[take], weights=y[order][take], minlength=starts.shape[0])
    ok = sizes >= n
    if not ok.any():
        return float("nan")
    return float(np.mean(hits[ok] / n))


def oracle_gap(
    labels: Any, scores: Any, p_true: Any, weights: Any | None = None
) -> dict[str, float]:
    """Compares the model's AUC with the AUC of the true click probability.

    On synthetic data the generating probability ``p_true`` is known; its AUC is the best any
    model can achieve on these labels, so ``gap`` measures how much ranking quality is left.

    Args:
        labels: Binary labels, shape ``[n]``.
        scores: Model scores, shape ``[n]``.
        p_true: Ground-truth probabilities used to generate the labels, shape ``[n]``.
        weights: Optional non-negative sample weights; weight-0 rows are ignored.

    Returns:
        ``{"auc": auc(labels, scores), "oracle_auc": auc(labels, p_true),
        "gap": oracle_auc - auc}`` (all nan when only one class is present).
    """
    model_auc = auc(labels, scores, weights)
    oracle_auc = auc(labels, p_true, weights)
    return {"auc": model_auc, "oracle_auc": oracle_auc, "gap": oracle_auc - model_auc}


def task_metrics(
    labels: Any,
    probs: Any,
    *,
    users: Any | None = None,
    p_true: Any | None = None,
    weights: Any | None = None,
    top_n: int | None = 2,
    prefix: str = "",
) -> dict[str, float]:
    """All metrics for one task (e.g. click or order) as a flat dict of Python floats.

    Args:
        labels: Binary labels of the task, shape ``[n]``.
        probs: Predicted probabilities, shape ``[n]``.
        users: Optional user / group ids; enables ``gauc`` and the top-n hit rate.
        p_true: Optional ground-truth probabilities; enables ``oracle_auc`` / ``oracle_gap``.
        weights: Optional non-negative sample weights (e.g. a padding mask); weight-0 rows are
            ignored by every metric, including the unweighted top-n hit rate.
        top_n: N of the top-N hit rate (reported when ``users`` is given); None or 0 disables.
        prefix: Prepended to every key, e.g. ``"click/"``.

    Returns:
        Keys (each with ``prefix``): ``auc``, ``logloss``, ``pos_rate``, ``rows`` (number of
        rows with non-zero weight); with ``users``: ``gauc`` and ``top{N}_hit_rate``; with
        ``p_true``: ``oracle_auc`` and ``oracle_gap`` (``oracle_auc - auc``).
    """
    cols = {"labels": labels, "probs": probs, "users": users, "p_true": p_true}
    cols = {k: _as_1d(v, k) for k, v in cols.items() if v is not None}
    w = None
    if weights is not None:
        # Drop weight-0 rows once here: the top-n hit rate takes no weights, and the other
        # metrics then skip re-filtering.
        w = _as_1d(weights, "weights").astype(np.float64, copy=False)
        if w.shape[0] != cols["labels"].shape[0]:
            raise ValueError("weights and labels differ in length")
        keep = w > 0
        cols = {k: v[keep] for k, v in cols.items()}
        w = w[keep]
    y, p = cols["labels"], cols["probs"]
    out: dict[str, float] = {}
    out["auc"] = auc(y, p, w)
    out["logloss"] = logloss(y, p, w)
    if "users" in cols:
        out["gauc"] = gauc(y, p, cols["users"], w)
        if top_n:
            out[f"top{top_n}_hit_rate"] = top_n_hit_rate(y, p, cols["users"], top_n)
    if "p_true" in cols:
        gap = oracle_gap(y, p, cols["p_true"], w)
        out["oracle_auc"] = gap["oracle_auc"]
        out["oracle_gap"] = gap["gap"]
    y_float = y.astype(np.float64)
    if y.shape[0] == 0:
        out["pos_rate"] = float("nan")
    elif w is None:
        out["pos_rate"] = float(y_float.mean())
    else:
        out["pos_rate"] = float(np.dot(y_float, w) / w.sum())
    out["rows"] = float(y.shape[0])
    return {f"{prefix}{k}": float(v) for k, v in out.items()}


def regression_metrics(
    labels: Any,
    preds: Any,
    *,
    truth: Any | None = None,
    weights: Any | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """Metrics of one regression task as a flat dict of Python floats.

    Args:
        labels: Real-valued labels, shape ``[n]``.
        preds: Predicted values, shape ``[n]``.
        truth: Optional noise-free expected values (synthetic data): the best any model can
            predict, so ``oracle_mse`` is the noise floor of these labels.
        weights: Optional non-negative sample weights; weight-0 rows are ignored.
        prefix: Prepended to every key, e.g. ``"y1/"``.

    Returns:
        Keys (each with ``prefix``): ``mse``, ``rmse``, ``r2`` (1 − MSE / variance of the labels;
        nan for constant labels), ``label_mean``, ``rows``; with ``truth``: ``oracle_mse``
        (MSE of ``truth``) and ``oracle_gap`` (``mse − oracle_mse``: how far above the noise
        floor the model is). Everything is nan for zero rows.
    """
    y = _as_1d(labels, "labels").astype(np.float64)
    p = _as_1d(preds, "preds").astype(np.float64)
    if p.shape != y.shape:
        raise ValueError(f"preds {p.shape} and labels {y.shape} differ in length")
    w = np.ones_like(y) if weights is None else _as_1d(weights, "weights").astype(np.float64)
    if w.shape != y.shape:
        raise ValueError("weights and labels differ in length")
    keep = w > 0
    y, p, w = y[keep], p[keep], w[keep]
    t = None if truth is None else _as_1d(truth, "truth").astype(np.float64)[keep]
    out: dict[str, float] = {"rows": float(y.shape[0])}
    if y.shape[0] == 0:
        nan = float("nan")
        out.update(mse=nan, rmse=nan, r2=nan, label_mean=nan)
        if t is not None:
            out.update(oracle_mse=nan, oracle_gap=nan)
        return {f"{prefix}{k}": v for k, v in out.items()}
    wsum = w.sum()
    mse = float(np.dot(w, np.square(p - y)) / wsum)
    mean = float(np.dot(w, y) / wsum)
    var = float(np.dot(w, np.square(y - mean)) / wsum)
    out.update(mse=mse, rmse=float(np.sqrt(mse)), label_mean=mean)
    out["r2"] = 1.0 - mse / var if var > 0 else float("nan")
    if t is not None:
        oracle = float(np.dot(w, np.square(t - y)) / wsum)
        out.update(oracle_mse=oracle, oracle_gap=mse - oracle)
    return {f"{prefix}{k}": float(v) for k, v in out.items()}
