"""mtl_jax.trend: the variant's advantage along a sweep, and its change tested by seed."""

import json

import pytest

from mtl_jax import trend
from mtl_jax.cli import UserError


def _run(root, name, seed, mse, val_mse=None):
    d = root / name / f"seed{seed}"
    d.mkdir(parents=True)
    test = {"y1/mse": mse}
    (d / "final_metrics.json").write_text(json.dumps({"test": test}))
    (d / "schema.json").write_text(json.dumps({"tasks": ["y1"], "task_types": ["regression"]}))
    if val_mse is not None:
        rows = [
            {"step": 500, "split": "train", "loss": 1.0},
            {"step": 500, "split": "val", "y1/mse": val_mse},
        ]
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_advantage_grows_as_correlation_falls(tmp_path):
    # the baseline's error doubles at correlation 0.0 and the variant's does not: the variant's
    # advantage goes from 0% to 50% on every seed, which the paired test finds (p = 1/32 at 6).
    for seed in range(6):
        noise = 0.001 * seed
        _run(tmp_path, "sb[correlation=1.0]", seed, 1.0 + noise, val_mse=2.0)
        _run(tmp_path, "mmoe[correlation=1.0]", seed, 1.0 + noise, val_mse=1.0)
        _run(tmp_path, "sb[correlation=0.0]", seed, 2.0 + 2 * noise, val_mse=2.0)
        _run(tmp_path, "mmoe[correlation=0.0]", seed, 1.0 + noise, val_mse=1.0)
    assert trend.sweep_values(str(tmp_path), "mmoe") == [
        ("correlation", "1.0"),
        ("correlation", "0.0"),
    ]
    lines = trend.trend_table(str(tmp_path), "mmoe", "sb", range(6))
    first, second = lines[2], lines[3]
    assert first.startswith("| 1.0 | +0.0% ± 0.0 |")
    assert second.startswith("| 0.0 | +50.0% ± 0.0 | +50.0 points (0.031 *) | 0 |")
    # at validation step 500 the advantage is 50% at both values: no change
    lines = trend.trend_table(str(tmp_path), "mmoe", "sb", range(6), step=500)
    assert lines[3].startswith("| 0.0 | +50.0% ± 0.0 | +0.0 points (1.000) | 0 |")
    # a step no run logged leaves every seed out instead of guessing
    lines = trend.trend_table(str(tmp_path), "mmoe", "sb", range(6), step=750)
    assert lines[2].endswith("| 6 |")


def test_flagged_runs_are_left_out_and_counted(tmp_path):
    for seed in range(6):
        for value in ("1.0", "0.0"):
            _run(tmp_path, f"sb[correlation={value}]", seed, 2.0)
            _run(tmp_path, f"mmoe[correlation={value}]", seed, 1.0)
    bad = tmp_path / "mmoe[correlation=0.0]" / "seed2" / "final_metrics.json"
    bad.write_text(json.dumps({"test": {"y1/mse": 1.0}, "flags": {"test": {"y1": ["constant"]}}}))
    lines = trend.trend_table(str(tmp_path), "mmoe", "sb", range(6))
    assert lines[3].endswith("| 1 |") and lines[2].endswith("| 0 |")


def test_no_sweep_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no mmoe\\[key=value\\] runs"):
        trend.trend_table(str(tmp_path), "mmoe", "sb", range(6))
