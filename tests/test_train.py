"""End-to-end: training on runlocal data, no recompiles, sharded == unsharded, exact resume,
non-finite loss handling, bad configs, and the CLIs."""

import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from configs import common
from mtl_jax import loop, optim, sharding, steps
from mtl_jax.checkpoint import Checkpointer, abstract_with_sharding
from mtl_jax.data import loading, pipeline
from mtl_jax.state import abstract_train_state, layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runlocal(model="mmoe", **overrides):
    c = common.get_base_config("runlocal", model=model)
    for key, value in overrides.items():
        target = c
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return c


def restore_state(workdir, config, step=None):
    schema, splits = loading.load(config.data)
    run = layout(config, schema, loop.total_steps(config, len(splits["train"]["labels"])))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    step = ckpt.latest_step() if step is None else step
    state = ckpt.restore(step, abstract_with_sharding(run.abstract, run.sharding))
    ckpt.close()
    return jax.device_get(state)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "shared_bottom", "omoe", "mmoe"])
def test_every_core_model_learns_both_tasks(model, tmp_path):
    final = loop.train_and_evaluate(runlocal(model), str(tmp_path))
    for split in ("val", "test"):
        assert final[split]["click/auc"] > 0.65, final[split]
        assert final[split]["order/auc"] > 0.65, final[split]
        assert final[split]["click/oracle_gap"] < 0.1
    assert os.path.exists(tmp_path / "final_metrics.json")
    rows = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert all(np.isfinite(r["loss"]) for r in rows if r["split"] == "train")


@pytest.mark.slow
def test_bfloat16_compute_matches_float32_auc(tmp_path):
    # bf16 activations and matmuls, fp32 parameters and optimizer: same AUCs to within noise.
    finals = {
        dtype: loop.train_and_evaluate(runlocal(compute_dtype=dtype), str(tmp_path / dtype))
        for dtype in ("float32", "bfloat16")
    }
    for task in ("click", "order"):
        a, b = finals["float32"]["test"][f"{task}/auc"], finals["bfloat16"]["test"][f"{task}/auc"]
        assert abs(a - b) < 0.01, (task, a, b)
    state = restore_state(str(tmp_path / "bfloat16"), runlocal(compute_dtype="bfloat16"))
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(state.params))


def test_train_step_compiles_once(tmp_path, monkeypatch):
    chex.clear_trace_counter()  # chex counts traces per function across tests
    traced_train = chex.assert_max_traces(steps.train_step, n=1)
    traced_eval = chex.assert_max_traces(steps.eval_step, n=1)
    monkeypatch.setattr(steps, "train_step", traced_train)
    monkeypatch.setattr(steps, "eval_step", traced_eval)
    config = runlocal(num_steps=12, eval_every_steps=5, checkpoint_every_steps=5, log_every_steps=3)
    loop.train_and_evaluate(config, str(tmp_path))  # raises if either step is traced twice


def test_run_status_and_final_metrics_go_to_the_absl_log(tmp_path, caplog):
    config = runlocal(num_steps=2, eval_every_steps=100, checkpoint_every_steps=100)
    with caplog.at_level("INFO", logger="absl"):
        loop.train_and_evaluate(config, str(tmp_path))
        config.num_steps = 4
        loop.train_and_evaluate(config, str(tmp_path))  # resumes
        loop.train_and_evaluate(config, str(tmp_path))  # finished: trains nothing
    lines = [r.getMessage() for r in caplog.records if r.name == "absl"]
    assert f"{tmp_path}: resuming at step 2 of 4" in lines
    assert f"{tmp_path}: run already finished at step 4; nothing to do" in lines
    finals = [x for x in lines if x.startswith(("final val: ", "final test: "))]
    assert len(finals) == 6 and all("click/auc=" in x and " loss=" in x for x in finals)
    assert finals[2:4] == finals[4:6]  # the finished run reports the metrics it had written


def assert_one_and_four_devices_agree(config, tmp_path, logged=("loss",)):
    """Trains ``config`` on 1 and on 4 devices: same params, model state and logged values."""
    assert jax.device_count() == 4
    results, values = {}, {}
    for n in (1, 4):
        config.mesh.data = n
        loop.train_and_evaluate(config, str(tmp_path / str(n)))
        results[n] = restore_state(str(tmp_path / str(n)), config)
        rows = [json.loads(x) for x in open(tmp_path / str(n) / "metrics.jsonl")]
        values[n] = [[r[k] for k in logged] for r in rows if r["split"] == "train"]
    chex.assert_trees_all_close(results[1].params, results[4].params, rtol=2e-4, atol=2e-6)
    chex.assert_trees_all_close(
        results[1].model_state, results[4].model_state, rtol=2e-4, atol=2e-6
    )
    np.testing.assert_allclose(values[1], values[4], rtol=1e-4)


def test_four_devices_equal_one_device(tmp_path):
    assert_one_and_four_devices_agree(runlocal(num_steps=8, checkpoint_every_steps=100), tmp_path)


def _cli(*args):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="1", MTL_JAX_NO_PROGRESS="1")
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_resume_in_a_new_process_equals_straight_run(tmp_path):
    base = [
        "-m",
        "mtl_jax.train",
        "--config",
        "configs/mmoe.py:runlocal",
        "--config.checkpoint_every_steps=10",
        "--config.mesh.data=1",
    ]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    _cli(*base, "--workdir", straight, "--config.num_steps=20")
    # The resumed run names its workdir relative to the current directory, as the README does.
    resumed_rel = os.path.relpath(resumed, ROOT)
    _cli(*base, "--workdir", resumed_rel, "--config.num_steps=10")
    assert Checkpointer(os.path.join(resumed, "checkpoints")).latest_step() == 10
    _cli(*base, "--workdir", resumed_rel, "--config.num_steps=20")

    config = runlocal(num_steps=20, checkpoint_every_steps=10)
    config.mesh.data = 1
    a, b = restore_state(straight, config), restore_state(resumed, config)
    assert int(a.step) == int(b.step) == 20
    chex.assert_trees_all_equal(a.params, b.params)
    chex.assert_trees_all_equal(a.opt_state, b.opt_state)

    # The iterator in the step-10 checkpoint yields the straight run's 11th batch.
    schema, splits = loading.load(config.data)
    make = lambda: iter(
        pipeline.train_batches(
            loading.model_inputs(splits["train"]),
            batch_size=config.batch_size,
            num_steps=20,
            seed=config.seed,
            prefetch=0,
        )
    )
    straight_iter, restored_iter = make(), make()
    for _ in range(10):
        next(straight_iter)
    ckpt = Checkpointer(os.path.join(resumed, "checkpoints"))
    tx = optim.make_optimizer(config, 20)
    abstract = abstract_train_state(schema, config.model, tx, config.seed)
    mesh = sharding.make_mesh(config.mesh)
    ckpt.restore(
        10,
        abstract_with_sharding(
            abstract, sharding.state_sharding(abstract, mesh, sharding.sharding_rules(config.mesh))
        ),
        restored_iter,
    )
    ckpt.close()
    want, got = next(straight_iter), next(restored_iter)
    for k in want:
        np.testing.assert_array_equal(want[k], got[k])

    # The evaluate CLI reads the same checkpoint and writes metrics for val and test.
    out = str(tmp_path / "eval.json")
    _cli("-m", "mtl_jax.evaluate", "--workdir", resumed, "--output", out)
    result = json.load(open(out))
    assert result["step"] == 20
    final = json.load(open(os.path.join(resumed, "final_metrics.json")))
    for split in ("val", "test"):
        assert result[split]["click/auc"] == pytest.approx(final[split]["click/auc"], abs=1e-6)


def test_nan_loss_names_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    config = runlocal(num_steps=20, checkpoint_every_steps=5, log_every_steps=50)
    real_load = loading.load_with_preprocessing
    bad_step = 8

    def load_with_nan(data_cfg):
        schema, splits, prep = real_load(data_cfg)
        train = dict(splits["train"])
        n = len(train["labels"])
        row = pipeline._epoch_permutation(n, config.seed, 0)[(bad_step - 1) * config.batch_size]
        train["dense"] = train["dense"].copy()
        train["dense"][row, 0] = np.nan
        return schema, dict(splits, train=train), prep

    monkeypatch.setattr(loading, "load_with_preprocessing", load_with_nan)
    with pytest.raises(loop.NonFiniteLossError, match=f"at step {bad_step}\\b"):
        loop.train_and_evaluate(config, str(tmp_path))
    ckpt = Checkpointer(str(tmp_path / "checkpoints"))
    assert ckpt.latest_step() == 5
    ckpt.close()
    monkeypatch.setattr(loading, "load_with_preprocessing", real_load)
    state = restore_state(str(tmp_path), config, step=5)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("model.name", "mmeo", "valid names"),
        ("loss.loss_weights", (1.0,), "config.loss.loss_weights has 1 entries"),
        ("loss.cascade", "esmm", "config.loss.cascade must be one of"),
        ("model.tower_activation", "gelu", "config.model.tower_activation must be one of"),
        ("model.expert_hidden", (), "config.model.expert_hidden"),
        ("batch_size", 7, "divisible by the 4 devices"),
        ("data.kind", "parquet", "config.data.kind must be one of"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        loop.train_and_evaluate(runlocal(**{key: value}), str(tmp_path))


def test_bad_config_argument_and_unknown_synthetic_key(tmp_path):
    with pytest.raises(ValueError, match="not one of"):
        common.get_base_config("runlocl")
    config = runlocal()
    config.data.synthetic.num_rows = 5
    with pytest.raises(ValueError, match="config.data.synthetic: unknown keys \\['num_rows'\\]"):
        loop.train_and_evaluate(config, str(tmp_path))


def _one_config_state(embedding_update, num_steps):
    from mtl_jax.state import create_train_state, init_model

    config = runlocal()
    config.optim.embedding_update = embedding_update
    config.mesh.data = 1
    schema, splits = loading.load(config.data)
    mesh = sharding.make_mesh(config.mesh)
    tx = optim.make_optimizer(config, 100)
    graphdef, params, model_state = init_model(schema, config.model, config.seed)
    state = create_train_state(params, model_state, tx)
    state_sh = sharding.state_sharding(state, mesh)
    step = loop.jit_train_step(graphdef, tx, config, state_sh, sharding.batch_sharding(mesh))
    it = iter(
        pipeline.train_batches(
            loading.model_inputs(splits["train"]),
            batch_size=config.batch_size,
            num_steps=num_steps,
            seed=0,
            prefetch=0,
        )
    )
    batch = None
    for _ in range(num_steps):
        batch = next(it)
        state, _ = step(state, sharding.to_global(batch, mesh))
    return jax.device_get(state), batch


def test_lazy_adam_first_step_equals_dense_adam():
    # After one step Adam's update of an untouched row is 0/(0+eps) = 0, so the sparse update
    # (touched rows only) must give exactly the dense optimizer's parameters.
    dense, _ = _one_config_state("dense", 1)
    lazy, _ = _one_config_state("lazy_adam", 1)
    chex.assert_trees_all_close(dense.params, lazy.params, rtol=1e-5, atol=1e-7)


def test_sparse_updates_leave_untouched_rows_alone():
    init, _ = _one_config_state("lazy_adam", 0)
    after, batch = _one_config_state("lazy_adam", 1)
    (key,) = init.params["inputs"]["tables"].keys()
    before_t, after_t = init.params["inputs"]["tables"][key], after.params["inputs"]["tables"][key]
    changed = np.any(before_t != after_t, axis=1)
    assert changed.sum() > 0
    # Rows of fields never in the batch did not move; every moved row was read by the batch.
    from mtl_jax.models.embedding import table_layout

    config = runlocal()
    schema, _ = loading.load(config.data)
    layout = table_layout(schema, config.model.embed_dim)
    read = set()
    for i, f in enumerate(schema.categorical):
        read |= set((batch["cat"][:, i] + layout[f.table_name][1]).tolist())
    assert set(np.flatnonzero(changed).tolist()) <= read
    for optimizer in ("rowwise_adagrad",):
        state, _ = _one_config_state(optimizer, 2)
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))
