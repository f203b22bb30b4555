"""Gate diagnostics: known-answer gates, collapse warnings, and their place in the eval report."""

import json
import warnings

import numpy as np
import pytest

from mtl_jax import diagnostics, eval_report
from mtl_jax.logs import MetricWriter, read_metrics


def test_all_weight_on_one_expert_is_collapse():
    gates = np.zeros((10, 2, 4))
    gates[:, 0, 2] = 1.0  # task 0: every row on expert 2
    gates[:, 1] = 0.25  # task 1: uniform
    stats = diagnostics.gate_diagnostics(gates)
    np.testing.assert_allclose(stats["mean"][0], [0, 0, 1, 0])
    np.testing.assert_allclose(stats["utilisation"][0], [0, 0, 1, 0])
    np.testing.assert_allclose(stats["entropy"], [0.0, np.log(4)], atol=1e-12)
    np.testing.assert_allclose(stats["entropy_norm"], [0.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(stats["collapsed"], [1, 0])
    with pytest.warns(diagnostics.GateCollapseWarning, match="task 'click'.*expert 2") as rec:
        diagnostics.warn_collapsed(stats, ["click", "order"])
    assert len(rec) == 1  # the uniform task is not flagged


def test_uniform_gates_are_not_collapsed():
    stats = diagnostics.gate_diagnostics(np.full((7, 3, 5), 0.2))
    np.testing.assert_allclose(stats["entropy"], np.log(5))
    np.testing.assert_allclose(stats["entropy_norm"], 1.0)
    np.testing.assert_allclose(stats["mean"], 0.2)
    np.testing.assert_array_equal(stats["collapsed"], 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert diagnostics.warn_collapsed(stats, ["a", "b", "c"]) == []


def test_known_answer_entropy_utilisation_and_thresholds():
    # Rows alternate between (0.7, 0.3) and (0.2, 0.8).
    gates = np.array([[[0.7, 0.3]], [[0.2, 0.8]], [[0.7, 0.3]], [[0.2, 0.8]]])
    stats = diagnostics.gate_diagnostics(gates)
    h = lambda p: -sum(x * np.log(x) for x in p)
    np.testing.assert_allclose(stats["entropy"], [(h([0.7, 0.3]) + h([0.2, 0.8])) / 2])
    np.testing.assert_allclose(stats["entropy_norm"], stats["entropy"] / np.log(2))
    np.testing.assert_allclose(stats["mean"], [[0.45, 0.55]])
    np.testing.assert_allclose(stats["utilisation"], [[0.5, 0.5]])
    assert stats["collapsed"][0] == 0
    # One expert with mean weight 0.95 > 0.9 collapses even though rows are not one-hot.
    skew = np.tile([0.95, 0.05], (6, 1, 1))
    assert diagnostics.gate_diagnostics(skew)["collapsed"][0] == 1
    assert diagnostics.gate_diagnostics(skew, threshold=0.99)["collapsed"][0] == 0
    # Hard routing spread over experts: low entropy flags it, utilisation shows the spread.
    hard = np.eye(3)[np.arange(9) % 3][:, None, :]  # [9, 1, 3]
    stats = diagnostics.gate_diagnostics(hard)
    assert stats["collapsed"][0] == 1
    np.testing.assert_allclose(stats["utilisation"], [[1 / 3] * 3])


def test_one_expert_and_bad_shapes():
    stats = diagnostics.gate_diagnostics(np.ones((4, 2, 1)))
    np.testing.assert_array_equal(stats["collapsed"], [0, 0])
    assert np.all(np.isnan(stats["entropy_norm"]))
    with pytest.raises(ValueError, match="rows, tasks, experts"):
        diagnostics.gate_diagnostics(np.ones((4, 3)))


def test_report_adds_gate_diagnostics_and_they_reach_metrics_jsonl(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    labels = (rng.random((n, 2)) < 0.3).astype(np.float32)
    gates = np.zeros((n, 2, 3), np.float32)
    gates[:, 0] = [0.02, 0.96, 0.02]  # click: collapsed on expert 1
    gates[:, 1] = rng.dirichlet([5, 5, 5], n)  # order: spread
    pred = {
        "labels": labels,
        "probs": rng.random((n, 2)).astype(np.float32),
        "score": rng.random(n).astype(np.float32),
        "user": rng.integers(0, 20, n),
        "gates": gates,
    }
    with pytest.warns(diagnostics.GateCollapseWarning, match="task 'click'.*expert 1"):
        out = eval_report.report(
            pred, tasks=("click", "order"), cascade="none", loss_weights=[1, 1], top_n=2
        )
    assert out["gates/mean"].shape == (2, 3)
    assert out["gates/utilisation"].shape == (2, 3)
    assert out["gates/entropy"].shape == (2,)
    np.testing.assert_array_equal(out["gates/collapsed"], [1, 0])
    writer = MetricWriter(str(tmp_path), tensorboard=False)
    writer.write(5, "val", out)
    writer.close()
    (row,) = read_metrics(str(tmp_path))
    assert row["gates/collapsed"] == [1.0, 0.0]
    np.testing.assert_allclose(np.reshape(row["gates/mean"], (2, 3))[0], [0.02, 0.96, 0.02])
    json.dumps(row)  # plain JSON lists, ready to plot
