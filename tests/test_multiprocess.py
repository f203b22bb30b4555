"""Multi-process rehearsal: 2 processes × 2 CPU devices on localhost behave like 1 × 4."""

import json
import os
import subprocess
import sys

import chex
import jax
import pytest
from test_train import restore_state, runlocal

from mtl_jax import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _multiprocess(workdir, num_steps):
    # The launcher runs $PYTHON: this interpreter, whatever `python` is on PATH.
    env = dict(os.environ, MTL_JAX_NO_PROGRESS="1", PYTHON=sys.executable)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    proc = subprocess.run(
        [
            "bash",
            "launch/multiprocess_cpu.sh",
            "2",
            "2",
            "--",
            "--config",
            "configs/mmoe.py:runlocal",
            "--workdir",
            str(workdir),
            f"--config.num_steps={num_steps}",
            "--config.checkpoint_every_steps=5",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("single")
    config = runlocal(num_steps=10, checkpoint_every_steps=5)
    final = loop.train_and_evaluate(config, str(workdir))
    return workdir, config, final


def test_two_process_run_stopped_and_restarted_equals_one_process(tmp_path, single_process):
    # One rehearsal covers both: 2 processes × 2 devices run to step 5, stop, restart from the
    # checkpoint (each process restoring its own data-iterator state) and finish at step 10 —
    # and must then equal a straight single-process run on 4 devices.
    workdir, config, final = single_process
    _multiprocess(tmp_path, 5)
    _multiprocess(tmp_path, 10)
    a, b = restore_state(str(tmp_path), config), restore_state(str(workdir), config)
    assert int(a.step) == 10
    chex.assert_trees_all_close(a.params, b.params, rtol=2e-4, atol=2e-6)
    assert jax.device_count() == 4
    mp_final = json.load(open(tmp_path / "final_metrics.json"))
    for split in ("val", "test"):
        assert mp_final[split]["click/auc"] == pytest.approx(final[split]["click/auc"], abs=1e-3)
    # Only process 0 writes logs; every process wrote its data-iterator state.
    for step in (5, 10):
        data_dir = tmp_path / "checkpoints" / str(step) / "data"
        assert sorted(p.name for p in data_dir.glob("process_*")) == [
            "process_0-of-2.json",
            "process_1-of-2.json",
        ]
    rows = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    # Extending the finished 5-step run to 10 drops its step-5 evaluation (a 10-step run has
    # none there) and logs no row twice.
    assert [r["step"] for r in rows if r["split"] == "test"] == [10]
    assert len({(r["step"], r["split"]) for r in rows}) == len(rows)
