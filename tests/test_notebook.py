"""notebooks/ablations: the .py and .ipynb agree, and the notebook executes on a tiny ablation."""

import csv
import json
import os
import sys

import jupytext  # the test extra installs these; a skip here would let the notebook rot
import nbclient
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
PY = os.path.join(NOTEBOOKS, "ablations.py")
IPYNB = os.path.join(NOTEBOOKS, "ablations.ipynb")


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
    workdir = tmp_path / "ablation"
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
    for name in ("auc_bars", "learning_curves", "gate_weights"):
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

    with open(workdir / "results.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["model", "seeds"]
    assert sorted(r[0] for r in rows[1:]) == ["mmoe", "shared_bottom"]
    assert all(r[1] == "2" for r in rows[1:])
    for v in ("mmoe", "shared_bottom"):
        for s in (0, 1):
            assert (workdir / v / f"seed{s}" / "final_metrics.json").exists()
