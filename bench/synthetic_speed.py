"""Speed and oracle quality of the synthetic Ali-CCP generator.

    python bench/synthetic_speed.py [--rows 2000000] [--vocab-scale 1.0] [--repeats 3]

Prints the one-time latent-model build time, rows/s of ``generate`` (excluding the build; wall and
process CPU time, single BLAS thread), the realised rates and the oracle AUCs of ``p_true``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core; set before numpy loads
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """Rank AUC (ties averaged)."""
    y = y.astype(bool)
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    ss = s[order]
    # average ranks of ties
    starts = np.r_[0, np.flatnonzero(ss[1:] != ss[:-1]) + 1]
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    pos = y.sum()
    neg = len(y) - pos
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--vocab-scale", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
    from mtl_jax.data import synthetic

    cfg = synthetic.SyntheticConfig(
        seed=args.seed, num_train=args.rows, vocab_scale=args.vocab_scale
    )
    t = time.perf_counter()
    synthetic.latent_model(cfg)
    print(f"latent model build: {time.perf_counter() - t:.2f} s (one-time, cached per config)")

    data = None
    for r in range(args.repeats):
        data = None
        t, c = time.perf_counter(), time.process_time()
        data = synthetic.generate(cfg, "train")
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        print(
            f"generate {args.rows:,} rows (run {r + 1}): {wall:.2f} s wall, "
            f"{args.rows / wall / 1e6:.2f} M rows/s wall, {args.rows / cpu / 1e6:.2f} M rows/s CPU"
        )

    y, p = data["labels"], data["p_true"]
    clicked = y[:, 0] == 1
    print(
        f"click rate {y[:, 0].mean():.4f} (target {cfg.click_rate}), "
        f"order rate {y[:, 1].mean():.5f}, cvr {y[clicked, 1].mean():.4f} (target {cfg.cvr})"
    )
    print(f"oracle AUC click       {auc(y[:, 0], p[:, 0]):.4f}")
    print(f"oracle AUC order       {auc(y[:, 1], p[:, 1]):.4f}  (p_click * p_cvr, all rows)")
    print(f"oracle AUC cvr | click {auc(y[clicked, 1], p[clicked, 1] / p[clicked, 0]):.4f}")
    alt = dataclasses.replace(cfg, click_rate=0.039, cvr=0.0054)
    yb = synthetic.LatentModel(dataclasses.replace(alt, num_train=0)).sample(
        min(args.rows, 1_000_000), np.random.default_rng(1)
    )
    cb = yb["labels"][:, 0] == 1
    print(
        f"at Ali-CCP rates (0.039 / 0.0054): oracle AUC click "
        f"{auc(yb['labels'][:, 0], yb['p_true'][:, 0]):.4f}, cvr | click "
        f"{auc(yb['labels'][cb, 1], yb['p_true'][cb, 1] / yb['p_true'][cb, 0]):.4f} "
        f"({int(yb['labels'][:, 1].sum())} orders in {len(cb):,} rows)"
    )


if __name__ == "__main__":
    main()
