"""Which dense scaling should the readers use by default? Measured, not guessed.

    python bench/dense_scaling.py [--seeds 6] [--out runs/dense_scaling]

Two datasets read through the real reader path (``config.data.dense_scaling``):

* the MMoE paper's task-relatedness data (binary labels, correlation 0.5) written as a CSV with
  100 dense columns and no categorical one, trained with ``configs/relatedness.py``'s MMoE and
  Shared-Bottom (ReLU experts and towers of 16 / 8 units);
* census-income (``configs/census.py``'s MMoE; its numeric columns are the dense ones).

For each scaling (``minmax``, ``standard``) and seed it trains one run and prints, per dataset
and model, the mean test AUC over the unflagged runs and how many runs were flagged as degenerate
(a task whose predictions are constant: a dead ReLU tower). Same seeds, same data, paired.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import census as census_config  # noqa: E402
from configs import relatedness as rel_config  # noqa: E402
from mtl_jax import ablate, loop  # noqa: E402
from mtl_jax.data import loading, relatedness  # noqa: E402

SCALINGS = ("minmax", "standard")


def write_relatedness_csv(seed: int, directory: str) -> dict:
    """The relatedness data of ``seed`` (binary, p = 0.5) as train/val/test CSV files."""
    cfg = loading.relatedness_config(rel_config.get_config(f"binary,seed={seed}").data)
    os.makedirs(directory, exist_ok=True)
    names = [f"x{i}" for i in range(cfg.input_dim)]
    for split in ("train", "val", "test"):
        d = relatedness.generate(cfg, split)
        with open(os.path.join(directory, f"{split}.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*names, "y1", "y2"])
            for x, y in zip(d["dense"], d["labels"]):
                w.writerow([*(f"{v:.6g}" for v in x), int(y[0]), int(y[1])])
    return dict(
        kind="csv",
        path=directory,
        label_columns=("y1", "y2"),
        task_types=("binary", "binary"),
        categorical_columns=(),
        dense_columns=tuple(names),
    )


def run(config, workdir: str) -> dict:
    path = os.path.join(workdir, "final_metrics.json")
    if not os.path.exists(path):
        loop.train_and_evaluate(config, workdir)
    with open(path) as f:
        return json.load(f)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--out", default="runs/dense_scaling")
    args = ap.parse_args(argv)
    os.environ.setdefault("MTL_JAX_NO_PROGRESS", "1")
    rows = []
    for seed in range(args.seeds):
        data = write_relatedness_csv(seed, os.path.join(args.out, "data", f"seed{seed}"))
        for scaling in SCALINGS:
            for model in ("mmoe", "shared_bottom"):
                c = rel_config.get_config(f"binary,seed={seed},model={model}")
                c.data = type(c.data)(dict(data, dense_scaling=scaling, seed=seed))
                c.checkpoint_every_steps = 10**6
                wd = os.path.join(args.out, "relatedness", model, scaling, f"seed{seed}")
                rows.append(("relatedness csv", model, scaling, seed, run(c, wd)))
            c = census_config.get_config(f"seed={seed}")
            c.data.dense_scaling = scaling
            c.data.path = os.path.join(ROOT, c.data.path)
            c.checkpoint_every_steps = 10**6
            wd = os.path.join(args.out, "census", scaling, f"seed{seed}")
            rows.append(("census", "mmoe", scaling, seed, run(c, wd)))
    print(f"\n{args.seeds} seeds; mean test AUC per task over unflagged runs (flagged runs)")
    groups = sorted({(d, m) for d, m, *_ in rows})
    for data, model in groups:
        for scaling in SCALINGS:
            runs = [r for d, m, s, _, r in rows if (d, m, s) == (data, model, scaling)]
            tasks = [k[:-4] for k in runs[0]["test"] if k.endswith("/auc") and k != "cvr/auc"]
            flagged = sum(bool(r.get("flags")) for r in runs)
            kept = [r for r in runs if not r.get("flags")]
            aucs = " ".join(
                f"{t} {np.mean([r['test'][f'{t}/auc'] for r in kept]):.4f}" for t in tasks
            )
            print(f"{data:16s} {model:14s} {scaling:9s} {aucs}   flagged {flagged}/{len(runs)}")
    # paired tests of standard vs minmax where both runs of a seed are unflagged
    for data, model in groups:
        by = {
            s: {seed: r for d, m, sc, seed, r in rows if (d, m, sc) == (data, model, s)}
            for s in SCALINGS
        }
        seeds = [
            s for s in by["minmax"] if not by["minmax"][s].get("flags")
            and not by["standard"][s].get("flags")
        ]  # fmt: skip
        if len(seeds) < 2:
            continue
        tasks = [k[:-4] for k in by["minmax"][seeds[0]]["test"] if k.endswith("/auc")]
        for t in (t for t in tasks if t != "cvr"):
            a = [by["standard"][s]["test"][f"{t}/auc"] for s in seeds]
            b = [by["minmax"][s]["test"][f"{t}/auc"] for s in seeds]
            p = ablate.paired_permutation_p(a, b)
            print(
                f"{data:16s} {model:14s} {t}: standard − minmax {np.mean(a) - np.mean(b):+.4f} "
                f"(paired p {p:.3f}, {len(seeds)} seeds)"
            )


if __name__ == "__main__":
    main()
