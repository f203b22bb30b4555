"""Errors of the command-line tools (mtl_jax/cli.py): one ``error: ...`` line and status 2 for bad
input, the traceback behind MTL_JAX_TRACEBACK=1 / --traceback, and a traceback for bugs."""

import linecache
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import common
from mtl_jax import cli, loop
from mtl_jax.data.errors import DataError
from mtl_jax.models import options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, env_extra=None):
    env = dict(os.environ, MTL_JAX_NO_PROGRESS="1")
    env.pop(cli.TRACEBACK_ENV, None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


# --- unknown override keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,expected",
    [
        ("model.foo", "unknown config key config.model.foo; closest: config.model."),
        ("qqqqqqqqqq", "unknown config key config.qqqqqqqqqq; keys of config: batch_size, "),
        ("model.num_expert", "closest: config.model.num_experts"),
        ("num_experts", "unknown config key config.num_experts; closest: config.model.num_experts"),
        ("optim.learning_rte", "closest: config.optim.learning_rate"),
        ("seed.x", "config.seed is a value, not a group of keys"),
    ],
)
def test_unknown_key_names_the_closest_keys(key, expected):
    assert expected in cli.missing_key(common.get_base_config("runlocal"), key)


def test_known_keys_pass():
    config = common.get_base_config("runlocal")
    for key in ("model.num_experts", "data.synthetic.num_train", "mesh.data"):
        assert cli.missing_key(config, key) is None


# --- what counts as a user error -----------------------------------------------------------------


def _is_user_error_in_package_code(source: str) -> bool:
    """Runs ``source`` as if it were a file of the mtl_jax package; classifies what it raised."""
    path = os.path.join(os.path.dirname(os.path.abspath(cli.__file__)), "_fake_module.py")
    lines = [line + "\n" for line in source.splitlines()]
    linecache.cache[path] = (len(source), None, lines, path)  # the source the traceback shows
    try:
        exec(compile(source, path, "exec"), {})
    except ValueError as e:
        return cli.is_user_error(e)
    finally:
        linecache.cache.pop(path, None)
    raise AssertionError("no error")


def test_user_errors_and_bugs_are_told_apart():
    with pytest.raises(ValueError) as e:
        options.positive_int(0, "config.batch_size")
    assert cli.is_user_error(e.value)  # an input check: raised by our code, by a raise statement
    assert _is_user_error_in_package_code("raise ValueError('config.x must be 1')")
    assert not _is_user_error_in_package_code("a, b = (1, 2, 3)")  # a bug in our code
    with pytest.raises(ValueError) as e:
        np.zeros(-1)
    assert not cli.is_user_error(e.value)  # from inside numpy
    assert cli.is_user_error(DataError("x.csv", 3, "bad"))
    assert cli.is_user_error(FileNotFoundError(2, "No such file", "runs/x"))
    assert cli.is_user_error(loop.NonFiniteLossError("nan"))
    assert not cli.is_user_error(TypeError("bug"))
    assert not cli.is_user_error(KeyError("bug"))


def test_run_reports_user_errors_and_lets_bugs_through(capsys, monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)

    def main(argv):
        if "user" in argv:
            options.positive_int(-1, "config.num_steps")
        if argv == ["exit"]:
            raise SystemExit("--configs: no config file configs/nope.py")
        if argv == ["bug"]:
            return {}["missing"]
        return 0

    assert cli.run(main, ["ok"]) == 0
    assert cli.run(main, ["user"]) == 2
    assert capsys.readouterr().err == "error: config.num_steps must be a positive integer, got -1\n"
    assert cli.run(main, ["exit"]) == 2
    assert capsys.readouterr().err == "error: --configs: no config file configs/nope.py\n"
    with pytest.raises(KeyError):
        cli.run(main, ["bug"])
    capsys.readouterr()
    assert cli.run(main, ["user", "--traceback"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "positive_int" in err
    assert err.rstrip().splitlines()[-1].startswith("error: config.num_steps")
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    assert cli.run(main, ["user"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


# --- the non-finite loss message -----------------------------------------------------------------


def test_nan_message_says_what_was_saved():
    class Schema:
        tasks = ("click", "order")

    window = [(7, {"loss": np.float32(0.5), "task_losses": np.ones(2, np.float32)})]
    window.append((8, {"loss": np.float32(np.nan), "task_losses": np.ones(2, np.float32)}))
    with pytest.raises(loop.NonFiniteLossError) as e:
        loop._check_finite(window, Schema())
    assert "at step 8" in str(e.value) and "no checkpoint has been written" in str(e.value)
    assert "intact" not in str(e.value)
    with pytest.raises(loop.NonFiniteLossError) as e:
        loop._check_finite(window, Schema(), checkpoint_step=5)
    assert "newest checkpoint, at step 5, holds finite values" in str(e.value)


# --- the four CLIs, in their own processes ------------------------------------------------------


def test_train_cli_bad_override_and_config_argument():
    base = ["-m", "mtl_jax.train", "--workdir", "/nonexistent/never-written"]
    line = _one_error_line(
        _run(*base, "--config", "configs/mmoe.py:runlocal", "--config.model.foo=1")
    )
    assert line.startswith("error: --config.model.foo: unknown config key config.model.foo")
    line = _one_error_line(_run(*base, "--config", "configs/mmoe.py:runlocl"))
    assert "config argument 'runlocl' is not one of ['paper', 'runlocal', 'seed']" in line
    line = _one_error_line(_run(*base, "--config", "configs/nope.py"))
    assert "cannot load the config file" in line and "configs/nope.py" in line
    line = _one_error_line(_run(*base, "--config", "configs/mmoe.py", "--config.num_steps=x"))
    assert "--config.num_steps" in line
    assert not os.path.exists("/nonexistent/never-written")


@pytest.mark.slow
def test_train_cli_bad_config_value_and_traceback_opt_in(tmp_path):
    args = ["-m", "mtl_jax.train", "--config", "configs/mmoe.py:runlocal", "--workdir",
            str(tmp_path), "--config.batch_size=7"]  # fmt: skip
    line = _one_error_line(_run(*args))
    assert "config.batch_size=7" in line and "divisible by the 4 devices" in line
    for extra, env in (([], {cli.TRACEBACK_ENV: "1"}), (["--traceback"], None)):
        proc = _run(*args, *extra, env_extra=env)
        assert proc.returncode == 2 and "Traceback (most recent call last)" in proc.stderr
        assert proc.stderr.rstrip().splitlines()[-1].startswith("error: config.batch_size=7")


def test_evaluate_prepare_and_ablate_clis(tmp_path):
    line = _one_error_line(_run("-m", "mtl_jax.evaluate", "--workdir", str(tmp_path / "none")))
    assert "no checkpoints; train first" in line
    line = _one_error_line(
        _run(
            "-m",
            "mtl_jax.data.prepare",
            "aliccp",
            "--raw-dir",
            str(tmp_path / "raw"),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        )  # fmt: skip
    )
    assert str(tmp_path / "raw") in line
    line = _one_error_line(
        _run("-m", "mtl_jax.ablate", "--configs", "nope", "--workdir", str(tmp_path / "a"))
    )
    assert line == f"error: --configs: no config file {os.path.join('configs', 'nope')}.py"
