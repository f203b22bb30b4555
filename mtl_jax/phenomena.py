"""Each paper component against MMoE with its motivating phenomenon off and on.

    python -m mtl_jax.phenomena --workdir runs/phenomena --seeds 6 --parallel 2

For every data setting of ``configs/phenomena.py`` that some component needs, one ablation
(``mtl_jax.ablate --data-config phenomena --data-args phenomenon=<setting>``) trains MMoE and the
components on the same seeds (each seed its own data, shared by every model of that setting);
then ``<workdir>/results.md`` gives one row per component:

    component | off: Δ vs MMoE (p) | on: Δ vs MMoE (p)

per task, where Δ is the relative change of the mean test AUC against MMoE on the same data and
p the exact paired sign-flip test over the seeds (flagged, degenerate runs left out, as in
``ablate``). A headroom setting (``phenomenon=headroom``) also runs every component, and the table
reports MMoE's oracle gap next to its seed spread there and on the default data.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from mtl_jax import ablate, cli

#: component → (its "off" setting, its "on" setting)
COMPONENTS = {
    "coarse_attention": ("none", "task_features"),
    "fine_attention": ("none", "task_features"),
    "boost_experts": ("none", "interactions"),
    "expert_attention": ("none", "interactions"),
    "feature_attention": ("none", "interactions"),
    "sequence_mmoe": ("none", "sequence"),
    "multisource": ("sources_aligned", "sources"),
}
HEADROOM = "headroom"
TASKS = ("click", "order")


def settings(headroom_components: bool = True) -> dict[str, list[str]]:
    """setting → the configs trained on it (MMoE first); with ``headroom_components=False`` the
    headroom setting trains MMoE alone (its oracle gap and seed spread are all the summary
    needs)."""
    out: dict[str, list[str]] = {}
    for component, pair in COMPONENTS.items():
        for setting in pair:
            out.setdefault(setting, ["mmoe"]).append(component)
    single = [c for c, (off, _) in COMPONENTS.items() if off == "none"]
    out[HEADROOM] = ["mmoe", *single] if headroom_components else ["mmoe"]
    return out


def _cell(root, setting, component, seeds, task) -> str:
    d = os.path.join(root, setting)
    results = ablate.collect(d, ["mmoe", component], seeds)
    if set(results) != {"mmoe", component}:
        return "not run"
    flags = ablate.run_flags(d, results, TASKS)
    mine = sorted(s for s in results[component] if s not in flags.get(component, {}))
    base = sorted(s for s in results["mmoe"] if s not in flags.get("mmoe", {}))
    if not mine or not base:
        return "all flagged"
    change, p = ablate.compare(results[component], results["mmoe"], f"{task}/auc", mine, base)
    n_bad = len(flags.get(component, {})) + len(flags.get("mmoe", {}))
    return f"{change} (p {p})" + (f" [{n_bad} flagged]" if n_bad else "")


def summary(root: str, seeds) -> list[str]:
    """The Markdown summary: the component table, then MMoE's headroom."""
    lines = [
        "| component | off | on | off: click Δ vs MMoE (p) | on: click Δ vs MMoE (p) "
        "| off: order Δ vs MMoE (p) | on: order Δ vs MMoE (p) |",
        "|---|---|---|---|---|---|---|",
    ]
    for component, (off, on) in COMPONENTS.items():
        cells = [_cell(root, s, component, seeds, t) for t in TASKS for s in (off, on)]
        lines.append(f"| {component} | {off} | {on} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "MMoE's distance to the oracle (test split, mean ± std over seeds) and its AUC's spread "
        "over seeds:",
        "",
        "| setting | click gap | click AUC std | gap / std | order gap | order AUC std "
        "| gap / std |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting in ("none", HEADROOM):
        runs = ablate.collect(os.path.join(root, setting), ["mmoe"], seeds).get("mmoe", {})
        if not runs:
            lines.append(f"| {setting} | not run | | | | | |")
            continue
        cells = []
        for t in TASKS:
            gap = np.array([m[f"{t}/oracle_gap"] for m in runs.values()])
            auc_std = np.std([m[f"{t}/auc"] for m in runs.values()], ddof=1)
            cells += [f"{gap.mean():.4f} ± {gap.std(ddof=1):.4f}", f"{auc_std:.4f}"]
            cells.append(f"{gap.mean() / auc_std:.1f}×")
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated settings to run (default: all)")
    ap.add_argument("--configs-dir", default="configs")
    ap.add_argument(
        "--headroom",
        choices=("all", "mmoe"),
        default="all",
        help="configs on the headroom setting: MMoE and every single-source component (all), "
        "or MMoE alone for its gap (mmoe)",
    )
    args = ap.parse_args(argv)
    todo = settings(headroom_components=args.headroom == "all")
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(todo))
    if unknown:
        raise SystemExit(f"--only: unknown settings {unknown}; valid: {sorted(todo)}")
    for setting, configs in todo.items():
        if only and setting not in only:
            continue
        print(f"== {setting}: {', '.join(configs)}", flush=True)
        ablate.main(
            [
                "--configs", ",".join(configs), "--configs-dir", args.configs_dir,
                "--data-config", "phenomena", "--data-args", f"phenomenon={setting}",
                "--seeds", str(args.seeds), "--workdir", os.path.join(args.workdir, setting),
                "--parallel", str(args.parallel), "--baseline", "mmoe",
            ]
        )  # fmt: skip
    command = "python -m mtl_jax.phenomena " + " ".join(argv if argv is not None else sys.argv[1:])
    seeds = list(range(args.seeds))
    text = [
        f"Command: `{command}`",
        "",
        "Test AUC of each component against MMoE trained on the same data and seeds; Δ = "
        "relative change of the mean; p = exact paired sign-flip test over the seeds "
        "(two-sided; * = p < 0.05). Per-setting tables (every metric, flagged runs) are in "
        "each setting's `results.md`.",
        "",
        *summary(args.workdir, seeds),
    ]
    with open(os.path.join(args.workdir, "results.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    sys.exit(cli.run(main))
