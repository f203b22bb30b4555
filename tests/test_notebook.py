"""notebooks/ablations: the .py and .ipynb agree, the notebook executes on a tiny ablation, reads
every committed result under results/ and keeps flagged runs out of its figures."""

import csv
import glob
import json
import os
import runpy
import subprocess
import sys

import jupytext  # the test extra installs these; a skip here would let the notebook rot
import nbclient
import numpy as np
import pytest

from mtl_jax import ablate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
PY = os.path.join(NOTEBOOKS, "ablations.py")
IPYNB = os.path.join(NOTEBOOKS, "ablations.ipynb")
RESULTS = os.path.join(ROOT, "results")
# Every directory under results/, at any depth, that holds runs
# (<variant>/seed<k>/final_metrics.json), relative to results/.
COMMITTED = sorted(
    {
        os.path.relpath(os.path.dirname(os.path.dirname(os.path.dirname(p))), RESULTS)
        for p in glob.glob(
            os.path.join(RESULTS, "**", "seed*", "final_metrics.json"), recursive=True
        )
    }
)


def _clear_notebook_env(monkeypatch):
    """No MTL_JAX_NOTEBOOK_* from the caller's shell leaks into a test."""
    for k in list(os.environ):
        if k.startswith("MTL_JAX_NOTEBOOK_"):
            monkeypatch.delenv(k)


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_py_and_ipynb_are_in_sync():
    from_py = jupytext.read(PY)
    from_ipynb = jupytext.read(IPYNB)
    assert _cells(from_ipynb) == _cells(from_py), (
        "notebooks/ablations.py and .ipynb differ: run `jupytext --sync notebooks/ablations.py`"
    )
    assert from_ipynb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert all(not c.get("outputs") for c in from_ipynb.cells if c.cell_type == "code"), (
        "commit the .ipynb without outputs"
    )


@pytest.mark.slow
def test_notebook_executes_on_a_tiny_ablation(tmp_path, monkeypatch):
    # A kernel spec pinned to this interpreter, so the kernel sees the same packages as pytest.
    spec_dir = tmp_path / "jupyter" / "kernels" / "mtl-jax-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "mtl_jax test",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # The kernel and the training subprocesses inherit this environment (conftest also sets
    # MTL_JAX_NO_PROGRESS=1). One CPU device: the runs are tiny and the machine has few cores.
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
    _clear_notebook_env(monkeypatch)
    workdir = tmp_path / "ablation"
    # The task-relatedness data (two regression tasks), through --data-config.
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_DATA_CONFIG", "relatedness")
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_CONFIGS", "mmoe,shared_bottom")
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_SEEDS", "2")
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_WORKDIR", str(workdir))
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_RUNLOCAL", "1")
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_RUN", "1")
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_PARALLEL", "2")
    # 40 steps with a validation eval at step 20 and the final one at 40: two points per curve.
    monkeypatch.setenv(
        "MTL_JAX_NOTEBOOK_SET",
        "num_steps=40 eval_every_steps=20 log_every_steps=10 checkpoint_every_steps=1000",
    )

    nb = jupytext.read(PY)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="mtl-jax-test",
        timeout=900,
        resources={"metadata": {"path": NOTEBOOKS}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    for name in ("metric_bars", "learning_curves", "gate_weights"):
        assert (workdir / "figures" / f"{name}.png").stat().st_size > 0, name
    images = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "display_data" and "image/png" in o.get("data", {})
    ]
    assert len(images) == 3
    text = "".join(
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "stream"
    )
    assert "shared_bottom: no gates" in text
    assert "tasks: y1 (regression: y1 MSE), y2 (regression: y2 MSE)" in text
    tables = "".join(
        o.get("data", {}).get("text/markdown", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "display_data"
    )
    assert "| y1 MSE | y2 MSE |" in tables

    with open(workdir / "results.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["model", "seeds"]
    assert sorted(r[0] for r in rows[1:]) == ["mmoe", "shared_bottom"]
    assert all(r[1] == "2" for r in rows[1:])
    for v in ("mmoe", "shared_bottom"):
        for s in (0, 1):
            assert (workdir / v / f"seed{s}" / "final_metrics.json").exists()
    with open(workdir / "mmoe" / "seed0" / "config.json") as f:
        assert json.load(f)["data"]["kind"] == "relatedness"


def _tree(path):
    """path → (size, mtime) of every file under ``path``."""
    out = {}
    for d, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(d, f))
            out[os.path.join(d, f)] = (st.st_size, st.st_mtime_ns)
    return out


def test_the_committed_results_are_found():
    assert {"census_5seed", "synthetic_5seed", "synthetic_default"} <= set(COMMITTED)


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMITTED)
def test_notebook_reads_every_committed_result(name, tmp_path):
    """``MTL_JAX_NOTEBOOK_RUN=0`` on a results directory, as a script, nothing else given: it
    finds the variants and seeds itself, tables each task's headline metric, and writes its
    figures to FIG_DIR, leaving results/ as it was."""
    workdir = os.path.join(RESULTS, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTL_JAX_NOTEBOOK_")}
    env.update(
        MTL_JAX_NOTEBOOK_WORKDIR=os.path.relpath(workdir, ROOT),
        MTL_JAX_NOTEBOOK_RUN="0",
        MTL_JAX_NOTEBOOK_FIG_DIR=str(tmp_path / "figures"),
        MPLBACKEND="Agg",
    )
    before = _tree(RESULTS)
    proc = subprocess.run(
        [sys.executable, PY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tree(RESULTS) == before, "the notebook wrote into results/"

    variants = sorted(
        {p.split(os.sep)[-3] for p in glob.glob(os.path.join(workdir, "*", "seed*", "*.json"))}
    )
    assert f"found in the workdir: {len(variants)} variants" in proc.stdout
    results = ablate.collect(workdir, variants, range(100))
    tasks, types = ablate.run_tasks(workdir, results)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for t, k in zip(tasks, types):
        col = header.index(ablate.primary_metric(t, k)[0])
        for row in lines[1 : 1 + len(variants)]:
            cell = row.strip("|").split("|")[col].strip()
            assert cell[0].isdigit() and "nan" not in cell, (t, row)

    figures = tmp_path / "figures"
    assert (figures / "metric_bars.png").stat().st_size > 0
    gates = any("gates/mean" in m for per_seed in results.values() for m in per_seed.values())
    assert (figures / "gate_weights.png").exists() == gates
    logged = glob.glob(os.path.join(workdir, "*", "seed*", "metrics.jsonl"))
    assert (figures / "learning_curves.png").exists() == bool(logged)
    if not logged:
        assert "No learning curves: none of the" in proc.stdout


def _fake_run(root, variant, seed, test, *, flags=None, val_curve, gates=None):
    """One regression run (tasks y1/y2) as the training loop leaves it: schema.json,
    final_metrics.json and a metrics.jsonl with two evaluations and two log steps."""
    d = root / variant / f"seed{seed}"
    d.mkdir(parents=True)
    schema = {"tasks": ["y1", "y2"], "task_types": ["regression", "regression"]}
    (d / "schema.json").write_text(json.dumps(schema))
    if gates is not None:
        test = dict(test, **{"gates/mean": gates, "gates/entropy_norm": [0.9, 0.9]})
    final = {"val": test, "test": test, "flags": flags or {}}
    (d / "final_metrics.json").write_text(json.dumps(final))
    lines = []
    for step, (y1, y2) in zip((10, 20), val_curve):
        lines.append({"step": step, "split": "train", "loss": y1 + y2})
        lines.append({"step": step, "split": "val", "y1/mse": y1, "y2/mse": y2})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_a_flagged_run_stays_out_of_bars_curves_and_gates(tmp_path, monkeypatch, capsys):
    """A finished regression sweep with one degenerate run (y2 constant: MSE 99): the notebook,
    reading the workdir alone, takes the tasks, baseline, order and sweep from the runs and
    their recorded command, names the flagged run with its reason and keeps it out of every
    figure."""
    workdir = tmp_path / "rel"
    uniform = [[0.25] * 4, [0.25] * 4]
    for model in ("shared_bottom", "mmoe"):
        for corr in ("0.0", "1.0"):
            variant = f"{model}[correlation={corr}]"
            for seed in range(3):
                mse = 0.5 + 0.1 * seed
                test = {"y1/mse": mse, "y1/r2": 0.5, "y2/mse": mse, "y2/r2": 0.5, "loss": 1.0}
                kw = dict(val_curve=[(mse + 1, mse + 1), (mse, mse)])
                if model == "mmoe":
                    kw["gates"] = uniform
                if variant == "mmoe[correlation=1.0]" and seed == 2:
                    test["y2/mse"] = 99.0
                    kw.update(
                        flags={"test": {"y2": ["constant predictions (std 0)"]}},
                        val_curve=[(1.6, 99.0), (0.7, 99.0)],
                        gates=[[1.0, 0, 0, 0], [1.0, 0, 0, 0]],
                    )
                _fake_run(workdir, variant, seed, test, **kw)
    (workdir / "results.md").write_text(
        "Command: `python -m mtl_jax.ablate --data-config relatedness --configs "
        "shared_bottom,mmoe --seeds 3 --workdir runs/rel --baseline shared_bottom --sweep "
        "data.relatedness.correlation=0.0,1.0`\n"
    )
    before = _tree(workdir)
    _clear_notebook_env(monkeypatch)
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_WORKDIR", str(workdir))
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_RUN", "0")
    monkeypatch.setenv("MTL_JAX_NOTEBOOK_FIG_DIR", str(tmp_path / "figures"))
    monkeypatch.chdir(ROOT)  # the notebook changes to the repository root; restored after
    g = runpy.run_path(PY, run_name="__main__")
    out = capsys.readouterr().out

    assert g["TASKS"] == ("y1", "y2") and g["TASK_TYPES"] == ("regression", "regression")
    assert g["BASELINE"] == "shared_bottom"  # from the recorded command
    assert g["VARIANTS"] == [
        "shared_bottom[correlation=0.0]", "shared_bottom[correlation=1.0]",
        "mmoe[correlation=0.0]", "mmoe[correlation=1.0]",
    ]  # fmt: skip
    assert g["SEED_LIST"] == [0, 1, 2]
    assert "- mmoe[correlation=1.0] seed 2: test y2: constant predictions (std 0)" in out
    assert "y1 MSE by data.relatedness.correlation (vs shared_bottom at the same value)" in out
    flagged = "mmoe[correlation=1.0]"
    assert list(g["bar_values"]["y2"][flagged]) == pytest.approx([0.5, 0.6])
    assert list(g["bar_values"]["y2"]["mmoe[correlation=0.0]"]) == pytest.approx([0.5, 0.6, 0.7])
    steps, mean, _ = g["curve_data"]["val", "y2/mse", flagged]
    assert list(steps) == [10, 20] and list(mean) == pytest.approx([1.55, 0.55])
    assert g["gated"][flagged][0] == pytest.approx(np.full((2, 4), 0.25))
    assert "shared_bottom[correlation=0.0]: no gates" in out
    for name in ("metric_bars", "learning_curves", "gate_weights"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0, name
    assert _tree(workdir) == before


SERVING = os.path.join(NOTEBOOKS, "serving.py")


def test_serving_py_and_ipynb_are_in_sync():
    from_py = jupytext.read(SERVING)
    from_ipynb = jupytext.read(SERVING.replace(".py", ".ipynb"))
    assert _cells(from_ipynb) == _cells(from_py), (
        "notebooks/serving.py and .ipynb differ: run `jupytext --sync notebooks/serving.py`"
    )


@pytest.mark.slow
def test_serving_notebook_scores_raw_rows_with_the_export(shared_data, tmp_path):
    """As a script: trains census runlocal, exports, scores raw rows from the export directory
    alone and checks them against ``mtl_jax.predict`` (the notebook asserts the equality). The
    notebook reads the census sample under ../shared/data, so without it the test is skipped."""
    del shared_data  # the notebook finds the data itself, relative to the repository
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTL_JAX_NOTEBOOK_")}
    env.update(MTL_JAX_NOTEBOOK_SERVING_DIR=str(tmp_path / "demo"), MTL_JAX_NOTEBOOK_ROWS="7")
    proc = subprocess.run(
        [sys.executable, SERVING], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "7 raw rows" in proc.stdout
    assert "exported model == predict on 7 rows (atol 1e-6)" in proc.stdout
