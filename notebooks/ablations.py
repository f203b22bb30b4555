# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablations: configs × seeds → table, metric bars, learning curves, gate weights
#
# This notebook runs an ablation with `mtl_jax.ablate` (every config × seed is one
# `python -m mtl_jax.train` run in `<WORKDIR>/<variant>/seed<k>`), or reads a finished one, and
# plots what the runs wrote:
#
# 1. the results table (test split, mean ± std over seeds, paired test against the baseline),
# 2. each task's headline metric per variant as bars with error bars: AUC for a binary task
#    (higher is better), MSE for a regression task (lower is better),
# 3. learning curves (validation headline metrics and training loss against the step), from the
#    runs' `metrics.jsonl` when they kept one,
# 4. the per-task gate weights over the experts, for the models that have gates.
#
# The tasks and their types come from the runs (`schema.json`, or the metric names of
# `final_metrics.json`): click / order on the synthetic data, income / never_married on census,
# y1 / y2 (regression) on the task-relatedness data. A **flagged** run (a task whose predictions
# are constant or NaN, or whose AUC is exactly 0.5) is degenerate: the table counts it, the
# notebook lists it with its reason, and it is left out of every mean, bar, curve and gate figure.
#
# Figures are shown and also saved as PNG under `FIG_DIR` (default `<WORKDIR>/figures/`).
#
# `notebooks/ablations.py` (jupytext percent format) and `notebooks/ablations.ipynb` are paired:
# edit either and run `jupytext --sync notebooks/ablations.py` to update the other.
# `tests/test_notebook.py` executes the notebook on a tiny runlocal ablation and reads every
# committed result under `results/` with it.
#
# **Plotting a finished ablation without re-running it.** With `MTL_JAX_NOTEBOOK_RUN=0` and no
# configs given, the notebook reads every variant and seed the workdir holds (each
# `<variant>/seed<k>/final_metrics.json`) and takes the baseline and the sweep from the command
# recorded in its `results.md`:
#
# ```bash
# MTL_JAX_NOTEBOOK_WORKDIR=results/census_5seed MTL_JAX_NOTEBOOK_RUN=0 \
#   MTL_JAX_NOTEBOOK_FIG_DIR=/tmp/census_figures \
#   python notebooks/ablations.py   # as a script: prints the table, saves the figures
# ```
#
# `jupyter execute notebooks/ablations.ipynb` (nbclient) runs it in a kernel instead;
# add `--output=ablations_run` to keep the executed notebook with its figures.

# %% [markdown]
# ## Parameters
#
# Every parameter can be overridden by an environment variable (CI uses them to run a tiny
# version):
#
# - `MTL_JAX_NOTEBOOK_CONFIGS`: comma-separated config names under `configs/`, as
#   `ablate --configs` (`name[key=v;...]` is a variant with its own overrides). Unset: the
#   default configs below when training; every variant found in the workdir when `RUN` is off.
# - `MTL_JAX_NOTEBOOK_SEEDS`: seeds 0 … n−1. Unset: 3 when training; every seed found when
#   reading.
# - `MTL_JAX_NOTEBOOK_WORKDIR` (relative to the repository root) and `MTL_JAX_NOTEBOOK_FIG_DIR`
#   (where the PNGs go; default `<WORKDIR>/figures`).
# - `MTL_JAX_NOTEBOOK_DATA_CONFIG`: a dataset config taking `model=NAME`, as
#   `ablate --data-config` (`census`, `relatedness`): each run is
#   `configs/<data config>.py:model=<config>,seed=<k>`; `MTL_JAX_NOTEBOOK_DATA_ARGS` adds
#   arguments of the data config (`phenomenon=sequence`), as `ablate --data-args`.
# - `MTL_JAX_NOTEBOOK_RUNLOCAL` (1/0: the seconds-long `:runlocal` configs),
#   `MTL_JAX_NOTEBOOK_SET` (space-separated `key=value` config overrides for all runs, as
#   `ablate --set`), `MTL_JAX_NOTEBOOK_SWEEP` (space-separated `key=v1,v2`, as `ablate --sweep`),
#   `MTL_JAX_NOTEBOOK_BASELINE` (unset: the recorded `--baseline` of the workdir's ablation, else
#   `mmoe`), `MTL_JAX_NOTEBOOK_PARALLEL` and `MTL_JAX_NOTEBOOK_RUN` (1/0: train the missing runs,
#   or only read the finished ones).

# %%
import argparse
import importlib.util
import math
import os
import re
import shlex
import sys
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

# %% tags=["parameters"]
DEFAULT_CONFIGS = ["mmoe", "omoe", "shared_bottom", "coarse_attention"]
CONFIGS: list[str] | None = None  # None: DEFAULT_CONFIGS when training, the workdir's when not
SEEDS: int | None = None  # None: 3 when training, every seed found when reading
WORKDIR = "runs/ablation_runlocal"
FIG_DIR: str | None = None  # None: <WORKDIR>/figures
DATA_CONFIG: str | None = None  # e.g. "census" or "relatedness"
DATA_ARGS = ""  # more arguments of the data config, e.g. "phenomenon=sequence"
RUNLOCAL = True
SET: list[str] = []  # e.g. ["num_epochs=1"]
SWEEP: list[str] = []  # e.g. ["data.relatedness.correlation=0.0,0.5,1.0"]
BASELINE: str | None = None  # None: the recorded --baseline of the workdir, else "mmoe"
PARALLEL = 1
RUN = True

_env = os.environ.get
if _env("MTL_JAX_NOTEBOOK_CONFIGS"):
    CONFIGS = [_env("MTL_JAX_NOTEBOOK_CONFIGS")]  # parsed below as `ablate --configs`
if _env("MTL_JAX_NOTEBOOK_SEEDS"):
    SEEDS = int(_env("MTL_JAX_NOTEBOOK_SEEDS"))
WORKDIR = _env("MTL_JAX_NOTEBOOK_WORKDIR", WORKDIR)
FIG_DIR = _env("MTL_JAX_NOTEBOOK_FIG_DIR") or FIG_DIR
DATA_CONFIG = _env("MTL_JAX_NOTEBOOK_DATA_CONFIG") or DATA_CONFIG
DATA_ARGS = _env("MTL_JAX_NOTEBOOK_DATA_ARGS", DATA_ARGS)
RUNLOCAL = _env("MTL_JAX_NOTEBOOK_RUNLOCAL", "1" if RUNLOCAL else "0") == "1"
SET = shlex.split(_env("MTL_JAX_NOTEBOOK_SET", shlex.join(SET)))
SWEEP = shlex.split(_env("MTL_JAX_NOTEBOOK_SWEEP", shlex.join(SWEEP)))
BASELINE = _env("MTL_JAX_NOTEBOOK_BASELINE") or BASELINE
PARALLEL = int(_env("MTL_JAX_NOTEBOOK_PARALLEL", PARALLEL))
RUN = _env("MTL_JAX_NOTEBOOK_RUN", "1" if RUN else "0") == "1"

# %% [markdown]
# ## Set-up
#
# The notebook works from the repository root (where `configs/` lives), whether Jupyter started
# it in `notebooks/` or it runs as a script. Outside a Jupyter kernel matplotlib draws with the
# non-interactive Agg backend and the figures are only saved.


# %%
def _find_root() -> str:
    """The first directory holding configs/ and mtl_jax/ above the working directory, this
    script (when run as one) or the installed package."""
    starts = [os.getcwd()]
    if "__file__" in globals():
        starts.append(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.find_spec("mtl_jax")
    if spec is not None and spec.origin:
        starts.append(os.path.dirname(spec.origin))
    for d in map(os.path.abspath, starts):
        while True:
            if os.path.isfile(os.path.join(d, "configs", "common.py")) and os.path.isdir(
                os.path.join(d, "mtl_jax")
            ):
                return d
            if os.path.dirname(d) == d:
                break
            d = os.path.dirname(d)
    raise RuntimeError(f"no repository root (with configs/ and mtl_jax/) above {starts}")


ROOT = _find_root()
os.chdir(ROOT)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

try:
    _IN_KERNEL = get_ipython().__class__.__name__ == "ZMQInteractiveShell"  # noqa: F821
except NameError:
    _IN_KERNEL = False

if not _IN_KERNEL and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")

# mtl_jax.logs imports tqdm.auto, which warns in a kernel without ipywidgets; no bar is drawn here.
warnings.filterwarnings("ignore", message="IProgress not found")
from mtl_jax import ablate, logs  # noqa: E402

WORKDIR = os.path.abspath(WORKDIR)
FIG_DIR = os.path.abspath(FIG_DIR or os.path.join(WORKDIR, "figures"))
SAVED: list[str] = []


def finish(fig, name: str) -> None:
    """Saves ``fig`` as ``<FIG_DIR>/<name>.png``; shows it in a notebook, closes it otherwise."""
    os.makedirs(FIG_DIR, exist_ok=True)
    path = os.path.join(FIG_DIR, f"{name}.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    if _IN_KERNEL:
        plt.show()
    else:
        plt.close(fig)
    SAVED.append(path)
    print(f"saved {shown(path)}")


def shown(path: str) -> str:
    """``path`` relative to the repository root when it lies inside it."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def run_dir(variant: str, seed: int) -> str:
    return os.path.join(WORKDIR, variant, f"seed{seed}")


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def show_markdown(text: str) -> None:
    if _IN_KERNEL:
        from IPython.display import Markdown, display

        display(Markdown(text))
    else:
        print(text)


print(f"repository root: {ROOT}\nworkdir: {shown(WORKDIR)}\nfigures: {shown(FIG_DIR)}")

# %% [markdown]
# ## Which runs
#
# When training (`RUN` on) or when configs are given, the variants are the configs × sweep
# values, as `ablate` names them. When only reading with no configs given, they are the
# subdirectories of the workdir that hold `seed<k>/final_metrics.json`, in the order of the
# command recorded in the first line of its `results.md` (`python -m mtl_jax.ablate ...`) when
# there is one; that command also gives the sweep (for the pivot tables) and the baseline.


# %%
def finished_runs(workdir: str) -> dict[str, list[int]]:
    """variant → seeds, for every ``<variant>/seed<k>/final_metrics.json`` under ``workdir``."""
    found = {}
    for variant in sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []:
        d = os.path.join(workdir, variant)
        if not os.path.isdir(d):
            continue
        seeds = sorted(
            int(m.group(1))
            for m in map(lambda s: re.fullmatch(r"seed(\d+)", s), os.listdir(d))
            if m and os.path.isfile(os.path.join(d, m.group(0), "final_metrics.json"))
        )
        if seeds:
            found[variant] = seeds
    return found


def recorded_command(workdir: str) -> argparse.Namespace | None:
    """--configs, --sweep, --baseline and --data-config of the ``python -m mtl_jax.ablate``
    command recorded in the first line of ``<workdir>/results.md``; None without one."""
    path = os.path.join(workdir, "results.md")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        m = re.match(r"Command: `python -m mtl_jax\.ablate (.*)`\s*$", f.readline())
    if m is None:
        return None
    ap = argparse.ArgumentParser(add_help=False)
    for flag in ("--configs", "--baseline", "--data-config"):
        ap.add_argument(flag)
    for flag in ("--set", "--sweep"):
        ap.add_argument(flag, nargs="*", default=[])
    return ap.parse_known_args(shlex.split(m.group(1)))[0]


def parse_sweeps(items) -> list[tuple[str, list[str]]]:
    """``key=v1,v2`` items → [(key, values)], as ``ablate --sweep`` reads them."""
    sweeps = []
    for s in items:
        key, _, values = s.partition("=")
        if not values:
            raise ValueError(f"SWEEP {s!r}: expected key=v1,v2,...")
        sweeps.append((key, values.split(",")))
    return sweeps


recorded = recorded_command(WORKDIR)
DISCOVER = CONFIGS is None and not RUN
if DISCOVER:
    found = finished_runs(WORKDIR)
    if not found:
        nested = sorted(
            shown(os.path.join(WORKDIR, d))
            for d in (os.listdir(WORKDIR) if os.path.isdir(WORKDIR) else [])
            if finished_runs(os.path.join(WORKDIR, d))
        )
        hint = f"; it holds ablations in {nested}: point WORKDIR at one" if nested else ""
        raise RuntimeError(
            f"no finished runs (<variant>/seed<k>/final_metrics.json) under {WORKDIR}{hint}"
        )
    config_entries = ablate.parse_configs(recorded.configs) if recorded and recorded.configs else []
    sweeps = parse_sweeps(SWEEP or (recorded.sweep if recorded else []))
    in_order = [v for v, _, _ in ablate.variants(config_entries, sweeps) if v in found]
    VARIANTS = in_order + [v for v in found if v not in in_order]
    SEED_LIST = sorted({s for seeds in found.values() for s in seeds})
    if SEEDS is not None:
        SEED_LIST = [s for s in SEED_LIST if s < SEEDS]
    print(f"found in the workdir: {len(VARIANTS)} variants, seeds {SEED_LIST}")
else:
    config_entries = ablate.parse_configs(",".join(CONFIGS or DEFAULT_CONFIGS))
    sweeps = parse_sweeps(SWEEP)
    VARIANTS = [v for v, _, _ in ablate.variants(config_entries, sweeps)]
    if SEEDS is not None or RUN:
        SEED_LIST = list(range(3 if SEEDS is None else SEEDS))
    else:  # reading the given configs only: every seed they have
        found = finished_runs(WORKDIR)
        SEED_LIST = sorted({s for v in VARIANTS for s in found.get(v, [])})
if BASELINE is None:
    BASELINE = recorded.baseline if recorded and recorded.baseline else "mmoe"
print(f"variants: {VARIANTS}\nseeds: {SEED_LIST}; baseline: {BASELINE}")

# %% [markdown]
# ## Run the ablation
#
# `mtl_jax.ablate` trains every config × seed that has no `final_metrics.json` yet (each run in
# its own process, log in `train.log` beside it) and writes `results.md` and `results.csv` to the
# workdir. When every run is already finished nothing is called, so the `results.md` of a
# finished ablation (and the command recorded in it) is left as it is.

# %%
missing = [
    (v, s)
    for v in VARIANTS
    for s in SEED_LIST
    if not os.path.exists(os.path.join(run_dir(v, s), "final_metrics.json"))
]
print(f"{len(VARIANTS)} variants × {len(SEED_LIST)} seeds; {len(missing)} runs to train")

if missing and RUN:
    argv = ["--configs", ",".join(CONFIGS or DEFAULT_CONFIGS), "--seeds", str(len(SEED_LIST))]
    argv += ["--workdir", WORKDIR, "--configs-dir", os.path.join(ROOT, "configs")]
    argv += ["--baseline", BASELINE, "--parallel", str(PARALLEL)]
    if DATA_CONFIG:
        argv += ["--data-config", DATA_CONFIG]
    if DATA_ARGS:
        argv += ["--data-args", DATA_ARGS]
    if RUNLOCAL:
        argv.append("--runlocal")
    if SET:
        argv += ["--set", *SET]
    if SWEEP:
        argv += ["--sweep", *SWEEP]
    ablate.main(argv)
elif missing:
    print("RUN is off: plotting only the finished runs; missing:", missing)

# %% [markdown]
# ## Results table
#
# Test split, per variant: the seeds counted, the flagged (degenerate) runs left out, and mean ±
# std (over the unflagged seeds, ddof = 1) of each task's headline metric (AUC of a binary task;
# MSE and R² of a regression task, where lower MSE is better), the loss, the hit rates @N of the
# binary tasks (CLICK@2, ORDER@2, when the data has user groups) and the oracle gaps (when the
# data knows the truth). Under the default `masked` cascade the order score is p_click · p_cvr,
# so order AUC is the CTCVR AUC. Then the relative change of the mean headline metric against
# the baseline (a swept variant is compared with the baseline at the same sweep value), and the
# **paired test**: for the unflagged seeds that the variant and its baseline share, the per-seed
# differences d_k = metric(variant, seed k) − metric(baseline, seed k) are compared with all 2^n
# sign flips of them (an exact permutation test of mean d = 0, two-sided). `p` is the share of
# sign patterns whose |mean| is at least the observed one; `*` marks p < 0.05. With n seeds the
# smallest possible p is 2/2^n, so 5 seeds can never reach 0.05 (2/32 = 0.0625) and 2 seeds
# always give p = 1 or 0.5: read small seed counts as a description, not a test.
#
# With one sweep key, a pivot per task follows (config × sweep value), as in `results.md`.

# %%
results = ablate.collect(WORKDIR, VARIANTS, SEED_LIST)  # variant → seed → test metrics
if not results:
    raise RuntimeError(f"no finished runs under {WORKDIR} for {VARIANTS}")
names = list(results)
TASKS, TASK_TYPES = ablate.run_tasks(WORKDIR, results)
FLAGS = ablate.run_flags(WORKDIR, results, TASKS, TASK_TYPES)  # variant → seed → reasons
PRIMARY = [ablate.primary_metric(t, k) for t, k in zip(TASKS, TASK_TYPES)]
# Under a sweep the baseline config runs only as its swept variants: keep its name so that
# every variant meets the baseline at its own sweep value (ablate.baseline_of).
if not any(ablate.baseline_of(v, BASELINE, results) for v in names):
    print(f"baseline {BASELINE!r} did not run here: comparing with {names[0]!r}")
    BASELINE = names[0]
print(
    "tasks: "
    + ", ".join(f"{t} ({k}: {label})" for t, k, (label, _, _) in zip(TASKS, TASK_TYPES, PRIMARY))
)

header, rows = ablate.table(results, BASELINE, TASKS, TASK_TYPES, FLAGS)
show_markdown(markdown_table(header, rows))
if len(sweeps) == 1:
    layout = ablate.pivot_layout(config_entries, sweeps)
    for t, kind in zip(TASKS, TASK_TYPES):
        label = ablate.primary_metric(t, kind)[0]
        print(f"\n{label} by {sweeps[0][0]} (vs {BASELINE} at the same value):\n")
        show_markdown(markdown_table(*ablate.pivot(results, layout, BASELINE, t, kind, FLAGS)))

# %% [markdown]
# ## Flagged runs
#
# A run is flagged when a task's output is degenerate on the val or test split (constant or NaN
# predictions, an AUC of exactly 0.5): the training loop records why under `flags` in
# `final_metrics.json`; runs written before those flags existed are flagged by a NaN headline
# metric or an AUC of exactly 0.5. Flagged runs are left out of the table's means, spreads and
# tests and of every figure below.


# %%
def kept(variant: str) -> list[int]:
    """The seeds of ``variant`` whose run is not flagged."""
    return [s for s in sorted(results[variant]) if s not in FLAGS.get(variant, {})]


if FLAGS:
    print("Flagged runs (left out of every mean, bar, curve and gate figure):")
    for v, per_seed in FLAGS.items():
        for s, reasons in sorted(per_seed.items()):
            print(f"- {v} seed {s}: {'; '.join(reasons)}")
else:
    print(f"No run is flagged: all {sum(map(len, results.values()))} runs are used.")

# %% [markdown]
# ## Headline metric per variant
#
# One panel per task: AUC for a binary task (higher is better), MSE for a regression task (lower
# is better). Bar height: the mean over the unflagged seeds; error bar: the std over them
# (ddof = 1; none with one seed); dots: the individual seeds. The dashed red line is the
# baseline's mean (with a sweep, one mark per bar: its baseline at the same sweep value), so a
# bar on the better side of it beat the baseline on average; whether that is more than seed
# noise is the `p` column above. The y axis is zoomed to the data: differences between models
# are often in the third decimal.


# %%
def per_seed(variant: str, key: str) -> np.ndarray:
    """``key`` of every unflagged seed of ``variant`` (nan where a run lacks it)."""
    return np.array([float(results[variant][s].get(key, math.nan)) for s in kept(variant)])


def mean_std(vals: np.ndarray) -> tuple[float, float]:
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0:
        return math.nan, 0.0
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0


bar_values = {}  # task → variant → the per-seed values drawn
panel_w = max(4.5, 0.45 * len(names) + 1.5)
ncols = max(1, min(len(TASKS), 3, int(18 // panel_w)))
nrows = math.ceil(len(TASKS) / ncols)
fig, axes = plt.subplots(nrows, ncols, figsize=(panel_w * ncols, 4.2 * nrows), squeeze=False)
for ax, task, (label, key, higher) in zip(axes.flat, TASKS, PRIMARY):
    vals = {v: per_seed(v, key) for v in names}
    bar_values[task] = vals
    stats = {v: mean_std(x) for v, x in vals.items()}
    x = np.arange(len(names))
    means = np.array([stats[v][0] for v in names])
    stds = np.array([stats[v][1] for v in names])
    is_base = [ablate.baseline_of(v, BASELINE, results) == v for v in names]
    colors = ["tab:gray" if b else "tab:blue" for b in is_base]
    ax.bar(x, np.nan_to_num(means), yerr=stds, capsize=4, color=colors, alpha=0.8)
    for i, v in enumerate(names):
        pts = vals[v]
        ax.scatter(np.full(len(pts), i) + np.linspace(-0.15, 0.15, len(pts)), pts, s=12, c="k")
        if not np.isfinite(means[i]):
            ax.text(i, 0, "no unflagged\nrun", ha="center", va="bottom", fontsize=7, rotation=90)
    bases = [ablate.baseline_of(v, BASELINE, results) for v in names]
    if len(set(bases)) == 1 and bases[0] is not None:
        ref = stats[bases[0]][0]
        ax.axhline(ref, ls="--", c="tab:red", lw=1, label=f"baseline ({bases[0]})")
    else:
        for i, b in enumerate(bases):
            if b is not None:
                ax.hlines(stats[b][0], i - 0.4, i + 0.4, colors="tab:red", linestyles="--", lw=1)
        ax.plot([], [], ls="--", c="tab:red", lw=1, label=f"{BASELINE} at the same sweep value")
    finite = np.concatenate(
        [means - stds, means + stds, *[x[np.isfinite(x)] for x in vals.values()]]
    )
    finite = finite[np.isfinite(finite)]
    if len(finite):
        lo, hi = finite.min(), finite.max()
        pad = max(0.1 * (hi - lo), 0.002 * max(1.0, abs(hi)))
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    better = "higher" if higher else "lower"
    ax.set_ylabel(f"test {label} ({better} is better)")
    ax.set_title(f"{label}: mean ± std over unflagged seeds", fontsize=10)
    ax.legend(loc="best", fontsize=8)
for ax in axes.flat[len(TASKS) :]:
    ax.set_visible(False)
fig.tight_layout()
finish(fig, "metric_bars")

# %% [markdown]
# ## Learning curves
#
# From each run's `metrics.jsonl`, which the training loop writes as it goes: every task's
# validation headline metric at every evaluation (every `eval_every_steps` and at the end) and
# the training loss at every log step (mean of the steps since the previous log). Lines are the
# mean over the unflagged seeds, bands ± one std over them. A curve still rising (AUC) or falling
# (MSE) at the last step means the runs stopped before convergence (runlocal runs do).
#
# The committed results under `results/` keep only `final_metrics.json` (no logs), so they have
# no curves: train the ablation again (`RUN` on, into a new workdir) to get them.

# %%
CURVES = [("val", key, f"val {label}") for label, key, _ in PRIMARY]
CURVES.append(("train", "loss", "train loss"))
run_logs = {(v, s): logs.read_metrics(run_dir(v, s)) for v in names for s in kept(v)}
logged = [v for v in names if any(run_logs[v, s] for s in kept(v))]


def curve(variant: str, split: str, key: str):
    """(steps, mean, std) over the unflagged seeds of ``variant`` that logged ``key``, at the
    steps each of them logged."""
    per_seed_logs = []
    for s in kept(variant):
        points = {}
        for r in run_logs[variant, s]:
            if r["split"] == split and key in r:
                points[r["step"]] = r[key]  # a resumed run may log a step twice: keep the last
        if points:
            per_seed_logs.append(points)
    steps = sorted(set.intersection(*(set(p) for p in per_seed_logs))) if per_seed_logs else []
    if not steps:
        return np.array([]), np.array([]), np.array([])
    vals = np.array([[p[t] for t in steps] for p in per_seed_logs], float)
    std = np.nanstd(vals, axis=0, ddof=1) if len(vals) > 1 else np.zeros(len(steps))
    return np.array(steps), np.nanmean(vals, axis=0), std


curve_data = {}  # (split, key, variant) → (steps, mean, std)
if not logged:
    print(
        f"No learning curves: none of the {len(run_logs)} unflagged runs under {shown(WORKDIR)} "
        "kept a metrics.jsonl (the committed results keep only final_metrics.json). Train the "
        "ablation again (RUN on, into a new WORKDIR) to get them."
    )
else:
    if len(logged) < len(names):
        print(f"no metrics.jsonl, not drawn: {[v for v in names if v not in logged]}")
    ncols = min(3, len(CURVES))
    nrows = math.ceil(len(CURVES) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (split, key, label) in zip(axes.flat, CURVES):
        for v in logged:
            steps, mean, std = curve(v, split, key)
            curve_data[split, key, v] = (steps, mean, std)
            if len(steps) == 0:
                continue
            (line,) = ax.plot(steps, mean, marker="o", ms=3, label=v)
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(CURVES) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    finish(fig, "learning_curves")

# %% [markdown]
# ## Gate weights over experts
#
# For every model with gates (MMoE, OMoE, CGC, PLE, the attention models, ...): the mean gate
# weight each task gives each expert on the test split at the end of training (`gates/mean` of
# `final_metrics.json`, the last evaluation), averaged over the unflagged seeds; three models per
# row. Each row sums to 1; a uniform row (every cell 1/E) means the gate does not discriminate,
# one bright cell means the task's gate collapsed onto one expert (the run's log warns about
# that too). Rows that differ between tasks mean the tasks use the experts differently, which is
# what multi-gate models are for. For CGC/PLE a task's expert axis is its own specific experts
# first, then the shared ones. All models share one colour scale (0 to the largest weight
# shown) and every cell is labelled with its weight. The title gives the normalised gate entropy
# per task (1 = uniform, 0 = one-hot). Models without gates (shared bottom, single-task MLP, ...)
# are skipped with a note.

# %%
gated = {}
for v in names:
    seeds_with_gates = [s for s in kept(v) if "gates/mean" in results[v][s]]
    if not kept(v):
        print(f"{v}: every run is flagged, skipped")
        continue
    if not seeds_with_gates:
        print(f"{v}: no gates (the model has no gating network), skipped")
        continue
    mats = [np.asarray(results[v][s]["gates/mean"], float) for s in seeds_with_gates]
    if len({m.size for m in mats}) > 1 or mats[0].size % len(TASKS):
        print(f"{v}: gates/mean is not {len(TASKS)} tasks × experts in every run, skipped")
        continue
    ent = [
        np.atleast_1d(results[v][s].get("gates/entropy_norm", math.nan)) for s in seeds_with_gates
    ]
    gated[v] = (  # [T, E]; metrics.jsonl stores it flat
        np.mean([m.reshape(len(TASKS), -1) for m in mats], axis=0),
        np.nanmean(np.array(ent, float), axis=0),
    )

if gated:
    per_row = min(3, len(gated))
    nrows = math.ceil(len(gated) / per_row)
    max_e = max(g[0].shape[1] for g in gated.values())
    cell_w, cell_h = max(3.6, 0.55 * max_e + 1.6), max(2.3, 0.5 * len(TASKS) + 1.6)
    fig, axes = plt.subplots(
        nrows,
        per_row,
        figsize=(cell_w * per_row + 1, cell_h * nrows),
        squeeze=False,
        layout="constrained",
    )
    top = max(max(float(g[0].max()) for g in gated.values()), 1e-6)  # one scale for all models
    for ax, (v, (mean, ent)) in zip(axes.flat, gated.items()):
        T, E = mean.shape
        im = ax.imshow(mean, cmap="viridis", vmin=0, vmax=top, aspect="auto")
        for t in range(T):
            for e in range(E):
                ax.text(
                    e,
                    t,
                    f"{mean[t, e]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="w" if mean[t, e] < 0.6 * top else "k",
                )
        ax.set_xticks(range(E), [f"e{e}" for e in range(E)], fontsize=7)
        ax.set_yticks(range(T), TASKS, fontsize=8)
        ent_txt = ", ".join(f"{t} {x:.2f}" for t, x in zip(TASKS, np.atleast_1d(ent)))
        ax.set_title(f"{v}\nentropy/log E: {ent_txt}", fontsize=8)
    for ax in axes.flat[len(gated) :]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes, shrink=min(0.9, 3 / nrows + 0.2), label="gate weight")
    fig.suptitle("mean gate weight per task (rows) and expert (columns), test split")
    finish(fig, "gate_weights")
else:
    print("no variant has gates: no gate figure")

# %% [markdown]
# ## Files written
#
# The figures of this run, in `FIG_DIR`: by default beside the results table, so a finished
# ablation directory holds its table (`results.md`, `results.csv`), every run, and the plots.

# %%
for path in SAVED:
    print(shown(path))
