"""Tests for mtl_jax.metrics against sklearn and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from mtl_jax.metrics import (
    auc,
    gauc,
    logloss,
    oracle_gap,
    task_metrics,
    top_n_hit_rate,
)

# --------------------------------------------------------------------------------------------
# Brute-force references
# --------------------------------------------------------------------------------------------


def pairwise_auc(labels, scores, weights=None):
    """O(n^2) Mann-Whitney AUC with ties counted 1/2."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    num = den = 0.0
    for i in range(len(labels)):
        if labels[i] != 1:
            continue
        for j in range(len(labels)):
            if labels[j] != 0:
                continue
            pair_w = w[i] * w[j]
            den += pair_w
            if scores[i] > scores[j]:
                num += pair_w
            elif scores[i] == scores[j]:
                num += 0.5 * pair_w
    return num / den if den > 0 else float("nan")


def loop_gauc(labels, scores, groups, weights=None):
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = w > 0
    labels, scores, groups, w = labels[keep], scores[keep], groups[keep], w[keep]
    total = norm = 0.0
    for g in np.unique(groups):
        m = groups == g
        if len(np.unique(labels[m])) < 2:
            continue
        total += w[m].sum() * roc_auc_score(labels[m], scores[m], sample_weight=w[m])
        norm += w[m].sum()
    return total / norm if norm > 0 else float("nan")


def loop_top_n(labels, scores, groups, n):
    shares = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) < n:
            continue
        # Python's sort is stable: equal scores keep row order, i.e. lower row index first.
        top = sorted(idx, key=lambda i: -scores[i])[:n]
        shares.append(np.mean(labels[top]))
    return float(np.mean(shares)) if shares else float("nan")


def tied_data(rng, n, pos_rate=0.3):
    labels = (rng.random(n) < pos_rate).astype(np.int64)
    # Scores correlated with labels and rounded to 1 decimal: lots of ties, across classes.
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * labels, 0.25), 0, 1), 1)
    return labels, scores


# --------------------------------------------------------------------------------------------
# auc
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels, scores = tied_data(rng, 20_000)
    assert len(np.unique(scores)) <= 11
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_matches_sklearn_weighted(seed):
    rng = np.random.default_rng(seed)
    labels, scores = tied_data(rng, 20_000)
    weights = rng.exponential(size=labels.shape[0])
    weights[rng.random(labels.shape[0]) < 0.1] = 0.0
    expected = roc_auc_score(labels, scores, sample_weight=weights)
    assert auc(labels, scores, weights) == pytest.approx(expected, abs=1e-12)
    # Weighting must actually change the answer, otherwise the test above proves little.
    assert abs(auc(labels, scores) - expected) > 1e-6


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 5, n).astype(np.float64)  # heavy ties
    weights = rng.integers(0, 4, n).astype(np.float64)
    weights[:2] = 1.0
    assert auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)
    assert auc(labels, scores, weights) == pytest.approx(
        pairwise_auc(labels, scores, weights), abs=1e-12
    )


def test_auc_known_values():
    assert auc([0, 1], [0.1, 0.9]) == 1.0
    assert auc([0, 1], [0.9, 0.1]) == 0.0
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    # 2 pos x 2 neg = 4 pairs: (0.8>0.2) 1, (0.8>0.5) 1, (0.5=0.5) 1/2, (0.5>0.2) 1 -> 3.5/4.
    assert auc([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.2]) == 0.875


def test_auc_nan_with_one_class():
    assert math.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(auc([0, 0], [0.1, 0.2]))
    assert math.isnan(auc([], []))
    # The only negative has weight 0, so effectively one class.
    assert math.isnan(auc([1, 0, 1], [0.1, 0.2, 0.3], weights=[1, 0, 1]))


def test_auc_weight_zero_rows_do_not_count():
    labels = np.array([1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    weights = np.array([1, 1, 0, 1, 1])
    keep = weights > 0
    assert auc(labels, scores, weights) == auc(labels[keep], scores[keep])
    # Garbage labels / nan scores in padded rows are ignored too.
    labels_pad = np.append(labels, -1)
    scores_pad = np.append(scores, np.nan)
    assert auc(labels_pad, scores_pad, np.append(weights, 0)) == auc(labels[keep], scores[keep])


def test_auc_rejects_bad_input():
    with pytest.raises(ValueError, match="binary"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="nan"):
        auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="non-negative"):
        auc([0, 1], [0.1, 0.2], weights=[1, -1])


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 1), st.integers(-20, 20)), min_size=2, max_size=80),
)
def test_auc_properties(data):
    labels = np.array([d[0] for d in data])
    scores = np.array([d[1] for d in data], dtype=np.float64) / 4.0
    if labels.min() == labels.max():
        assert math.isnan(auc(labels, scores))
        return
    a = auc(labels, scores)
    assert 0.0 <= a <= 1.0
    assert a == pytest.approx(1.0 - auc(labels, -scores), abs=1e-12)
    # Strictly increasing transforms keep the order and the ties, hence the AUC.
    assert auc(labels, np.exp(scores) * 3.0 + 7.0) == pytest.approx(a, abs=1e-12)
    assert auc(labels, scores**3 + scores) == pytest.approx(a, abs=1e-12)


# --------------------------------------------------------------------------------------------
# logloss
# --------------------------------------------------------------------------------------------


def test_logloss_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    probs = rng.uniform(0.01, 0.99, 5000)
    weights = rng.exponential(size=5000)
    assert logloss(labels, probs) == pytest.approx(log_loss(labels, probs), rel=1e-12)
    assert logloss(labels, probs, weights) == pytest.approx(
        log_loss(labels, probs, sample_weight=weights), rel=1e-12
    )


def test_logloss_clips_and_ignores_zero_weight():
    # A confidently wrong prediction gives -log(eps), not inf.
    assert logloss([1], [0.0], eps=1e-7) == pytest.approx(-math.log(1e-7))
    assert logloss([0], [1.0], eps=1e-7) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert logloss([1, 0], [0.8, 0.0], weights=[1, 0]) == pytest.approx(-math.log(0.8))
    assert math.isnan(logloss([], []))


# --------------------------------------------------------------------------------------------
# gauc
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gauc_matches_loop(seed):
    rng = np.random.default_rng(seed)
    n = 4000
    labels, scores = tied_data(rng, n)
    groups = rng.integers(0, 300, n)
    groups[:5] = 10_000  # a single-class group, must be skipped
    labels[:5] = 1
    expected = loop_gauc(labels, scores, groups)
    assert gauc(labels, scores, groups) == pytest.approx(expected, abs=1e-12)


def test_gauc_weighted_and_zero_weight_rows_ignored():
    rng = np.random.default_rng(3)
    n = 3000
    labels, scores = tied_data(rng, n)
    groups = rng.integers(0, 200, n)
    weights = rng.integers(0, 3, n).astype(np.float64)
    expected = loop_gauc(labels, scores, groups, weights)
    assert gauc(labels, scores, groups, weights) == pytest.approx(expected, abs=1e-12)

    # Weight-0 rows behave exactly as if they were absent, even with garbage contents.
    keep = weights > 0
    ones = np.ones(int(keep.sum()))
    pad_labels = np.where(keep, labels, -5)
    pad_scores = np.where(keep, scores, np.nan)
    assert gauc(pad_labels, pad_scores, groups, keep.astype(float)) == pytest.approx(
        gauc(labels[keep], scores[keep], groups[keep], ones), abs=1e-12
    )


def test_gauc_known_value_and_string_groups():
    labels = np.array([1, 0, 1, 0, 0, 1, 1])
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.5, 0.4, 0.3])
    groups = np.array(["a", "a", "b", "b", "b", "c", "c"])
    # a: AUC 1 with 2 impressions; b: 1 pos below 2 neg -> 0, 3 impressions; c: one class.
    assert gauc(labels, scores, groups) == pytest.approx((1.0 * 2 + 0.0 * 3) / 5)


def test_gauc_nan_when_no_group_qualifies():
    assert math.isnan(gauc([1, 0, 1], [0.1, 0.2, 0.3], [0, 1, 2]))
    assert math.isnan(gauc([], [], []))


# --------------------------------------------------------------------------------------------
# top_n_hit_rate
# --------------------------------------------------------------------------------------------


def test_top_n_known_answer():
    # u1: 3 rows, top-2 are rows 0 and 2 -> labels 1, 0 -> 0.5
    # u2: 2 rows, both clicked -> 1.0
    # u3: 1 row -> skipped
    labels = np.array([1, 1, 0, 1, 1, 0])
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.4, 0.99])
    groups = np.array([1, 1, 1, 2, 2, 3])
    assert top_n_hit_rate(labels, scores, groups, n=2) == pytest.approx(0.75)
    # n=1: u1 -> 1, u2 -> 1, u3 -> 0
    assert top_n_hit_rate(labels, scores, groups, n=1) == pytest.approx(2 / 3)
    assert math.isnan(top_n_hit_rate(labels, scores, groups, n=4))


def test_top_n_tie_break_by_row_index():
    # All scores tied: the top-1 must be the lowest row index of each group.
    labels = np.array([0, 1, 1, 1, 0])
    scores = np.zeros(5)
    groups = np.array([7, 7, 7, 3, 3])
    # group 7 -> row 0 (label 0); group 3 -> row 3 (label 1)
    assert top_n_hit_rate(labels, scores, groups, n=1) == pytest.approx(0.5)
    # Reversing the rows reverses which row comes first: group 7 -> label 1, group 3 -> 0.
    assert top_n_hit_rate(labels[::-1], scores, groups[::-1], n=1) == pytest.approx(0.5)
    labels2 = np.array([0, 1, 1, 1, 1])
    assert top_n_hit_rate(labels2, scores, groups, n=1) == pytest.approx(0.5)
    assert top_n_hit_rate(labels2[::-1], scores, groups[::-1], n=1) == pytest.approx(1.0)
    # Partial tie: a higher score still wins over row order.
    assert top_n_hit_rate([0, 0, 1], [0.5, 0.5, 0.6], [0, 0, 0], n=1) == 1.0
    assert top_n_hit_rate([0, 1, 0], [0.5, 0.5, 0.1], [0, 0, 0], n=1) == 0.0


@pytest.mark.parametrize("seed,n", [(0, 1), (1, 2), (2, 3), (3, 5)])
def test_top_n_matches_loop(seed, n):
    rng = np.random.default_rng(seed)
    rows = 3000
    labels, scores = tied_data(rng, rows)
    groups = rng.integers(0, 500, rows)
    expected = loop_top_n(labels, scores, groups, n)
    assert top_n_hit_rate(labels, scores, groups, n=n) == pytest.approx(expected, abs=1e-12)


def test_top_n_rejects_bad_n():
    with pytest.raises(ValueError):
        top_n_hit_rate([1], [0.5], [0], n=0)


# --------------------------------------------------------------------------------------------
# oracle_gap and task_metrics
# --------------------------------------------------------------------------------------------


def test_oracle_gap_known_answer():
    labels = np.array([0, 0, 1, 1, 0, 1])
    p_true = np.array([0.1, 0.2, 0.7, 0.8, 0.3, 0.9])  # orders labels perfectly
    scores = np.array([0.1, 0.9, 0.7, 0.8, 0.3, 0.2])
    out = oracle_gap(labels, scores, p_true)
    assert out["oracle_auc"] == 1.0
    assert out["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert out["gap"] == pytest.approx(1.0 - out["auc"])
    assert out["gap"] > 0


def test_task_metrics_keys_and_values():
    rng = np.random.default_rng(0)
    n = 2000
    labels, probs = tied_data(rng, n)
    probs = np.clip(probs, 0.05, 0.95)
    users = rng.integers(0, 100, n)
    p_true = np.clip(probs + rng.normal(0, 0.05, n), 0, 1)
    weights = (rng.random(n) < 0.9).astype(np.float64)
    out = task_metrics(
        labels, probs, users=users, p_true=p_true, weights=weights, top_n=2, prefix="click/"
    )
    assert set(out) == {
        "click/auc",
        "click/logloss",
        "click/gauc",
        "click/top2_hit_rate",
        "click/oracle_auc",
        "click/oracle_gap",
        "click/pos_rate",
        "click/rows",
    }
    assert all(type(v) is float for v in out.values())
    keep = weights > 0
    y, p, u = labels[keep], probs[keep], users[keep]
    assert out["click/auc"] == pytest.approx(roc_auc_score(y, p))
    assert out["click/logloss"] == pytest.approx(log_loss(y, p))
    assert out["click/gauc"] == pytest.approx(loop_gauc(y, p, u))
    assert out["click/top2_hit_rate"] == pytest.approx(loop_top_n(y, p, u, 2))
    assert out["click/oracle_gap"] == pytest.approx(
        roc_auc_score(y, p_true[keep]) - roc_auc_score(y, p)
    )
    assert out["click/pos_rate"] == pytest.approx(y.mean())
    assert out["click/rows"] == keep.sum()

    minimal = task_metrics(labels, probs)
    assert set(minimal) == {"auc", "logloss", "pos_rate", "rows"}
    assert minimal["rows"] == n


def test_auc_weighted_and_unweighted_paths_agree():
    # Uniform weights != 1 take the argsort / tie-group path, none the per-class-sort path.
    rng = np.random.default_rng(7)
    labels, scores = tied_data(rng, 10_000)
    assert auc(labels, scores, np.full(labels.shape[0], 2.5)) == pytest.approx(
        auc(labels, scores), abs=1e-12
    )


@pytest.mark.parametrize("score_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("id_kind", ["small", "huge", "str"])
def test_group_metrics_across_dtypes(score_dtype, id_kind):
    # Exercise both the packed-sort fast path and the argsort fallback of gauc / top-n.
    rng = np.random.default_rng(11)
    n = 2000
    labels, scores = tied_data(rng, n)
    scores = (scores - 0.35).astype(score_dtype)  # negative and -0.0-free float32 values
    ids = rng.integers(0, 150, n)
    groups = {"small": ids, "huge": ids * 2**40 - 2**62, "str": ids.astype(str)}[id_kind]
    assert gauc(labels, scores, groups) == pytest.approx(
        loop_gauc(labels, scores, groups), abs=1e-12
    )
    assert top_n_hit_rate(labels, scores, groups, n=2) == pytest.approx(
        loop_top_n(labels, scores, groups, 2), abs=1e-12
    )
