"""The MMoE paper's task-relatedness generator, its config and regression training end to end."""

import json
import os

import jax
import numpy as np
import pytest

from configs import relatedness as rel_config
from mtl_jax import loop
from mtl_jax.data import relatedness
from mtl_jax.data.relatedness import RelatednessConfig
from mtl_jax.state import init_model


def test_weight_vectors_have_the_asked_cosine_and_norm():
    for p in (1.0, 0.9, 0.5, 0.0, -0.5):
        w = relatedness.weight_vectors(RelatednessConfig(correlation=p, scale=2.0, seed=3))
        norms = np.linalg.norm(w, axis=1)
        np.testing.assert_allclose(norms, [2.0, 2.0], rtol=1e-12)
        np.testing.assert_allclose(w[0] @ w[1] / (norms[0] * norms[1]), p, atol=1e-12)


def test_labels_follow_the_papers_formula():
    cfg = RelatednessConfig(num_test=500, seed=1, correlation=0.3)
    d = relatedness.generate(cfg, "test")
    x = d["dense"].astype(np.float64)
    w = relatedness.weight_vectors(cfg)
    alpha, beta = relatedness.sine_params(cfg)
    for k in range(2):
        z = x @ w[k]
        f = z + sum(np.sin(a * z + b) for a, b in zip(alpha, beta))
        np.testing.assert_allclose(d["p_true"][:, k], f, rtol=1e-5, atol=1e-4)
        noise = d["labels"][:, k] - f
        assert abs(noise.std() - cfg.noise_std) < 0.02  # ε ~ N(0, 0.01)
    assert d["cat"].shape == (500, 0) and d["dense"].shape == (500, 100)


def test_deterministic_by_seed_and_splits_differ():
    cfg = RelatednessConfig(num_train=300, num_val=300, seed=4)
    a, b = relatedness.generate(cfg, "train"), relatedness.generate(cfg, "train")
    np.testing.assert_array_equal(a["labels"], b["labels"])
    assert not np.allclose(a["dense"], relatedness.generate(cfg, "val")["dense"])
    other = relatedness.generate(RelatednessConfig(num_train=300, seed=5), "train")
    assert not np.allclose(a["dense"], other["dense"])


def test_label_correlation_falls_with_the_cosine():
    corr = [
        relatedness.label_correlation(RelatednessConfig(correlation=p), 1 << 14)
        for p in (1.0, 0.5, 0.0, -0.5)
    ]
    assert corr[0] > 0.99 and corr[0] > corr[1] > corr[2] > corr[3]
    assert abs(corr[2]) < 0.05


def test_binary_labels_are_bernoulli_of_the_truth():
    cfg = RelatednessConfig(num_train=20_000, task_type="binary")
    d = relatedness.generate(cfg, "train")
    assert set(np.unique(d["labels"])) <= {0.0, 1.0}
    p = d["p_true"]
    assert ((p > 0) & (p < 1)).all()
    # calibrated: the label rate matches the mean true probability in each decile
    for k in range(2):
        q = np.quantile(p[:, k], np.linspace(0, 1, 11))
        idx = np.clip(np.searchsorted(q, p[:, k]) - 1, 0, 9)
        for b in range(10):
            sel = idx == b
            assert abs(d["labels"][sel, k].mean() - p[sel, k].mean()) < 0.05


@pytest.mark.parametrize(
    "key,value", [("correlation", 1.5), ("task_type", "ordinal"), ("num_train", 0)]
)
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"config.data.relatedness.{key}"):
        RelatednessConfig(**{key: value})


@pytest.mark.parametrize("width", [16, 4])
def test_shared_bottom_matches_mmoe_parameter_count(width):
    """The paper sizes Shared-Bottom to MMoE's parameter count; check on the built models."""
    schema = relatedness.schema(RelatednessConfig())

    def count(model):
        cfg = rel_config.get_config(f"model={model},width={width}")
        _, params, _ = init_model(schema, cfg.model, 0)
        return sum(x.size for x in jax.tree.leaves(params))

    mmoe, sb = count("mmoe"), count("shared_bottom")
    assert abs(sb - mmoe) / mmoe < 0.01, (sb, mmoe)


@pytest.mark.parametrize("binary", [False, True])
def test_runlocal_trains_and_reports(tmp_path, binary):
    arg = "runlocal,model=mmoe,corr=0.5" + (",binary" if binary else "")
    config = rel_config.get_config(arg)
    final = loop.train_and_evaluate(config, str(tmp_path))
    test = final["test"]
    if binary:
        assert 0.5 < test["y1/auc"] <= 1 and "y1/oracle_auc" in test
    else:
        for t in ("y1", "y2"):
            assert test[f"{t}/mse"] > test[f"{t}/oracle_mse"] > 0
            assert np.isclose(test[f"{t}/rmse"] ** 2, test[f"{t}/mse"])
            assert test[f"{t}/r2"] > 0  # learned something in two short epochs
        assert "y1/auc" not in test
    saved = json.load(open(os.path.join(tmp_path, "final_metrics.json")))
    assert saved["flags"] == {}
