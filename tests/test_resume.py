"""Resume safety (mtl_jax/resume.py, loop.py): the config check and its allow-list, the history of
config changes, a finished run that writes nothing, and metrics.jsonl / TensorBoard without
repeated rows."""

import json
import os
import struct

import chex
import numpy as np
import pytest
from test_train import restore_state, runlocal

from mtl_jax import loop, resume
from mtl_jax.checkpoint import CheckpointMismatchError
from mtl_jax.cli import UserError
from mtl_jax.logs import MetricWriter, read_metrics, truncate_metrics

# --- the allow-list and the comparison (no training) -------------------------------------------


def test_allow_list_is_pinned():
    # Changing this list changes which resumes are refused: update the README's Reliability
    # section and resume.py's docstring with it.
    assert resume.ALLOWED_CHANGES == (
        "num_steps",
        "num_epochs",
        "log_every_steps",
        "eval_every_steps",
        "checkpoint_every_steps",
        "max_to_keep",
        "eval_batch_size",
        "prefetch",
        "metrics",
        "mesh",
    )
    assert resume.is_allowed("mesh.data") and resume.is_allowed("metrics.top_n")
    for key in ("seed", "batch_size", "compute_dtype", "model.name", "optim.learning_rate"):
        assert not resume.is_allowed(key), key
    assert not resume.is_allowed("num_steps_extra")  # a prefix of a word is not a parent key


def _dicts(**new_overrides):
    old = resume.as_dict(runlocal())
    new = resume.as_dict(runlocal(**new_overrides))
    return old, new


def _check(old, new, *, step=100, old_total=156, new_total=156, allow=False):
    return resume.check(
        old,
        new,
        step=step,
        old_total=old_total,
        new_total=new_total,
        allow_change=allow,
        workdir="runs/x",
    )


@pytest.mark.parametrize(
    "key,value",
    [
        ("seed", 3),
        ("batch_size", 128),
        ("compute_dtype", "bfloat16"),
        ("model.name", "omoe"),
        ("model.num_experts", 2),
        ("data.synthetic.num_train", 10_000),
        ("loss.loss_weights", (1.0, 0.5)),
        ("optim.learning_rate", 0.01),
    ],
)
def test_a_training_change_is_refused_with_old_and_new_values(key, value):
    old, new = _dicts(**{key: value})
    with pytest.raises(resume.ConfigChangedError) as e:
        _check(old, new)
    message = str(e.value)
    assert f"{key}: " in message and "-> " in message and "\n" not in message
    assert "--allow_config_change" in message and "Nothing was written" in message
    old_v = json.dumps(resume.flatten(old)[key])
    assert old_v[:20] in message  # the old value is shown, not just the key
    changed, outside = _check(old, new, allow=True)
    assert key in outside and changed[key][1] == resume.flatten(new)[key]


@pytest.mark.parametrize(
    "key,value",
    [
        ("log_every_steps", 7),
        ("eval_every_steps", 9),
        ("checkpoint_every_steps", 3),
        ("max_to_keep", 10),
        ("eval_batch_size", 512),
        ("prefetch", 0),
        ("metrics.top_n", 3),
        ("mesh.data", 2),
        ("mesh.shard_embeddings", True),
    ],
)
def test_an_observing_change_is_allowed(key, value):
    old, new = _dicts(**{key: value})
    changed, outside = _check(old, new)
    assert list(changed) == [key] and outside == []


def test_total_steps_may_change_under_a_constant_schedule_only():
    old, new = _dicts(num_steps=300)
    changed, outside = _check(old, new, new_total=300)
    assert outside == [] and changed["total_steps"] == [156, 300]
    # A decaying schedule spreads over the total: a new total changes every remaining step's lr.
    old, new = _dicts(**{"optim.schedule": "warmup_cosine", "num_steps": 300})
    old["optim"]["schedule"] = "warmup_cosine"
    with pytest.raises(resume.ConfigChangedError, match=r"total steps 156 -> 300 .*warmup_cosine"):
        _check(old, new, new_total=300)
    assert _check(old, new, new_total=300, allow=True)[1] == ["total_steps"]


def test_a_run_cannot_end_before_its_checkpoint_even_when_allowed():
    old, new = _dicts(num_steps=50)
    with pytest.raises(UserError, match="checkpoint is at step 100 but the config now gives 50"):
        _check(old, new, new_total=50, allow=True)


def test_history_keeps_one_line_per_span_and_drops_spans_that_never_reached_a_checkpoint(
    tmp_path,
):
    a = resume.as_dict(runlocal())
    b = resume.as_dict(runlocal(**{"optim.learning_rate": 0.01}))
    wd = str(tmp_path)
    resume.record(wd, 0, a, checkpoint_config=None)
    resume.record(wd, 100, a, checkpoint_config=a)  # an unchanged resume adds nothing
    assert [r["start_step"] for r in resume.read_history(wd)] == [0]
    changed = {"optim.learning_rate": [0.001, 0.01]}
    resume.record(wd, 100, b, checkpoint_config=a, changed=changed, outside=list(changed))
    resume.record(wd, 100, b, checkpoint_config=a, changed=changed, outside=list(changed))
    rows = resume.read_history(wd)
    assert [r["start_step"] for r in rows] == [0, 100]
    assert rows[1]["changed"] == changed and rows[1]["outside_allow_list"] == [
        "optim.learning_rate"
    ]
    assert rows[1]["config"]["optim"]["learning_rate"] == 0.01
    # Falling back to step 50 (a newer checkpoint was corrupt): the span from 100 is gone.
    resume.record(wd, 50, a, checkpoint_config=a)
    assert [r["start_step"] for r in resume.read_history(wd)] == [0]
    # A workdir from before the history gets a first line with the checkpoint's config.
    (tmp_path / "old").mkdir()
    resume.record(str(tmp_path / "old"), 80, b, checkpoint_config=a, changed=changed)
    rows = resume.read_history(str(tmp_path / "old"))
    assert [(r["start_step"], r["config"]) for r in rows] == [(0, a), (80, b)]


# --- metrics.jsonl and TensorBoard after a resume ------------------------------------------------


def _tb_events(directory):
    """(step, kind, value) of every event in the TensorBoard files of ``directory``."""
    from tensorboardX.proto import event_pb2

    out = []
    for name in sorted(os.listdir(directory)):
        data = open(os.path.join(directory, name), "rb").read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            if event.HasField("session_log"):
                out.append((name, event.step, "start", None))
            for v in event.summary.value:
                out.append((name, event.step, v.tag, round(v.simple_value, 5)))
    return out


def test_resume_drops_rows_after_the_restored_step(tmp_path):
    wd = str(tmp_path)
    writer = MetricWriter(wd, resume_step=0)
    for step in range(1, 11):
        writer.write(step, "train", {"loss": step / 10})
        if step % 4 == 0:
            writer.write(step, "val", {"loss": step / 100})
    writer.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "split": "tr')  # a write cut short by a kill
    writer = MetricWriter(wd, resume_step=8)
    writer.write(8, "val", {"loss": 0.08})  # the resumed run repeats the evaluation due at 8
    writer.write(9, "train", {"loss": 0.9})
    writer.close()
    rows = [(r["step"], r["split"]) for r in read_metrics(wd)]
    assert rows == [
        (1, "train"),
        (2, "train"),
        (3, "train"),
        (4, "train"),
        (4, "val"),
        (5, "train"),
        (6, "train"),
        (7, "train"),
        (8, "train"),
        (8, "val"),
        (9, "train"),
    ]
    # TensorBoard: the second writer's file starts with a purge at step 8 and writes the kept
    # training row at 8 again, so a reader sees each (step, tag) once after the purge.
    events = _tb_events(tmp_path / "tb")
    second = sorted({name for name, *_ in events})[-1]
    mine = [(s, kind, v) for name, s, kind, v in events if name == second]
    assert mine[0] == (8, "start", None)
    assert (8, "train/loss", 0.8) in mine and (8, "val/loss", 0.08) in mine
    assert all(s >= 8 for s, _, _ in mine)


def test_truncate_metrics_on_a_missing_file_and_a_fresh_start(tmp_path):
    assert truncate_metrics(str(tmp_path / "none.jsonl"), 5) == []
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 3, "split": "train"}\n')
    assert truncate_metrics(str(path), 0) == [] and path.read_text() == ""


# --- end to end ----------------------------------------------------------------------------------


def _files(workdir):
    """Every file under ``workdir`` with its bytes (checkpoints by name only)."""
    out = {}
    for root, _, names in os.walk(workdir):
        for n in names:
            p = os.path.join(root, n)
            out[os.path.relpath(p, workdir)] = None if "checkpoints" in p else open(p, "rb").read()
    return out


@pytest.fixture(scope="module")
def half_trained(tmp_path_factory):
    """A run stopped at step 10 of 20 (its checkpoint at 10), seed 0."""
    wd = tmp_path_factory.mktemp("half")
    loop.train_and_evaluate(runlocal(num_steps=10, checkpoint_every_steps=5), str(wd))
    return wd


def test_a_refused_resume_writes_nothing(half_trained):
    before = _files(half_trained)
    for key, value in [
        ("seed", 3),
        ("optim.learning_rate", 0.01),
        ("model.name", "omoe"),
    ]:
        config = runlocal(num_steps=20, checkpoint_every_steps=5, **{key: value})
        with pytest.raises(resume.ConfigChangedError, match=f"step 10 .*{key}: "):
            loop.train_and_evaluate(config, str(half_trained))
    assert _files(half_trained) == before


def test_a_model_change_forced_through_names_the_mismatched_arrays(half_trained):
    before = _files(half_trained)
    config = runlocal(model="omoe", num_steps=20, checkpoint_every_steps=5)
    with pytest.raises(CheckpointMismatchError, match=r"params\.gates.*checkpoint \(2, "):
        loop.train_and_evaluate(config, str(half_trained), allow_config_change=True)
    assert _files(half_trained) == before  # not taken for corruption: nothing moved aside


@pytest.mark.slow
def test_allowed_change_is_recorded_and_a_finished_run_writes_nothing(tmp_path, half_trained):
    import shutil

    wd = tmp_path / "run"
    shutil.copytree(half_trained, wd)
    config = runlocal(num_steps=20, checkpoint_every_steps=5, **{"optim.learning_rate": 0.01})
    loop.train_and_evaluate(config, str(wd), allow_config_change=True)
    history = resume.read_history(str(wd))
    assert [h["start_step"] for h in history] == [0, 10]
    assert history[0]["config"]["optim"]["learning_rate"] == 0.001
    assert history[1]["changed"]["optim.learning_rate"] == [0.001, 0.01]
    assert history[1]["changed"]["num_steps"] == [10, 20]
    assert history[1]["outside_allow_list"] == ["optim.learning_rate"]
    assert json.load(open(wd / "config.json"))["optim"]["learning_rate"] == 0.01
    rows = [(r["step"], r["split"]) for r in read_metrics(str(wd))]
    assert len(rows) == len(set(rows))
    assert [s for s, split in rows if split == "test"] == [20]  # step 10's final eval dropped

    # Rerun of the finished run: nothing trained, evaluated or written, the same final metrics.
    before = _files(wd)
    final = loop.train_and_evaluate(config, str(wd))
    assert final == json.load(open(wd / "final_metrics.json"))
    assert _files(wd) == before
    # ... even with a changed eval batch size (an allowed change): nothing runs under it.
    loop.train_and_evaluate(runlocal(num_steps=20, checkpoint_every_steps=5, eval_batch_size=512,
                                     **{"optim.learning_rate": 0.01}), str(wd))  # fmt: skip
    assert _files(wd) == before


@pytest.mark.slow
def test_extended_run_equals_straight_run_with_the_same_metrics(tmp_path, half_trained):
    import shutil

    straight = tmp_path / "straight"
    config = runlocal(num_steps=20, checkpoint_every_steps=5, eval_every_steps=10)
    loop.train_and_evaluate(config, str(straight))
    wd = tmp_path / "extended"
    shutil.copytree(half_trained, wd)
    loop.train_and_evaluate(config, str(wd))  # eval_every_steps differs: allowed
    chex.assert_trees_all_equal(
        restore_state(str(straight), config).params, restore_state(str(wd), config).params
    )

    def rows(d):
        return [
            {k: v for k, v in r.items() if k not in ("time", "examples_per_sec")}
            for r in read_metrics(str(d))
        ]

    # The resumed run repeats the val evaluation due at step 10 and drops step 10's final one.
    assert rows(wd) == rows(straight)
    history = resume.read_history(str(wd))
    assert history[-1]["outside_allow_list"] == []
    assert set(history[-1]["changed"]) == {"num_steps", "eval_every_steps", "total_steps"}
    assert np.isfinite(json.load(open(wd / "final_metrics.json"))["test"]["click/auc"])


@pytest.mark.slow
def test_cli_refuses_another_seed_with_one_line_and_status_2(half_trained):
    import subprocess
    import sys

    before = _files(half_trained)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtl_jax.train",
            "--workdir",
            str(half_trained),
            "--config",
            "configs/mmoe.py:runlocal,seed=3",
            "--config.num_steps=20",
            "--config.checkpoint_every_steps=5",
        ],  # fmt: skip
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env=dict(os.environ, MTL_JAX_NO_PROGRESS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert "seed: 0 -> 3" in line and "data.synthetic.seed: 0 -> 3" in line
    assert "Traceback" not in proc.stderr
    assert _files(half_trained) == before
