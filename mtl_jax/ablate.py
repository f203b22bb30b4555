"""Ablation runner: configs × seeds on one dataset → a results table in the layout of the paper's
Tables 2–4, as Markdown and CSV.

    python -m mtl_jax.ablate --configs mmoe,coarse_attention,fine_attention --seeds 6 \
        --workdir results/synthetic [--runlocal] [--parallel 2] [--set num_epochs=2 ...] \
        [--sweep model.embed_dim=8,16,32] [--baseline mmoe] [--curves]

Every run is ``python -m mtl_jax.train --config configs/<name>.py[:runlocal],seed=<k>`` in its
own process and workdir (``<workdir>/<variant>/seed<k>``); a run whose ``final_metrics.json``
exists is skipped, so an interrupted ablation resumes where it stopped. ``--sweep key=v1,v2``
turns each config into one variant per value (the paper's section 4.3 studies: embedding
dimension, export weight, epochs, layers; the task correlation of ``--data-config
relatedness``). ``--data-config census`` runs every model on another dataset:
``configs/census.py:model=<name>,seed=<k>``; ``--data-args phenomenon=sequence`` appends to that
argument (``configs/phenomena.py``). ``--config-args paper`` appends arguments to every run's
config argument (``configs/<name>.py:seed=<k>,paper``: the paper's training protocol,
``configs/common.py``); ``name:arg`` in ``--configs`` gives one config its own (``mmoe:paper``,
several as ``name:a:b``), so that ``--configs mmoe,coarse_attention,mmoe:paper,
coarse_attention:paper`` makes one table of both protocols, each variant compared with the
baseline under the same arguments (``mmoe:paper`` for ``coarse_attention:paper``) and
``mmoe:paper`` with ``mmoe`` (the protocol's effect). A variant of the baseline config with
its own overrides is compared with the plain baseline (``--baseline coarse_attention
--configs coarse_attention,coarse_attention[model.attention_gate_norm=none]``).

The table reports, per variant, mean ± std over seeds of the test split's headline metric of
each task (AUC of a binary task, MSE and R² of a regression task; click / order, income /
never_married on census, y1 / y2 on relatedness), the loss, the hit rate @N of each binary task
(CLICK@2, ORDER@2), the oracle gap where the data knows the truth, the relative change of the
mean headline metric against the baseline (MMoE by default; a swept variant is compared with the
baseline at the same sweep value), and a paired test against it over the shared seeds: an exact
sign-flip permutation test of the mean paired difference (two-sided; with 5 seeds the smallest
possible p-value is 2/32 = 0.0625, so "significant at 0.05" needs at least 6 seeds — the table
says so). With one sweep key, a pivot per task (config × sweep value) follows the table.

A degenerate run — a task whose predictions are constant or NaN, or whose AUC is exactly 0.5
(``mtl_jax.diagnostics``) — is flagged: the table counts flagged runs per row (``flagged``),
lists each with its reason, and leaves it out of every mean, spread and test.
``--curves`` plots every variant's validation learning curve (mean over seeds) to
``curves.png``.
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


def primary_metric(task: str, kind: str = "binary") -> tuple[str, str, bool]:
    """(column label, final_metrics key, higher is better) of a task's headline metric: AUC for
    a binary task, MSE for a regression task."""
    if kind == "regression":
        return f"{task} MSE", f"{task}/mse", False
    return f"{task} AUC", f"{task}/auc", True


def metric_columns(
    tasks, top_n: int = 2, oracle: bool = False, task_types=None
) -> list[tuple[str, str]]:
    """(column label, final_metrics key) of the table for these tasks: per task its headline
    metric (AUC, or MSE for a regression task), the loss, per binary task the hit rate @N
    (CLICK@2, ORDER@2), and with ``oracle`` (the data knows the truth) per task oracle gap."""
    task_types = task_types or ("binary",) * len(tasks)
    cols = [primary_metric(t, k)[:2] for t, k in zip(tasks, task_types)]
    cols += [(f"{t} R2", f"{t}/r2") for t, k in zip(tasks, task_types) if k == "regression"]
    cols.append(("loss", "loss"))
    cols += [
        (f"{t.upper()}@{top_n}", f"{t}@{top_n}") for t, k in zip(tasks, task_types) if k == "binary"
    ]
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
    variant, ``multisource[model.adversarial_weight=0.0]`` (several joined by ``;``). A name may
    carry arguments of its config file: ``mmoe:paper`` (``split_config``)."""
    out = []
    for item in re.split(r",(?![^\[]*\])", text):  # commas outside brackets
        if not item:
            continue
        m = re.fullmatch(r"([\w.-]+(?::[\w.=-]+)*)(?:\[([^\]]*)\])?", item)
        if m is None:
            raise SystemExit(
                f"--configs: cannot read {item!r}; expected name, name:arg or name[key=v;...]"
            )
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


def split_config(name: str) -> tuple[str, list[str]]:
    """``mmoe:paper`` → ``("mmoe", ["paper"])``: the config file and the variant's own arguments
    of it."""
    file, *args = name.split(":")
    return file, args


def config_spec(
    configs_dir, config, seed, runlocal, data_config=None, data_args="", config_args=""
) -> str:
    """The ``--config`` argument of one run: ``configs/<config>.py:[runlocal,]seed=<k>``, then the
    config's own arguments (``mmoe:paper``) and ``config_args`` (``--config-args``); or with a
    data config (e.g. ``census``) ``configs/<data_config>.py:model=<config>,seed=<k>,...``
    followed by ``data_args`` (e.g. ``phenomenon=sequence``)."""
    file, own = split_config(config)
    arg = ",".join(
        (["runlocal"] if runlocal else [])
        + [f"seed={seed}"]
        + own
        + ([config_args] if config_args else [])
    )
    if data_config:
        extra = f",{data_args}" if data_args else ""
        return f"{os.path.join(configs_dir, data_config)}.py:model={file},{arg}{extra}"
    return f"{os.path.join(configs_dir, file)}.py:{arg}"


def run_one(
    root,
    configs_dir,
    variant,
    config,
    extra,
    seed,
    runlocal,
    overrides,
    data_config=None,
    data_args="",
    config_args="",
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
        config_spec(configs_dir, config, seed, runlocal, data_config, data_args, config_args),
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


def run_flags(root, results: dict, tasks=DEFAULT_TASKS, task_types=None) -> dict:
    """variant → seed → why the run is degenerate (only flagged runs).

    A run is flagged by the ``flags`` of its ``final_metrics.json`` (written by the training loop:
    a task's predictions constant, NaN, or its AUC exactly 0.5 on the val or test split), and,
    for runs written before those flags existed, by its test metrics alone: a headline metric
    that is NaN, or an AUC of exactly 0.5.
    """
    task_types = task_types or ("binary",) * len(tasks)
    out: dict = {}
    for name, per_seed in results.items():
        for seed, test in per_seed.items():
            reasons = []
            path = os.path.join(root, name, f"seed{seed}", "final_metrics.json")
            if os.path.exists(path):
                with open(path) as f:
                    saved = json.load(f).get("flags") or {}
                for split, bad in sorted(saved.items()):
                    reasons += [f"{split} {t}: {'; '.join(r)}" for t, r in sorted(bad.items())]
            if not reasons:
                for t, kind in zip(tasks, task_types):
                    _, key, _ = primary_metric(t, kind)
                    v = float(test.get(key, math.nan))
                    if math.isnan(v):
                        reasons.append(f"test {t}: {key} is NaN")
                    elif kind == "binary" and v == 0.5:
                        reasons.append(f"test {t}: AUC exactly 0.5")
            if reasons:
                out.setdefault(name, {})[seed] = reasons
    return out


def run_tasks(root, results: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The task names and types of the runs: from a run's ``schema.json``, else from the metric
    keys of the runs (``t/auc`` → binary, ``t/mse`` → regression; ``cvr`` is a view of the order
    task, not a task), else click/order, binary."""
    for name, per_seed in results.items():
        for seed in per_seed:
            path = os.path.join(root, name, f"seed{seed}", "schema.json")
            if os.path.exists(path):
                with open(path) as f:
                    schema = json.load(f)
                tasks = tuple(schema["tasks"])
                return tasks, tuple(schema.get("task_types") or ("binary",) * len(tasks))
    for per_seed in results.values():
        for metrics in per_seed.values():
            found = {}
            for key in metrics:
                task, _, metric = key.rpartition("/")
                if task and "/" not in task and task != "cvr" and metric in ("auc", "mse"):
                    found.setdefault(task, "binary" if metric == "auc" else "regression")
            if found:
                return tuple(found), tuple(found.values())
    return DEFAULT_TASKS, ("binary",) * len(DEFAULT_TASKS)


def baseline_of(name: str, baseline: str, results: dict) -> str | None:
    """The baseline a variant is compared with: the baseline config's variant with the same
    config arguments and bracketed settings when there is one (``mmoe[correlation=0.5]`` →
    ``shared_bottom[correlation=0.5]``, ``coarse_attention:paper`` → ``mmoe:paper``), else with
    the same arguments, else the plain baseline; None when none ran. A variant is its own
    baseline only when no other candidate ran: with ``--baseline coarse_attention``,
    ``coarse_attention[attention_gate_norm=none]`` is compared with ``coarse_attention``."""
    label = name[name.index("[") :] if "[" in name else ""
    head = name[: len(name) - len(label)]
    args = head[head.index(":") :] if ":" in head else ""
    candidates = (baseline + args + label, baseline + args, baseline + label, baseline)
    found = [c for c in candidates if c in results]
    others = [c for c in found if c != name]
    return (others or found or [None])[0]


def _mean_std(vals) -> str:
    vals = np.asarray(vals, float)
    if len(vals) == 0:
        return "–"
    # One seed has no spread: the mean alone, not a misleading "± 0".
    return f"{vals.mean():.4f} ± {vals.std(ddof=1):.4f}" if len(vals) > 1 else f"{vals[0]:.4f}"


def compare(per_seed: dict, base: dict, key: str, seeds, base_seeds) -> tuple[str, str]:
    """(relative change of the mean against the baseline, paired p over the shared seeds)."""
    mine = np.mean([per_seed[s][key] for s in seeds])
    ref = np.mean([base[s][key] for s in base_seeds])
    change = f"{100 * (mine - ref) / abs(ref):+.2f}%" if ref else ""
    shared = sorted(set(seeds) & set(base_seeds))
    if len(shared) < 2:  # one pair cannot be tested
        return change, ""
    p = paired_permutation_p([per_seed[s][key] for s in shared], [base[s][key] for s in shared])
    return change, f"{p:.3f}" + (" *" if p < 0.05 else "")


def table(
    results: dict, baseline: str, tasks=DEFAULT_TASKS, task_types=None, flags=None
) -> tuple[list[str], list[list[str]]]:
    """The long table: one row per variant, flagged runs counted and left out of everything."""
    task_types = task_types or ("binary",) * len(tasks)
    flags = flags or {}
    runs = [m for per_seed in results.values() for m in per_seed.values()]
    top_n = next((int(k.split("@")[1]) for m in runs for k in m if k.startswith(f"{tasks[0]}@")), 2)
    oracle = all(f"{t}/oracle_gap" in m for t in tasks for m in runs)
    # A metric no run has (e.g. CLICK@N on data without user groups: nan) gets no column.
    metrics = [
        (label, key)
        for label, key in metric_columns(tasks, top_n, oracle, task_types)
        if any(not math.isnan(float(m.get(key, math.nan))) for m in runs)
    ]
    primaries = [primary_metric(t, k) for t, k in zip(tasks, task_types)]
    header = ["model", "seeds", "flagged", *[label for label, _ in metrics]]
    header += [f"{label} vs base" for label, _, _ in primaries] + [f"p {t}" for t in tasks]
    rows = []
    for name, per_seed in results.items():
        bad = flags.get(name, {})
        seeds = sorted(s for s in per_seed if s not in bad)
        row = [
            name,
            str(len(seeds)),
            str(len(bad)) + (f" (seed {', '.join(map(str, sorted(bad)))})" if bad else ""),
        ]
        for _, key in metrics:
            row.append(_mean_std([per_seed[s].get(key, math.nan) for s in seeds]))
        base_name = baseline_of(name, baseline, results)
        base = results.get(base_name, {}) if base_name else {}
        base_seeds = sorted(s for s in base if s not in flags.get(base_name, {}))
        cmp = []
        for _, key, _ in primaries:
            if name == base_name:
                cmp.append(("baseline", ""))
            elif not seeds or not base_seeds:
                cmp.append(("", ""))
            else:
                cmp.append(compare(per_seed, base, key, seeds, base_seeds))
        row += [c for c, _ in cmp] + [p for _, p in cmp]
        rows.append(row)
    return header, rows


def pivot(
    results: dict, layout, baseline: str, task: str, kind: str = "binary", flags=None
) -> tuple[list[str], list[list[str]]]:
    """One task's headline metric as config × sweep value: "mean ± std (change vs the
    baseline at the same value, p)" per cell. ``layout`` lists (row, column, variant)."""
    flags = flags or {}
    label, key, _ = primary_metric(task, kind)
    rows_order = list(dict.fromkeys(r for r, _, _ in layout))
    cols_order = list(dict.fromkeys(c for _, c, _ in layout))
    cell = {(r, c): v for r, c, v in layout}
    header = [f"{label}", *cols_order]
    out = []
    for r in rows_order:
        row = [r]
        for c in cols_order:
            v = cell.get((r, c))
            per_seed = results.get(v, {})
            bad = flags.get(v, {})
            seeds = sorted(s for s in per_seed if s not in bad)
            if not seeds:
                row.append("–")
                continue
            text = _mean_std([per_seed[s][key] for s in seeds])
            base_name = baseline_of(v, baseline, results)
            if base_name and base_name != v:
                base = results[base_name]
                base_seeds = sorted(s for s in base if s not in flags.get(base_name, {}))
                if base_seeds:
                    change, p = compare(per_seed, base, key, seeds, base_seeds)
                    text += f" ({change}" + (f", p {p}" if p else "") + ")"
            if bad:
                text += f" [{len(bad)} flagged]"
            row.append(text)
        out.append(row)
    return header, out


def _markdown(header, rows) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
    ]


def write_tables(
    root: str, header, rows, command: str, flags=None, pivots=(), name: str = "results"
) -> None:
    """``<name>.csv`` (the long table) and ``<name>.md`` (the command, the long table, the
    flagged runs with their reasons, and any pivot tables)."""
    with open(os.path.join(root, f"{name}.csv"), "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    lines = [
        f"Command: `{command}`",
        "",
        "Test split; mean ± std over the seeds whose run is not flagged; change of the mean "
        "headline metric (AUC, or MSE for a regression task: lower is better) against the "
        "baseline; p = exact paired sign-flip permutation test over the shared unflagged seeds "
        "(two-sided; * = p < 0.05; with n seeds the smallest possible p is 2/2^n). A flagged run "
        "(a degenerate task output: constant predictions, NaN, AUC exactly 0.5) is counted in "
        "`flagged` and left out of every mean, spread and test.",
        "",
        *_markdown(header, rows),
    ]
    flagged = [(n, s, r) for n, per in (flags or {}).items() for s, r in sorted(per.items())]
    if flagged:
        lines += ["", "Flagged runs:", ""]
        lines += [f"- `{n}` seed {s}: {'; '.join(r)}" for n, s, r in flagged]
    for title, (p_header, p_rows) in pivots:
        lines += ["", title, "", *_markdown(p_header, p_rows)]
    with open(os.path.join(root, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def pivot_layout(configs, sweeps) -> list[tuple[str, str, str]]:
    """(row: the config or its own variant, column: the sweep values, variant) of every run."""
    out = []
    for entry in configs:
        name, own = (entry, []) if isinstance(entry, str) else entry
        row = variants([(name, own)], [])[0][0]
        values = list(itertools.product(*[v for _, v in sweeps]))
        for (variant, _, _), vals in zip(variants([(name, own)], sweeps), values):
            col = ",".join(f"{k.split('.')[-1]}={v}" for (k, _), v in zip(sweeps, vals))
            out.append((row, col, variant))
    return out


def plot_curves(root, layout, seeds, flags, tasks, task_types, path) -> None:
    """Learning curves from every run's ``metrics.jsonl``: the validation headline metric (mean
    over tasks and over the unflagged seeds) against the step, one line per row of ``layout``,
    one panel per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtl_jax.logs import read_metrics

    cols = list(dict.fromkeys(c for _, c, _ in layout))
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3.4), squeeze=False, sharey=True)
    for ax, col in zip(axes[0], cols):
        for row, c, variant in layout:
            if c != col:
                continue
            curves = []
            for seed in seeds:
                if seed in flags.get(variant, {}):
                    continue
                rows = [
                    r
                    for r in read_metrics(os.path.join(root, variant, f"seed{seed}"))
                    if r["split"] == "val"
                ]
                if rows:
                    keys = [primary_metric(t, k)[1] for t, k in zip(tasks, task_types)]
                    curves.append({r["step"]: np.mean([r[k] for k in keys]) for r in rows})
            if not curves:
                continue
            steps = sorted(set.intersection(*[set(c) for c in curves]))
            ax.plot(steps, [np.mean([c[s] for c in curves]) for s in steps], label=row)
        ax.set_title(col or "all")
        ax.set_xlabel("step")
    metric = primary_metric(tasks[0], task_types[0])[0].split()[-1]
    if metric == "MSE":  # errors fall by orders of magnitude: only a log axis shows the end
        for ax in axes[0]:
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(f"validation {metric} (mean over tasks and seeds)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--configs",
        required=True,
        help="comma-separated names under --configs-dir; name[key=v;key2=v2] is a variant of a "
        "config with its own overrides (e.g. multisource[model.adversarial_weight=0.0]); "
        "name:arg adds an argument of the config file (e.g. mmoe:paper)",
    )
    ap.add_argument("--configs-dir", default="configs")
    ap.add_argument(
        "--data-config",
        help="a dataset config taking model=NAME (e.g. census): each run is "
        "<configs-dir>/<data-config>.py:model=<config>,seed=<k>",
    )
    ap.add_argument(
        "--data-args",
        default="",
        help="more arguments of the data config, e.g. phenomenon=sequence (with --data-config)",
    )
    ap.add_argument(
        "--config-args",
        default="",
        help="arguments appended to every run's config argument, e.g. paper (the paper's "
        "training protocol: configs/common.py)",
    )
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--runlocal", action="store_true")
    ap.add_argument("--parallel", type=int, default=1, help="runs at once (processes)")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value for all runs")
    ap.add_argument("--sweep", nargs="*", default=[], help="key=v1,v2,... (one variant per value)")
    ap.add_argument(
        "--baseline",
        default="mmoe",
        help="config every variant is compared with (the variant with the same sweep value and "
        "overrides when there is one)",
    )
    ap.add_argument(
        "--curves",
        action="store_true",
        help="also plot the validation learning curves of every variant to <workdir>/curves.png",
    )
    ap.add_argument(
        "--name",
        default="results",
        help="file name of the tables (<name>.md, <name>.csv): a second view of finished runs, "
        "e.g. --baseline omoe --name results_vs_omoe, keeps the first",
    )
    cli.add_traceback_flag(ap)
    args = ap.parse_args(argv)
    configs = parse_configs(args.configs)
    files = [split_config(n)[0] for n, _ in configs]
    for c in files + ([args.data_config] if args.data_config else []):
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
                args.data_args,
                args.config_args,
            )
            for v, c, extra, s in jobs
        ]
        ran = 0
        for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            message = fut.result()
            ran += message.startswith("done")
            print(f"[{i}/{len(jobs)}] {message}", flush=True)
    results = collect(args.workdir, [v for v, _, _ in todo], seeds)
    # Under a sweep the baseline config ran only as its swept variants (mmoe[correlation=0.5]):
    # keep its name so that each variant meets the baseline at its own sweep value.
    has_baseline = any(baseline_of(n, args.baseline, results) for n in results)
    baseline = args.baseline if has_baseline else next(iter(results))
    tasks, task_types = run_tasks(args.workdir, results)
    flags = run_flags(args.workdir, results, tasks, task_types)
    header, rows = table(results, baseline, tasks, task_types, flags)
    layout = pivot_layout(configs, sweeps)
    pivots = []
    if len(sweeps) == 1:
        for t, kind in zip(tasks, task_types):
            label = primary_metric(t, kind)[0]
            title = f"{label} by {sweeps[0][0]} (vs {args.baseline} at the same value):"
            pivots.append((title, pivot(results, layout, args.baseline, t, kind, flags)))
    # A rerun that trained nothing (e.g. the notebook pointed at a finished ablation) keeps the
    # tables and the command that made them.
    table_md = os.path.join(args.workdir, f"{args.name}.md")
    if ran or not os.path.exists(table_md):
        command = "python -m mtl_jax.ablate " + " ".join(argv if argv is not None else sys.argv[1:])
        write_tables(args.workdir, header, rows, command, flags, pivots, args.name)
    if args.curves:
        plot_curves(
            args.workdir,
            layout,
            seeds,
            flags,
            tasks,
            task_types,
            os.path.join(args.workdir, "curves.png"),
        )
    print(open(table_md).read())
    return header, rows


def _command(argv=None) -> int:
    main(argv)  # returns the table for callers; the command's status is 0
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(_command))
