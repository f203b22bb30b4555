"""A corrupt newest checkpoint: the resume falls back to the newest one that restores completely,
says which it skipped and why, and finishes bit-identical to an uninterrupted run; with none
restorable, one error names every step."""

import glob
import os
import shutil

import chex
import pytest
from test_train import restore_state, runlocal

from mtl_jax import loop
from mtl_jax.checkpoint import Checkpointer, NoRestorableCheckpointError
from mtl_jax.logs import read_metrics

pytestmark = pytest.mark.slow


def config(num_steps):
    return runlocal(num_steps=num_steps, checkpoint_every_steps=5, max_to_keep=5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A straight 15-step run, and a run stopped at step 10 (checkpoints 5 and 10)."""
    root = tmp_path_factory.mktemp("fallback")
    loop.train_and_evaluate(config(15), str(root / "straight"))
    loop.train_and_evaluate(config(10), str(root / "stopped"))
    return root


def _largest_array_file(checkpoint):
    return max(glob.glob(os.path.join(checkpoint, "state", "ocdbt.process_*", "d", "*")),
               key=os.path.getsize)  # fmt: skip


def _delete_array_file(checkpoint):
    os.remove(_largest_array_file(checkpoint))


def _truncate_array_file(checkpoint):
    path = _largest_array_file(checkpoint)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _delete_iterator_state(checkpoint):
    (path,) = glob.glob(os.path.join(checkpoint, "data", "process_*.json"))
    os.remove(path)


def _truncate_every_file(checkpoint):
    for path in glob.glob(os.path.join(checkpoint, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)


def _rows(workdir):
    drop = ("time", "examples_per_sec")
    return [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(str(workdir))]


@pytest.mark.parametrize(
    "corrupt,source,bad,good",
    [
        (_delete_array_file, "stopped", 10, 5),
        (_truncate_array_file, "stopped", 10, 5),
        (_delete_iterator_state, "stopped", 10, 5),
        # A finished run whose final checkpoint was cut short everywhere.
        (_truncate_every_file, "straight", 15, 10),
    ],
)
def test_corrupt_newest_checkpoint_falls_back(runs, tmp_path, capfd, corrupt, source, bad, good):
    workdir = tmp_path / "run"
    shutil.copytree(runs / source, workdir)
    corrupt(str(workdir / "checkpoints" / str(bad)))
    capfd.readouterr()
    loop.train_and_evaluate(config(15), str(workdir))
    err = capfd.readouterr().err
    assert f"checkpoints/{bad} skipped: " in err, err
    # The skipped checkpoint is kept for inspection, out of the way of the resumed run's saves.
    assert os.path.isdir(workdir / "checkpoints_unrestorable" / str(bad))
    a, b = (
        restore_state(str(runs / "straight"), config(15)),
        restore_state(str(workdir), config(15)),
    )
    assert int(b.step) == 15
    chex.assert_trees_all_equal(a.params, b.params)
    chex.assert_trees_all_equal(a.opt_state, b.opt_state)
    assert _rows(workdir) == _rows(runs / "straight")  # each row once, as in a straight run
    ckpt = Checkpointer(str(workdir / "checkpoints"))
    assert good in ckpt.all_steps() and ckpt.latest_step() == 15
    ckpt.close()


def test_no_restorable_checkpoint_is_one_error_naming_each_step(runs, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(runs / "stopped", workdir)
    _delete_iterator_state(str(workdir / "checkpoints" / "10"))
    _truncate_array_file(str(workdir / "checkpoints" / "5"))
    with pytest.raises(NoRestorableCheckpointError) as e:
        loop.train_and_evaluate(config(15), str(workdir))
    message = str(e.value)
    assert "\n" not in message and "step 10: " in message and "step 5: " in message
    assert "process_0-of-1.json" in message  # says what is wrong, not only that it failed
    assert not os.path.exists(workdir / "checkpoints_unrestorable")  # nothing was moved


def test_evaluate_names_an_unrestorable_checkpoint_instead_of_falling_back(runs, tmp_path):
    from mtl_jax.cli import UserError
    from mtl_jax.evaluate import evaluate_checkpoint

    workdir = tmp_path / "run"
    shutil.copytree(runs / "stopped", workdir)
    _truncate_array_file(str(workdir / "checkpoints" / "10"))
    with pytest.raises(UserError, match=r"checkpoints/10 does not restore \(.*--step .*\[5, 10\]"):
        evaluate_checkpoint(str(workdir), ("val",))
    with pytest.raises(ValueError, match=r"--step 7: no such checkpoint .*steps: \[5, 10\]"):
        evaluate_checkpoint(str(workdir), ("val",), step=7)
    assert evaluate_checkpoint(str(workdir), ("val",), step=5)["step"] == 5
