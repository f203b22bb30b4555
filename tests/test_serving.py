"""From a trained run to scores: in-process evaluation, ``mtl_jax.predict`` and the exported
``jax.export`` artifact (``mtl_jax.serving``) give the same scores for every model family.

Tolerance: 1e-6 absolute on every probability, value and ranking score (float32; the artifact is
compiled apart from the in-process step, so the fusion may differ; on CPU they agree exactly).
Where jax2onnx and onnxruntime are installed (the ``onnx`` extra), the ONNX model is held to the
same tolerance (measured: within 9e-8).
"""

import functools
import importlib
import importlib.util
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from test_cli import _one_error_line, _run
from test_train import ROOT, restore_state, runlocal

from mtl_jax import eval_report, export, loop, predict, serving, sharding, steps
from mtl_jax.cli import UserError
from mtl_jax.data import loading
from mtl_jax.restore import restore_run
from mtl_jax.state import abstract_model

ATOL = 1e-6


def tiny(model):
    """``configs/<model>.py:runlocal``, 10 steps on 2,000 rows."""
    c = importlib.import_module(f"configs.{model}").get_config("runlocal")
    c.num_steps = 10
    c.data.synthetic.update(num_train=2000, num_val=512, num_test=512)
    return c


@functools.cache
def _trained(model, root):
    workdir = os.path.join(root, model)
    loop.train_and_evaluate(tiny(model), workdir)
    return workdir


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("serving"))


def in_process_scores(workdir, config):
    """Scores of the test split as training's evaluation computes them (without restore.py)."""
    schema, splits = loading.load(config.data)
    state = restore_state(workdir, config)
    mesh = sharding.make_mesh(config.mesh)
    graphdef, _, _ = abstract_model(schema, config.model, config.seed)
    regression = tuple(schema.is_regression(k) for k in range(schema.num_tasks))
    eval_fn = jax.jit(
        functools.partial(steps.eval_step, graphdef=graphdef, config=config, regression=regression)
    )
    return eval_report.predict_split(
        eval_fn,
        state.params,
        state.model_state,
        splits["test"],
        batch_size=config.eval_batch_size,
        mesh=mesh,
    )


def assert_same(table: pa.Table, pred: dict, tasks):
    close = functools.partial(np.testing.assert_allclose, rtol=0, atol=ATOL)
    for k, task in enumerate(tasks):
        close(table.column(f"p_{task}").to_numpy(), pred["probs"][:, k])
    close(table.column("score").to_numpy(), pred["score"])
    if "cvr" in pred:
        close(table.column("p_cvr").to_numpy(), pred["cvr"])


def check_parity(model, root, tmp_path):
    workdir = _trained(model, root)
    config = tiny(model)
    want = in_process_scores(workdir, config)
    schema = json.load(open(os.path.join(workdir, "schema.json")))
    tasks = schema["tasks"]

    out = str(tmp_path / "preds.parquet")
    assert predict.main(["--workdir", workdir, "--out", out, "--batch-size", "256"]) == 0
    got = pq.read_table(out)
    assert got.num_rows == len(want["score"]) == 512
    np.testing.assert_array_equal(got.column("row").to_numpy(), np.arange(512))
    np.testing.assert_array_equal(got.column("user").to_numpy(), want["user"])
    assert_same(got, want, tasks)

    onnx = importlib.util.find_spec("jax2onnx") is not None
    directory = str(tmp_path / "export")
    assert export.main(["--workdir", workdir, "--out", directory, *["--onnx"] * onnx]) == 0
    served = serving.load(directory)
    _, splits = loading.load(config.data)
    assert_same(served.score(splits["test"], batch_size=200), want, tasks)  # 200, 200, 112 → 128
    if onnx:
        import onnxruntime

        assert "error" not in served.signature["onnx"], served.signature["onnx"]
        session = onnxruntime.InferenceSession(os.path.join(directory, export.ONNX_FILE))
        names = [i["name"] for i in served.signature["inputs"]]
        outputs = [o.name for o in session.get_outputs()]
        got = session.run(outputs, {k: splits["test"][k] for k in names})
        columns = serving.prediction_columns(tasks, schema["task_types"], dict(zip(outputs, got)))
        assert_same(pa.table(columns), want, tasks)
    signature = served.signature
    assert signature["inputs"][0] == {
        "name": "cat",
        "dtype": "int32",
        "shape": ["b", len(schema["categorical"])],
    }
    assert signature["outputs"]["probs"] == ["b", "2"] and signature["step"] == 10
    assert set(signature["platforms"]) == {"cpu", "cuda", "tpu"}


def test_mmoe_eval_predict_and_export_agree(root, tmp_path):
    check_parity("mmoe", root, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ple", "esmm", "paper_full"])
def test_every_family_eval_predict_and_export_agree(model, root, tmp_path):
    check_parity(model, root, tmp_path)


def test_restore_run_serves_evaluate_and_names_bad_input(root, tmp_path):
    workdir = _trained("mmoe", root)
    run = restore_run(workdir)
    assert run.step == 10 and run.preprocessing is None and run.schema.tasks == ("click", "order")
    with pytest.raises(ValueError, match=r"--step 3: no such checkpoint .*steps: \[10\]"):
        restore_run(workdir, 3)
    with pytest.raises(FileNotFoundError, match="no checkpoints; train first"):
        restore_run(str(tmp_path))
    with pytest.raises(UserError, match=r"--out .*preds.txt: expected a .parquet or .csv"):
        predict.main(["--workdir", workdir, "--out", str(tmp_path / "preds.txt")])
    with pytest.raises(ValueError, match="--data-path: .* has no preprocessing.json"):
        predict.main(["--workdir", workdir, "--data-path", "x.csv", "--out", "p.csv"])
    # Another config's data of the same schema is scored; one of another schema is refused.
    out = str(tmp_path / "val.csv")
    args = ["--workdir", workdir, "--split", "val", "--out", out, "--data-config"]
    assert predict.main([*args, os.path.join(ROOT, "configs/mmoe.py:runlocal")]) == 0
    assert pacsv.read_csv(out).num_rows == 4000
    with pytest.raises(ValueError, match="schema or vocabularies differ from the run's"):
        predict.main([*args, os.path.join(ROOT, "configs/relatedness.py:runlocal")])


def test_predict_and_export_clis_say_what_is_wrong_in_one_line(tmp_path):
    none = str(tmp_path / "none")
    for module in ("mtl_jax.predict", "mtl_jax.export"):
        line = _one_error_line(_run("-m", module, "--workdir", none, "--out", none + ".csv"))
        assert line == f"error: {none}/checkpoints: no checkpoints; train first with mtl_jax.train"
    args = ("--workdir", none, "--out", none, "--platforms", "gpu")
    line = _one_error_line(_run("-m", "mtl_jax.export", *args))
    assert line == "error: --platforms gpu: expected some of cpu, cuda, rocm, tpu"


def test_serving_needs_no_model_code():
    code = "import sys, mtl_jax.serving; print(any('mtl_jax.models' in m for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def _write_csv(path, rng, n, *, labels=True, items=20):
    cols = {
        "user": rng.integers(0, 30, n).astype(str),
        "item": np.char.add("i", rng.integers(0, items, n).astype(str)),
        "d0": rng.normal(size=n).round(4),
        "d1": rng.exponential(size=n).round(4),
    }
    if labels:
        click = (rng.random(n) < 0.3).astype(int)
        cols.update(click=click, order=click * (rng.random(n) < 0.4))
    pacsv.write_csv(pa.table(cols), str(path))


def test_predict_maps_raw_csv_rows_with_the_runs_vocabularies(tmp_path):
    rng = np.random.default_rng(0)
    _write_csv(tmp_path / "train.csv", rng, 3000)
    config = runlocal("mmoe", num_steps=8)
    config.data = ml_collections.ConfigDict(
        dict(
            kind="csv",
            path=str(tmp_path / "train.csv"),
            label_columns=("click", "order"),
            categorical_columns=("user", "item"),
            dense_columns=("d0", "d1"),
            user_column="user",
        )
    )
    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(config, workdir)
    # New rows without labels; items i20..i29 were never seen in training.
    _write_csv(tmp_path / "new.csv", rng, 300, labels=False, items=30)
    out = str(tmp_path / "preds.csv")
    proc = subprocess.run(
        [sys.executable, "-m", "mtl_jax.predict", "--workdir", workdir, "--data-path",
         str(tmp_path / "new.csv"), "--id-columns", "user,item", "--out", out],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    new = pacsv.read_csv(str(tmp_path / "new.csv"))
    items = new.column("item").to_numpy(zero_copy_only=False)
    unseen = int(np.isin(items, [f"i{k}" for k in range(20, 30)]).sum())
    assert f"ids unseen in training → 0: {unseen:,} (item {unseen:,})" in proc.stdout
    assert got.column_names == ["row", "user", "item", "p_click", "p_order", "p_cvr", "score"]
    assert got.num_rows == 300
    assert got.column("item").to_pylist() == new.column("item").to_pylist()

    proc = subprocess.run(
        [sys.executable, "-m", "mtl_jax.export", "--workdir", workdir, "--out",
         str(tmp_path / "export"), "--platforms", "cpu"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0 and "for cpu to" in proc.stdout, proc.stderr
    served = serving.load(str(tmp_path / "export"))
    scored = served.score(new)
    assert served.last_id_counts["item"]["unseen"] == unseen
    for c in ("p_click", "p_order", "p_cvr", "score"):
        want = got.column(c).to_numpy()
        np.testing.assert_allclose(scored.column(c).to_numpy(), want, rtol=0, atol=ATOL)


def test_regression_run_is_evaluated_and_predicted_as_values(tmp_path):
    from mtl_jax.evaluate import evaluate_checkpoint

    config = importlib.import_module("configs.relatedness").get_config("runlocal")
    config.num_steps = 10
    config.data.relatedness.update(num_train=2000, num_val=512, num_test=512)
    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(config, workdir)
    metrics = evaluate_checkpoint(workdir, ("test",))["test"]
    out = str(tmp_path / "preds.parquet")
    assert predict.main(["--workdir", workdir, "--out", out]) == 0
    got = pq.read_table(out)
    _, splits = loading.load(config.data)
    labels = splits["test"]["labels"]
    for k, task in enumerate(json.load(open(os.path.join(workdir, "schema.json")))["tasks"]):
        assert f"{task}/auc" not in metrics
        value = got.column(f"value_{task}").to_numpy()
        assert metrics[f"{task}/mse"] == pytest.approx(
            np.mean((value - labels[:, k]) ** 2), rel=1e-5
        )
