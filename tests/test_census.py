"""configs/census.py: MMoE on UCI census-income (the MMoE paper's real-data benchmark)."""

import json
import os

import jax
import pytest

from configs import census
from mtl_jax import config_check, loop
from mtl_jax.data import loading
from mtl_jax.models import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_MODELS = {"__init__", "common", "census", "aliccp", "phenomena", "relatedness"}  # data configs
MODEL_CONFIGS = sorted(
    f[:-3]
    for f in os.listdir(os.path.join(ROOT, "configs"))
    if f.endswith(".py") and f[:-3] not in NOT_MODELS
)


def test_config_matches_the_task_and_a_missing_path_is_named(monkeypatch, tmp_path):
    c = census.get_config()
    assert c.data.kind == "census" and c.model.name == "mmoe"
    assert c.loss.cascade == "none"
    assert tuple(c.loss.loss_weights) == (1.0, 1.0)
    assert tuple(c.loss.export_weights) == (0.5, 0.5)
    assert c.batch_size % 4 == 0 and c.eval_batch_size % 4 == 0
    monkeypatch.chdir(tmp_path)  # the default path is relative to the repo root
    with pytest.raises(FileNotFoundError, match=r"config.data.path='\.\./shared/data/census"):
        loading.load(c.data)


def test_sample_trains_end_to_end(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    c = census.get_config("runlocal")
    c.data.path = os.path.join(shared_data, "census-income", "deepctr", "census-income.sample")
    c.batch_size = 32
    c.eval_batch_size = 32
    c.num_steps = 6
    schema, _ = loading.load(c.data)
    config_check.validate(c, schema)
    final = loop.train_and_evaluate(c, str(tmp_path))
    assert set(final["test"]) >= {"income/auc", "never_married/auc", "loss"}


@pytest.mark.slow
def test_mmoe_reaches_the_paper_level_auc(shared_data, tmp_path, monkeypatch):
    """Seeded 80/10/10 split of the 99,762-row census file; 2 epochs (about a minute on CPU)."""
    monkeypatch.chdir(ROOT)
    c = census.get_config()
    c.data.path = os.path.join(shared_data, "census-income", "keras-mmoe", "census-income.test.gz")
    c.num_epochs = 2
    final = loop.train_and_evaluate(c, str(tmp_path))
    test = final["test"]
    print(json.dumps({k: test[k] for k in ("income/auc", "never_married/auc")}))
    assert test["income/rows"] == 9_976
    assert test["income/auc"] >= 0.90
    assert test["never_married/auc"] >= 0.97


def test_every_suited_model_builds_on_census_and_the_others_are_refused(shared_data, monkeypatch):
    """``configs/census.py:model=NAME`` (what ``ablate --data-config census`` runs): the census
    data, loss and sizes with each model; a model needing a cascade, a sequence or sources is
    refused by name."""
    monkeypatch.chdir(ROOT)
    path = os.path.join(shared_data, "census-income", "deepctr", "census-income.sample")
    suited = [m for m in MODEL_CONFIGS if m not in census.UNSUITED]
    assert {"mmoe", "ple", "coarse_attention", "expert_attention", "boost_experts"} <= set(suited)
    schema = None
    for name in suited:
        c = census.get_config(f"model={name},runlocal")
        assert c.model.name == name and c.data.kind == "census" and c.loss.cascade == "none"
        c.data.path = path
        if schema is None:
            schema, splits = loading.load(c.data)
        config_check.validate(c, schema)
        model = registry.build_model(schema, c.model, seed=0)
        batch = {k: v[:4] for k, v in loading.model_inputs(splits["train"]).items()}
        out = model(batch, train=False)
        assert out["logits"].shape == (4, 2), name
        assert bool(jax.numpy.isfinite(out["logits"]).all()), name
    for name in census.UNSUITED:
        with pytest.raises(ValueError, match=f"model='{name}' needs"):
            census.get_config(f"model={name}")
