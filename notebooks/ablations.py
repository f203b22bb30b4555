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
# # Ablations: configs × seeds → table, bar charts, learning curves, gate weights
#
# This notebook runs an ablation with `mtl_jax.ablate` (every config × seed is one
# `python -m mtl_jax.train` run in `<WORKDIR>/<variant>/seed<k>`) and plots what the runs wrote:
#
# 1. the results table (test split, mean ± std over seeds, paired test against the baseline),
# 2. click and order AUC per variant as bars with error bars,
# 3. learning curves (validation AUCs and training loss against the step),
# 4. the per-task gate weights over the experts, for the models that have gates.
#
# Figures are shown and also saved as PNG under `<WORKDIR>/figures/`.
#
# `notebooks/ablations.py` (jupytext percent format) and `notebooks/ablations.ipynb` are paired:
# edit either and run `jupytext --sync notebooks/ablations.py` to update the other.
# `tests/test_notebook.py` executes the notebook on a tiny runlocal ablation in CI.
#
# **Plotting a finished ablation without re-running it.** Runs whose `final_metrics.json` exists
# are never trained again, so point `WORKDIR` at the directory of a finished ablation (e.g.
# `results/synthetic`) with the same configs and seed count, or set `MTL_JAX_NOTEBOOK_RUN=0` to
# only read what is there:
#
# ```bash
# MTL_JAX_NOTEBOOK_WORKDIR=results/synthetic MTL_JAX_NOTEBOOK_CONFIGS=mmoe,coarse_attention \
#   MTL_JAX_NOTEBOOK_SEEDS=5 MTL_JAX_NOTEBOOK_RUN=0 \
#   python notebooks/ablations.py   # as a script: prints the table, saves the figures
# ```
#
# `jupyter execute notebooks/ablations.ipynb` (nbclient) runs it in a kernel instead;
# add `--output=ablations_run` to keep the executed notebook with its figures.

# %% [markdown]
# ## Parameters
#
# Every parameter can be overridden by an environment variable (CI uses them to run a tiny
# version): `MTL_JAX_NOTEBOOK_CONFIGS` (comma-separated config names under `configs/`),
# `MTL_JAX_NOTEBOOK_SEEDS` (seeds 0 … n−1), `MTL_JAX_NOTEBOOK_WORKDIR` (relative to the repository
# root), `MTL_JAX_NOTEBOOK_RUNLOCAL` (1/0: the seconds-long `:runlocal` configs),
# `MTL_JAX_NOTEBOOK_SET` (space-separated `key=value` config overrides for all runs, as
# `ablate --set`), `MTL_JAX_NOTEBOOK_SWEEP` (space-separated `key=v1,v2`, as `ablate --sweep`),
# `MTL_JAX_NOTEBOOK_BASELINE`, `MTL_JAX_NOTEBOOK_PARALLEL` and `MTL_JAX_NOTEBOOK_RUN` (1/0: train
# the missing runs, or only read the finished ones).

# %%
import importlib.util
import json
import os
import shlex
import sys
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

# %% tags=["parameters"]
CONFIGS = ["mmoe", "omoe", "shared_bottom", "coarse_attention"]
SEEDS = 3
WORKDIR = "runs/ablation_runlocal"
RUNLOCAL = True
SET: list[str] = []  # e.g. ["num_epochs=1"]
SWEEP: list[str] = []  # e.g. ["model.embed_dim=8,16"]
BASELINE = "mmoe"
PARALLEL = 1
RUN = True

_env = os.environ.get
CONFIGS = [c for c in _env("MTL_JAX_NOTEBOOK_CONFIGS", ",".join(CONFIGS)).split(",") if c]
SEEDS = int(_env("MTL_JAX_NOTEBOOK_SEEDS", SEEDS))
WORKDIR = _env("MTL_JAX_NOTEBOOK_WORKDIR", WORKDIR)
RUNLOCAL = _env("MTL_JAX_NOTEBOOK_RUNLOCAL", "1" if RUNLOCAL else "0") == "1"
SET = shlex.split(_env("MTL_JAX_NOTEBOOK_SET", shlex.join(SET)))
SWEEP = shlex.split(_env("MTL_JAX_NOTEBOOK_SWEEP", shlex.join(SWEEP)))
BASELINE = _env("MTL_JAX_NOTEBOOK_BASELINE", BASELINE)
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
FIG_DIR = os.path.join(WORKDIR, "figures")
os.makedirs(FIG_DIR, exist_ok=True)


def finish(fig, name: str) -> None:
    """Saves ``fig`` as ``<FIG_DIR>/<name>.png``; shows it in a notebook, closes it otherwise."""
    path = os.path.join(FIG_DIR, f"{name}.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    if _IN_KERNEL:
        plt.show()
    else:
        plt.close(fig)
    print(f"saved {shown(path)}")


def shown(path: str) -> str:
    """``path`` relative to the repository root when it lies inside it."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def run_dir(variant: str, seed: int) -> str:
    return os.path.join(WORKDIR, variant, f"seed{seed}")


print(f"repository root: {ROOT}\nworkdir: {WORKDIR}\nconfigs: {CONFIGS}, seeds: {SEEDS}")

# %% [markdown]
# ## Run the ablation
#
# `mtl_jax.ablate` trains every config × seed that has no `final_metrics.json` yet (each run in
# its own process, log in `train.log` beside it) and writes `results.md` and `results.csv` to the
# workdir. When every run is already finished nothing is called, so the `results.md` of a
# finished ablation (and the command recorded in it) is left as it is.

# %%
sweeps = []
for s in SWEEP:  # the same parsing as `ablate --sweep`
    key, _, values = s.partition("=")
    sweeps.append((key, values.split(",")))
VARIANTS = [name for name, _, _ in ablate.variants(CONFIGS, sweeps)]
SEED_LIST = list(range(SEEDS))
missing = [
    (v, s)
    for v in VARIANTS
    for s in SEED_LIST
    if not os.path.exists(os.path.join(run_dir(v, s), "final_metrics.json"))
]
print(f"{len(VARIANTS)} variants × {SEEDS} seeds; {len(missing)} runs to train")

if missing and RUN:
    argv = ["--configs", ",".join(CONFIGS), "--seeds", str(SEEDS), "--workdir", WORKDIR]
    argv += ["--configs-dir", os.path.join(ROOT, "configs"), "--baseline", BASELINE]
    argv += ["--parallel", str(PARALLEL)]
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
# Test split, per variant: mean ± std (over seeds, ddof = 1) of click AUC, order AUC (under the
# default `masked` cascade the order score is p_click · p_cvr, so this is the CTCVR AUC), loss,
# CLICK@2 and ORDER@2; the relative change of the mean AUCs against the baseline; and the
# **paired test**: for the seeds that the variant and the baseline share, the per-seed differences
# d_k = AUC(variant, seed k) − AUC(baseline, seed k) are compared with all 2^n sign flips of
# them (an exact permutation test of mean d = 0, two-sided). `p` is the share of sign patterns
# whose |mean| is at least the observed one; `*` marks p < 0.05. With n seeds the smallest possible
# p is 2/2^n, so 5 seeds can never reach 0.05 (2/32 = 0.0625) and 2 seeds always give p = 1 or
# 0.5: read small seed counts as a description, not a test.

# %%
results = ablate.collect(WORKDIR, VARIANTS, SEED_LIST)  # variant → seed → test metrics
if not results:
    raise RuntimeError(f"no finished runs under {WORKDIR} for {VARIANTS}")
baseline = BASELINE if BASELINE in results else next(iter(results))
header, rows = ablate.table(results, baseline)
table_md = "\n".join(
    ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    + ["| " + " | ".join(r) + " |" for r in rows]
)
if _IN_KERNEL:
    from IPython.display import Markdown, display

    display(Markdown(table_md))
else:
    print(table_md)

# %% [markdown]
# ## Click and order AUC per variant
#
# Bar height: mean test AUC over seeds; error bar: the std over seeds (ddof = 1; none with one
# seed); dots: the individual seeds. The dashed line is the baseline's mean, so a bar above it
# beat the baseline on average; whether that is more than seed noise is the `p` column above.
# The y axis is zoomed to the data: differences between models are often in the third decimal.

# %%
AUC_KEYS = [("click AUC", "click/auc"), ("order AUC", "order/auc")]


def per_seed(variant: str, key: str) -> np.ndarray:
    return np.array([results[variant][s].get(key, np.nan) for s in sorted(results[variant])])


names = list(results)
fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(names) + 4), 4))
for ax, (label, key) in zip(axes, AUC_KEYS):
    vals = [per_seed(v, key) for v in names]
    means = np.array([np.nanmean(x) for x in vals])
    stds = np.array([np.nanstd(x, ddof=1) if np.sum(np.isfinite(x)) > 1 else 0.0 for x in vals])
    x = np.arange(len(names))
    colors = ["tab:gray" if v == baseline else "tab:blue" for v in names]
    ax.bar(x, means, yerr=stds, capsize=5, color=colors, alpha=0.8)
    for i, v in enumerate(vals):
        ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, s=12, c="k", zorder=3)
    ax.axhline(
        means[names.index(baseline)], ls="--", c="tab:red", lw=1, label=f"baseline ({baseline})"
    )
    lo = np.nanmin(np.concatenate([np.atleast_1d(m - s) for m, s in zip(means, stds)] + vals))
    hi = np.nanmax(np.concatenate([np.atleast_1d(m + s) for m, s in zip(means, stds)] + vals))
    pad = max(0.1 * (hi - lo), 0.002)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel(f"test {label}")
    ax.set_title(f"{label}: mean ± std over seeds")
    ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
finish(fig, "auc_bars")

# %% [markdown]
# ## Learning curves
#
# From each run's `metrics.jsonl`: validation click and order AUC at every evaluation (every
# `eval_every_steps` and at the end) and the training loss at every log step (mean of the steps
# since the previous log). Lines are the mean over seeds, bands ± one std over seeds. A curve
# still rising at the last step means the runs stopped before convergence (runlocal runs do).

# %%
CURVES = [
    ("val", "click/auc", "val click AUC"),
    ("val", "order/auc", "val order AUC"),
    ("train", "loss", "train loss"),
]


def curve(variant: str, split: str, key: str):
    """(steps, mean, std) over the seeds of ``variant``, at the steps every seed logged."""
    per_seed_logs = []
    for s in sorted(results[variant]):
        points = {}
        for r in logs.read_metrics(run_dir(variant, s)):
            if r["split"] == split and key in r:
                points[r["step"]] = r[key]  # a resumed run may log a step twice: keep the last
        per_seed_logs.append(points)
    steps = sorted(set.intersection(*(set(p) for p in per_seed_logs))) if per_seed_logs else []
    vals = np.array([[p[t] for t in steps] for p in per_seed_logs], float)
    if not steps:
        return np.array([]), np.array([]), np.array([])
    std = np.nanstd(vals, axis=0, ddof=1) if len(vals) > 1 else np.zeros(len(steps))
    return np.array(steps), np.nanmean(vals, axis=0), std


fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 4))
for ax, (split, key, label) in zip(axes, CURVES):
    for v in names:
        steps, mean, std = curve(v, split, key)
        if len(steps) == 0:
            continue
        (line,) = ax.plot(steps, mean, marker="o", ms=3, label=v)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("step")
    ax.set_title(label)
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=8)
fig.tight_layout()
finish(fig, "learning_curves")

# %% [markdown]
# ## Gate weights over experts
#
# For every model with gates (MMoE, OMoE, CGC, PLE, the attention models, ...): the mean gate
# weight each task gives each expert on the test split at the end of training (`gates/mean` of
# `final_metrics.json`, the last evaluation), averaged over seeds. Each row sums to 1; a uniform
# row (every cell 1/E) means the gate does not discriminate, one bright cell means the task's
# gate collapsed onto one expert (the run's log warns about that too). Rows that differ between
# tasks mean the tasks use the experts differently, which is what multi-gate models are for. For
# CGC/PLE a task's expert axis is its own specific experts first, then the shared ones. The title
# gives the normalised gate entropy per task (1 = uniform, 0 = one-hot). Models without gates
# (shared bottom, single-task MLP, ...) are skipped with a note.


# %%
def tasks_of(variant: str) -> list[str]:
    for s in sorted(results[variant]):
        path = os.path.join(run_dir(variant, s), "schema.json")
        if os.path.exists(path):
            with open(path) as f:
                return list(json.load(f)["tasks"])
    return ["click", "order"]


gated = {}
for v in names:
    seeds_with_gates = [s for s in sorted(results[v]) if "gates/mean" in results[v][s]]
    if not seeds_with_gates:
        print(f"{v}: no gates (the model has no gating network), skipped")
        continue
    tasks = tasks_of(v)
    mats, ent = [], []
    for s in seeds_with_gates:
        m = np.asarray(results[v][s]["gates/mean"], float)
        mats.append(m.reshape(len(tasks), -1))  # [T, E]; metrics.jsonl stores it flat
        ent.append(np.asarray(results[v][s].get("gates/entropy_norm", np.nan), float))
    gated[v] = (tasks, np.mean(mats, axis=0), np.nanmean(np.array(ent, float), axis=0))

if gated:
    fig, axes = plt.subplots(
        1,
        len(gated),
        figsize=(max(4.5, 0.9 * max(g[1].shape[1] for g in gated.values()) + 2) * len(gated), 3.4),
        squeeze=False,
        layout="constrained",
    )
    for ax, (v, (tasks, mean, ent)) in zip(axes[0], gated.items()):
        T, E = mean.shape
        im = ax.imshow(
            mean, cmap="viridis", vmin=0, vmax=max(float(mean.max()), 1e-6), aspect="auto"
        )
        for t in range(T):
            for e in range(E):
                ax.text(
                    e,
                    t,
                    f"{mean[t, e]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="w" if mean[t, e] < 0.6 * mean.max() else "k",
                )
        ax.set_xticks(range(E), [f"e{e}" for e in range(E)])
        ax.set_yticks(range(T), tasks)
        ax.set_xlabel("expert")
        ent_txt = ", ".join(f"{t} {x:.2f}" for t, x in zip(tasks, np.atleast_1d(ent)))
        ax.set_title(f"{v}\nentropy/log E: {ent_txt}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.9)
    fig.suptitle("mean gate weight per task and expert (test split, mean over seeds)")
    finish(fig, "gate_weights")
else:
    print("no variant has gates: no gate figure")

# %% [markdown]
# ## Files written
#
# The figures lie beside the results table, so a finished ablation directory holds its table
# (`results.md`, `results.csv`), every run, and the plots.

# %%
for f in sorted(os.listdir(FIG_DIR)):
    print(shown(os.path.join(FIG_DIR, f)))
