"""Ablation runner: configs × seeds on one dataset → a results table in the layout of the paper's
Tables 2–4, as Markdown and CSV.

    python -m mtl_jax.ablate --configs mmoe,coarse_attention,fine_attention --seeds 5 \
        --workdir results/synthetic [--runlocal] [--parallel 2] [--set num_epochs=2 ...] \
        [--sweep model.embed_dim=8,16,32]

Every run is ``python -m mtl_jax.train --config configs/<name>.py[:runlocal],seed=<k>`` in its
own process and workdir (``<workdir>/<variant>/seed<k>``); a run whose ``final_metrics.json``
exists is skipped, so an interrupted ablation resumes where it stopped. ``--sweep key=v1,v2``
turns each config into one variant per value (the paper's section 4.3 studies: embedding
dimension, export weight, epochs, layers). ``--data-config census`` runs every model on another
dataset: ``configs/census.py:model=<name>,seed=<k>``.

The table reports, per variant, mean ± std over seeds of the test split's AUC of each task (click,
order; income, never_married on census), loss, CLICK@2 and ORDER@2 (the hit rate of each task),
the relative change of the mean AUCs against the baseline (MMoE by
default), and a paired test against the baseline over the shared seeds: an exact sign-flip
permutation test of the mean paired difference (two-sided; with 5 seeds the smallest possible
p-value is 2/32 = 0.0625, so "significant at 0.05" needs at least 6 seeds — the table says so).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import itertools
import json
import math
import os
import re
import subprocess
import sys

import numpy as np

from mtl_jax import cli
from mtl_jax.cli import UserError

DEFAULT_TASKS = ("click", "order")


def metric_columns(tasks, top_n: int = 2, oracle: bool = False) -> list[tuple[str, str]]:
    """(column label, final_metrics key) of the table for these task names: per task AUC, the
    loss, per task hit rate @N (CLICK@2, ORDER@2), and with ``oracle`` (synthetic data knows the
    true probabilities) per task oracle gap."""
    cols = [(f"{t} AUC", f"{t}/auc") for t in tasks]
    cols.append(("loss", "loss"))
    cols += [(f"{t.upper()}@{top_n}", f"{t}@{top_n}") for t in tasks]
    if oracle:
        cols += [(f"{t} oracle gap", f"{t}/oracle_gap") for t in tasks]
    return cols


def paired_permutation_p(a, b) -> float:
    """Two-sided exact sign-flip permutation p-value of mean(a − b) over paired samples."""
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))  # [2^n, n]
    means = np.abs((signs * d).mean(axis=1))
    return float(np.mean(means >= observed - 1e-15))


def parse_configs(text: str) -> list[tuple[str, list[str]]]:
    """``--configs`` → [(config name, overrides)]: ``mmoe,ple`` or, with overrides of one
    variant, ``multisource[model.adversarial_weight=0.0]`` (several joined by ``;``)."""
    out = []
    for item in re.split(r",(?![^\[]*\])", text):  # commas outside brackets
        if not item:
            continue
        m = re.fullmatch(r"([\w.-]+)(?:\[([^\]]*)\])?", item)
        if m is None:
            raise SystemExit(f"--configs: cannot read {item!r}; expected name or name[key=v;...]")
        overrides = [o for o in (m.group(2) or "").split(";") if o]
        for o in overrides:
            if "=" not in o:
                raise SystemExit(f"--configs {item!r}: override {o!r} is not key=value")
        out.append((m.group(1), overrides))
    return out


def variants(configs, sweeps):
    """(variant name, config name, extra overrides) for every config × sweep value.

    ``configs`` are names or (name, overrides) pairs; a variant with overrides is named
    ``name[key=v]`` (the last part of each key), as a sweep value is.
    """
    out = []
    for entry in configs:
        name, own = (entry, []) if isinstance(entry, str) else entry
        for values in itertools.product(*[v for _, v in sweeps]):
            pairs = [o.split("=", 1) for o in own] + list(zip([k for k, _ in sweeps], values))
            label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in pairs)
            out.append(
                (
                    f"{name}[{label}]" if pairs else name,
                    name,
                    [f"--config.{k}={v}" for k, v in pairs],
                )
            )
    return out


def config_spec(configs_dir, config, seed, runlocal, data_config=None) -> str:
    """The ``--config`` argument of one run: ``configs/<config>.py:[runlocal,]seed=<k>``, or with
    a data config (e.g. ``census``) ``configs/<data_config>.py:model=<config>,seed=<k>``."""
    arg = ("runlocal," if runlocal else "") + f"seed={seed}"
    if data_config:
        return f"{os.path.join(configs_dir, data_config)}.py:model={config},{arg}"
    return f"{os.path.join(configs_dir, config)}.py:{arg}"


def run_one(
    root, configs_dir, variant, config, extra, seed, runlocal, overrides, data_config=None
) -> str:
    workdir = os.path.join(root, variant, f"seed{seed}")
    if os.path.exists(os.path.join(workdir, "final_metrics.json")):
        return f"skip {variant} seed {seed} (finished)"
    os.makedirs(workdir, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "mtl_jax.train",
        "--config",
        config_spec(configs_dir, config, seed, runlocal, data_config),
        "--workdir",
        workdir,
        *[f"--config.{o}" for o in overrides],
        *extra,
    ]
    env = dict(os.environ, MTL_JAX_NO_PROGRESS="1")
    with open(os.path.join(workdir, "train.log"), "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        # The run's own error or traceback is in its log; here one line says where.
        raise UserError(f"{variant} seed {seed} failed; see {workdir}/train.log")
    return f"done {variant} seed {seed}"


def collect(root, names, seeds) -> dict:
    """variant → seed → test metrics."""
    out: dict = {}
    for name in names:
        for seed in seeds:
            path = os.path.join(root, name, f"seed{seed}", "final_metrics.json")
            if os.path.exists(path):
                with open(path) as f:
                    out.setdefault(name, {})[seed] = json.load(f)["test"]
    return out


def run_tasks(root, results: dict) -> tuple[str, ...]:
    """The task names of the runs (from a run's ``schema.json``; click/order if none has one)."""
    for name, per_seed in results.items():
        for seed in per_seed:
            path = os.path.join(root, name, f"seed{seed}", "schema.json")
            if os.path.exists(path):
                with open(path) as f:
                    return tuple(json.load(f)["tasks"])
    return DEFAULT_TASKS


def table(results: dict, baseline: str, tasks=DEFAULT_TASKS) -> tuple[list[str], list[list[str]]]:
    runs = [m for per_seed in results.values() for m in per_seed.values()]
    top_n = next((int(k.split("@")[1]) for m in runs for k in m if k.startswith(f"{tasks[0]}@")), 2)
    oracle = all(f"{t}/oracle_gap" in m for t in tasks for m in runs)
    # A metric no run has (e.g. CLICK@N on data without user groups: nan) gets no column.
    metrics = [
        (label, key)
        for label, key in metric_columns(tasks, top_n, oracle)
        if any(not math.isnan(float(m.get(key, math.nan))) for m in runs)
    ]
    header = ["model", "seeds", *[label for label, _ in metrics]]
    header += [f"{t} AUC vs base" for t in tasks] + [f"p {t}" for t in tasks]
    auc_keys = [f"{t}/auc" for t in tasks]
    rows = []
    base = results.get(baseline, {})
    for name, per_seed in results.items():
        seeds = sorted(per_seed)
        row = [name, str(len(seeds))]
        for _, key in metrics:
            vals = np.array([per_seed[s].get(key, math.nan) for s in seeds], float)
            # One seed has no spread: the mean alone, not a misleading "± 0".
            row.append(
                f"{vals.mean():.4f} ± {vals.std(ddof=1):.4f}" if len(vals) > 1 else f"{vals[0]:.4f}"
            )
        for key in auc_keys:
            if name == baseline or not base:
                row.append("baseline" if name == baseline else "")
                continue
            mine = np.mean([per_seed[s][key] for s in seeds])
            ref = np.mean([base[s][key] for s in sorted(base)])
            row.append(f"{100 * (mine - ref) / ref:+.2f}%")
        for key in auc_keys:
            shared = sorted(set(seeds) & set(base))
            if name == baseline or len(shared) < 2:  # one pair cannot be tested
                row.append("")
                continue
            p = paired_permutation_p(
                [per_seed[s][key] for s in shared], [base[s][key] for s in shared]
            )
            row.append(f"{p:.3f}" + (" *" if p < 0.05 else ""))
        rows.append(row)
    return header, rows


def write_tables(root: str, header, rows, command: str) -> None:
    with open(os.path.join(root, "results.csv"), "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    lines = [
        f"Command: `{command}`",
        "",
        "Test split; mean ± std over seeds; change of the mean AUC against the baseline; "
        "p = exact paired sign-flip permutation test over shared seeds (two-sided; * = p < 0.05; "
        "with n seeds the smallest possible p is 2/2^n).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
    ]
    with open(os.path.join(root, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--configs",
        required=True,
        help="comma-separated names under --configs-dir; name[key=v;key2=v2] is a variant of a "
        "config with its own overrides (e.g. multisource[model.adversarial_weight=0.0])",
    )
    ap.add_argument("--configs-dir", default="configs")
    ap.add_argument(
        "--data-config",
        help="a dataset config taking model=NAME (e.g. census): each run is "
        "<configs-dir>/<data-config>.py:model=<config>,seed=<k>",
    )
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--runlocal", action="store_true")
    ap.add_argument("--parallel", type=int, default=1, help="runs at once (processes)")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value for all runs")
    ap.add_argument("--sweep", nargs="*", default=[], help="key=v1,v2,... (one variant per value)")
    ap.add_argument("--baseline", default="mmoe")
    cli.add_traceback_flag(ap)
    args = ap.parse_args(argv)
    configs = parse_configs(args.configs)
    for c in [n for n, _ in configs] + ([args.data_config] if args.data_config else []):
        if not os.path.exists(os.path.join(args.configs_dir, c + ".py")):
            raise SystemExit(f"--configs: no config file {os.path.join(args.configs_dir, c)}.py")
    sweeps = []
    for s in args.sweep:
        key, _, values = s.partition("=")
        if not values:
            raise SystemExit(f"--sweep {s!r}: expected key=v1,v2,...")
        sweeps.append((key, values.split(",")))
    todo = variants(configs, sweeps)
    seeds = list(range(args.seeds))
    jobs = [(v, c, extra, s) for v, c, extra in todo for s in seeds]
    os.makedirs(args.workdir, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        futures = [
            pool.submit(
                run_one,
                args.workdir,
                args.configs_dir,
                v,
                c,
                extra,
                s,
                args.runlocal,
                args.set,
                args.data_config,
            )
            for v, c, extra, s in jobs
        ]
        ran = 0
        for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            message = fut.result()
            ran += message.startswith("done")
            print(f"[{i}/{len(jobs)}] {message}", flush=True)
    results = collect(args.workdir, [v for v, _, _ in todo], seeds)
    baseline = args.baseline if args.baseline in results else next(iter(results))
    header, rows = table(results, baseline, run_tasks(args.workdir, results))
    # A rerun that trained nothing (e.g. the notebook pointed at a finished ablation) keeps the
    # tables and the command that made them.
    if ran or not os.path.exists(os.path.join(args.workdir, "results.md")):
        command = "python -m mtl_jax.ablate " + " ".join(argv if argv is not None else sys.argv[1:])
        write_tables(args.workdir, header, rows, command)
    print(open(os.path.join(args.workdir, "results.md")).read())
    return header, rows


if __name__ == "__main__":
    sys.exit(cli.run(main))
