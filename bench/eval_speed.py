"""Timing of mtl_jax.metrics on a realistic eval set (10M rows, 1M Zipf-ish users).

Usage:
    python bench/eval_speed.py [--rows 10000000] [--users 1000000] [--dtype float32] [--seed 0]

Scores default to float32, like the model's outputs; ``--dtype float64`` times the slower
path for scores that are not exactly representable in float32.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mtl_jax.metrics import auc, gauc, logloss, top_n_hit_rate


def make_data(rows: int, users: int, seed: int, dtype: str = "float32"):
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.04).astype(np.int8)
    # Scores rounded to 4 decimals so that there are many ties, as with low-precision outputs.
    scores = np.round(np.clip(rng.normal(0.03 + 0.05 * labels, 0.03), 1e-4, 1 - 1e-4), 4)
    scores = scores.astype(dtype)
    # Zipf-ish user activity, P(user of rank r) ~ r^-0.8: a few heavy users (the top one has
    # ~1% of rows) and a long tail with a handful of rows each.
    cdf = np.cumsum(np.arange(1, users + 1, dtype=np.float64) ** -0.8)
    user = np.searchsorted(cdf, rng.random(rows) * cdf[-1])
    user = rng.permutation(users)[user]  # so heavy users are not simply the smallest ids
    return labels, scores, user


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    labels, scores, user = make_data(args.rows, args.users, args.seed, args.dtype)
    print(
        f"rows={args.rows:,} dtype={args.dtype} users_seen={len(np.unique(user)):,} "
        f"pos_rate={labels.mean():.4f} distinct_scores={len(np.unique(scores)):,}"
    )

    ours, t_auc = timed(auc, labels, scores)
    print(f"auc              {t_auc:7.2f} s  value={ours:.6f}")
    value, t = timed(gauc, labels, scores, user)
    print(f"gauc             {t:7.2f} s  value={value:.6f}")
    value, t = timed(top_n_hit_rate, labels, scores, user, n=2)
    print(f"top_n_hit_rate@2 {t:7.2f} s  value={value:.6f}")
    value, t = timed(logloss, labels, scores)
    print(f"logloss          {t:7.2f} s  value={value:.6f}")

    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        print("sklearn not installed; skipping the comparison")
        return
    ref, t_sk = timed(roc_auc_score, labels, scores)
    print(f"sklearn roc_auc  {t_sk:7.2f} s  value={ref:.6f}  |diff|={abs(ref - ours):.2e}")
    print(f"AUC speed-up sklearn/ours: {t_sk / t_auc:.2f}x")


if __name__ == "__main__":
    main()
