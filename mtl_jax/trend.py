"""Does a variant's advantage over a baseline change along a sweep? (the task-relatedness question)

    python -m mtl_jax.trend --workdir runs/relatedness --variant mmoe --baseline shared_bottom \
        --steps 1000,2000

reads a finished ``mtl_jax.ablate --sweep`` workdir (``mmoe[correlation=0.5]/seed3/...``) and,
per task and per sweep value, gives the variant's advantage over the baseline on the same seed,
``(baseline − variant) / baseline`` of the headline metric (MSE for a regression task, 1 − AUC
for a binary one: positive = the variant is better), as mean ± std over seeds, and the exact
paired sign-flip test of that advantage against its value at the first sweep value (the
difference in differences, paired by seed: each seed's data shares its non-linearities across
the sweep). The MMoE paper's finding (Ma et al. 2018, Fig. 4) is that this advantage grows as
the tasks' correlation falls. ``--steps`` adds the same table on the validation metrics that
the runs logged at those steps (``metrics.jsonl``), for the part of training the paper plots.
Flagged runs (``ablate.run_flags``) are left out and counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

from mtl_jax import ablate, cli
from mtl_jax.cli import UserError

_NAME = re.compile(r"^(?P<config>[^\[]+)\[(?P<key>[^=\]]+)=(?P<value>[^\]]+)\]$")


def sweep_values(root: str, config: str) -> list[tuple[str, str]]:
    """(sweep key, value) of each ``config[key=value]`` directory, in the sweep's numeric order
    when the values are numbers, descending (correlation 1.0 first), else by name."""
    found = []
    for entry in sorted(os.listdir(root)):
        m = _NAME.match(entry)
        if m and m["config"] == config:
            found.append((m["key"], m["value"]))
    try:
        return sorted(found, key=lambda kv: -float(kv[1]))
    except ValueError:
        return found


def _error(metric: dict, task: str, kind: str) -> float:
    """The headline metric as an error (lower is better): MSE, or 1 − AUC."""
    return metric[f"{task}/mse"] if kind == "regression" else 1.0 - metric[f"{task}/auc"]


def val_at(run_dir: str, step: int) -> dict | None:
    """The validation metrics a run logged at ``step`` (None when it logged none there)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if row.get("split") == "val" and row.get("step") == step:
                return row
    return None


def advantages(root, variant, baseline, key, value, seeds, tasks, kinds, step=None):
    """task → seed → relative advantage of ``variant`` over ``baseline`` at one sweep value, and
    the number of seeds left out (flagged runs, or no metrics at ``step``)."""
    names = [f"{variant}[{key}={value}]", f"{baseline}[{key}={value}]"]
    results = ablate.collect(root, names, seeds)
    flags = ablate.run_flags(root, results, tasks, kinds)
    out: dict = {t: {} for t in tasks}
    left_out = 0
    for seed in seeds:
        if any(seed not in results.get(n, {}) or seed in flags.get(n, {}) for n in names):
            left_out += 1
            continue
        if step is None:
            mine, base = (results[n][seed] for n in names)
        else:
            mine, base = (val_at(os.path.join(root, n, f"seed{seed}"), step) for n in names)
            if mine is None or base is None:
                left_out += 1
                continue
        for t, kind in zip(tasks, kinds):
            b = _error(base, t, kind)
            out[t][seed] = (b - _error(mine, t, kind)) / b
    return out, left_out


def trend_table(root, variant, baseline, seeds, step=None) -> list[str]:
    """Markdown rows: sweep value | per task: advantage mean ± std | Δ vs first value (p)."""
    points = sweep_values(root, variant)
    if not points:
        raise UserError(f"--workdir {root}: no {variant}[key=value] runs of a sweep")
    results = ablate.collect(root, [f"{variant}[{k}={v}]" for k, v in points], seeds)
    tasks, kinds = ablate.run_tasks(root, results)
    header = f"| {points[0][0]} | " + " | ".join(
        f"{t}: advantage | {t}: change vs {points[0][1]} (p)" for t in tasks
    )
    lines = [header + " | seeds left out |", "|---" * (1 + 2 * len(tasks)) + "|---|"]
    first = None
    for key, value in points:
        adv, left_out = advantages(root, variant, baseline, key, value, seeds, tasks, kinds, step)
        first = first or adv
        cells = []
        for t in tasks:
            vals = np.array(list(adv[t].values()))
            cells.append(
                f"{100 * vals.mean():+.1f}% ± {100 * vals.std(ddof=1):.1f}"
                if len(vals) > 1
                else "–"
            )
            shared = sorted(set(adv[t]) & set(first[t]))
            if value == points[0][1] or len(shared) < 2:
                cells.append("")
                continue
            d = [adv[t][s] for s in shared]
            d0 = [first[t][s] for s in shared]
            p = ablate.paired_permutation_p(d, d0)
            change = 100 * (np.mean(d) - np.mean(d0))
            cells.append(f"{change:+.1f} points ({p:.3f}{' *' if p < 0.05 else ''})")
        lines.append(f"| {value} | " + " | ".join(cells) + f" | {left_out} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--steps", default="", help="comma-separated validation steps to add")
    ap.add_argument("--output", default="", help="also write the tables to this Markdown file")
    args = ap.parse_args(argv)
    try:
        steps = [int(s) for s in args.steps.split(",") if s]
    except ValueError:
        raise UserError(f"--steps {args.steps!r}: expected comma-separated integers") from None
    seeds = list(range(args.seeds))
    command = "python -m mtl_jax.trend " + " ".join(argv if argv is not None else sys.argv[1:])
    text = [
        f"Command: `{command}`",
        "",
        f"Advantage of {args.variant} over {args.baseline} on the same seed, (baseline − "
        f"{args.variant}) / baseline of the error (MSE, or 1 − AUC), mean ± std over seeds; "
        "change vs the first sweep value in percentage points, exact paired sign-flip p.",
    ]
    for step in [None, *steps]:
        where = "test split, end of training" if step is None else f"validation, step {step}"
        text += ["", f"**{where}**", ""]
        text += trend_table(args.workdir, args.variant, args.baseline, seeds, step)
    print("\n".join(text))
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(text) + "\n")


if __name__ == "__main__":
    sys.exit(cli.run(main))
