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
# # Serving: train, export, and score raw rows with the exported model alone
#
# 1. train MMoE on census-income (`configs/census.py:runlocal`, seconds on a CPU),
# 2. export it (`python -m mtl_jax.export`: a `jax.export` StableHLO artifact with its
#    parameters, schema, preprocessing and signature),
# 3. load the export directory with `mtl_jax.serving.load` — no model code, no config — and score a
#    few raw census rows, mapped with the run's own vocabularies and scaling,
# 4. check that the scores equal `python -m mtl_jax.predict` on the same rows.
#
# Settings come from the environment: `MTL_JAX_NOTEBOOK_SERVING_DIR` (default
# `runs/serving_demo`, relative to the repository root) and `MTL_JAX_NOTEBOOK_ROWS` (default 5).
# A finished run in that directory is reused.

# %%
import gzip
import itertools
import os
import subprocess
import sys

import numpy as np
import pyarrow.csv as pacsv

import mtl_jax

# The repository root: where the (editable) package and configs/ are.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mtl_jax.__file__)))
if not os.path.isfile(os.path.join(ROOT, "configs", "census.py")):
    raise RuntimeError(f"{ROOT}: no configs/ next to mtl_jax/ (install with pip install -e .)")
os.chdir(ROOT)
WORKDIR = os.path.abspath(os.environ.get("MTL_JAX_NOTEBOOK_SERVING_DIR", "runs/serving_demo"))
ROWS = int(os.environ.get("MTL_JAX_NOTEBOOK_ROWS", "5"))
RUN, EXPORT = os.path.join(WORKDIR, "run"), os.path.join(WORKDIR, "export")
DATA = "../shared/data/census-income/keras-mmoe/census-income.test.gz"


def sh(*args):
    """One mtl_jax command with this interpreter; its last lines, or its error."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    print("\n".join(proc.stdout.strip().splitlines()[-3:]))


# %% [markdown]
# ## 1–2. Train and export

# %%
if not os.path.exists(os.path.join(RUN, "final_metrics.json")):
    sh("-m", "mtl_jax.train", "--config", "configs/census.py:runlocal", "--workdir", RUN)
sh("-m", "mtl_jax.export", "--workdir", RUN, "--out", EXPORT, "--platforms", "cpu")
print(sorted(os.listdir(EXPORT)))

# %% [markdown]
# ## 3. Score raw rows with the export directory alone

# %%
from mtl_jax import predict, serving  # noqa: E402

# The first rows of the raw census file, as a new file of the same format.
rows_file = os.path.join(WORKDIR, "rows.data")
with gzip.open(DATA, "rt") as src, open(rows_file, "w") as dst:
    dst.writelines(itertools.islice(src, ROWS))

model = serving.load(EXPORT)
raw = predict.read_raw(rows_file, model.preprocessing)
print(f"{raw.num_rows} raw rows, columns such as {raw.column_names[:6]}")
scores = model.score(raw)
print(scores)
unseen = {f: n["unseen"] for f, n in model.last_id_counts.items() if n["unseen"]}
print("ids unseen in training (mapped to 0):", unseen or "none")

# %% [markdown]
# ## 4. The same scores as `python -m mtl_jax.predict`

# %%
preds_csv = os.path.join(WORKDIR, "preds.csv")
sh("-m", "mtl_jax.predict", "--workdir", RUN, "--data-path", rows_file, "--out", preds_csv)
ref = pacsv.read_csv(preds_csv)
for c in scores.column_names:
    if c in ref.column_names and c != "row":
        np.testing.assert_allclose(scores.column(c).to_numpy(), ref.column(c).to_numpy(), atol=1e-6)
print(f"exported model == predict on {ROWS} rows (atol 1e-6)")
