"""The baseline zoo: ESMM, CGC, PLE and AITM — shapes, gates, gradient isolation, the AITM
calibrator, the configs, and (slow) that each learns both tasks on runlocal data."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import model_config, tiny_batch, tiny_schema

from mtl_jax import loop, losses
from mtl_jax.models import build_model
from mtl_jax.state import count_params, split_model

PLE_KEYS = dict(num_specific_experts=2, num_shared_experts=3)


def _params(model):
    _, params, _ = split_model(model)
    return params


def test_esmm_ctcvr_is_ctr_times_cvr():
    schema = tiny_schema()
    model = build_model(schema, model_config("esmm"), seed=0)
    logits = model(tiny_batch(schema, 16), train=False)["logits"]
    assert logits.shape == (16, 2)
    pred = losses.predict(logits, "product")
    ctr, cvr = jax.nn.sigmoid(logits[:, 0]), jax.nn.sigmoid(logits[:, 1])
    np.testing.assert_allclose(pred["probs"][:, 0], ctr, rtol=1e-6)
    np.testing.assert_allclose(pred["cvr"], cvr, rtol=1e-6)
    np.testing.assert_allclose(pred["probs"][:, 1], ctr * cvr, rtol=1e-6)
    # Training uses the same CTCVR: the order loss is the BCE of ctr · cvr.
    labels = np.array(tiny_batch(schema, 16)["labels"])
    task = losses.task_losses(logits, labels, cascade="product", label_weights=[(1, 1), (1, 1)])
    p = np.asarray(ctr * cvr, np.float64)
    ref = -(labels[:, 1] * np.log(p) + (1 - labels[:, 1]) * np.log(1 - p)).mean()
    np.testing.assert_allclose(task[1], ref, rtol=1e-4)


def test_zoo_configs_set_their_cascade_and_keys():
    get = lambda name, arg=None: importlib.import_module(f"configs.{name}").get_config(arg)
    assert get("esmm").loss.cascade == "product"  # order/* is then CTCVR, cvr/* is CVR
    assert get("aitm").loss.cascade == "none"  # the calibrator compares P(order) with P(click)
    assert get("aitm").model.aitm_constraint_weight == 0.6
    for name, levels in (("cgc", 1), ("ple", 2)):
        c = get(name)
        assert (c.model.name, c.model.num_levels) == (name, levels)
        # 2 specific per task + 4 shared: the paper's 8 experts for click/order.
        assert 2 * c.model.num_specific_experts + c.model.num_shared_experts == c.model.num_experts
        r = get(name, "runlocal")
        assert 2 * r.model.num_specific_experts + r.model.num_shared_experts == r.model.num_experts


@pytest.mark.parametrize("name,levels", [("cgc", 1), ("ple", 1), ("ple", 2), ("ple", 3)])
def test_cgc_ple_shapes_and_gates_sum_to_one(name, levels):
    schema = tiny_schema()
    cfg = model_config(name, gate_hidden=(5,), num_levels=levels, **PLE_KEYS)
    model = build_model(schema, cfg, seed=0)
    out = model(tiny_batch(schema, 16), train=True)
    assert out["logits"].shape == (16, 2)
    assert np.all(np.isfinite(out["logits"]))
    assert out["gates"].shape == (16, 2, 2 + 3)  # [B, T, specific + shared]
    np.testing.assert_allclose(np.asarray(out["gates"]).sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.asarray(out["gates"]) >= 0)
    assert len(model.levels) == levels
    # Only inner levels have the shared gate over all experts.
    assert [lv.shared_gate is not None for lv in model.levels] == [True] * (levels - 1) + [False]


def test_ple_with_one_level_is_cgc():
    schema = tiny_schema()
    cgc = build_model(schema, model_config("cgc", **PLE_KEYS), seed=0)
    ple = build_model(schema, model_config("ple", num_levels=1, **PLE_KEYS), seed=0)
    ple2 = build_model(schema, model_config("ple", num_levels=2, **PLE_KEYS), seed=0)
    assert count_params(_params(cgc)) == count_params(_params(ple))
    assert jax.tree.structure(_params(cgc)) == jax.tree.structure(_params(ple))
    assert count_params(_params(ple2)) > count_params(_params(ple))
    batch = tiny_batch(schema, 8)
    np.testing.assert_allclose(
        cgc(batch, train=False)["logits"], ple(batch, train=False)["logits"], rtol=1e-6
    )


def test_cgc_rejects_more_levels_and_missing_keys():
    schema = tiny_schema()
    with pytest.raises(ValueError, match="config.model.num_levels must be 1 for model 'cgc'"):
        build_model(schema, model_config("cgc", num_levels=2, **PLE_KEYS), seed=0)
    with pytest.raises(ValueError, match="config.model.num_shared_experts is not set"):
        build_model(schema, model_config("ple", num_levels=1, num_specific_experts=1), seed=0)
    with pytest.raises(ValueError, match="config.model.num_specific_experts must be a positive"):
        cfg = model_config("cgc", num_specific_experts=0, num_shared_experts=1)
        build_model(schema, cfg, seed=0)


def _task1_grad_on_task0_specific(name, levels):
    """Per level: max |∂ Σ_b order logit / ∂θ| over task 0's and over task 1's specific experts."""
    schema = tiny_schema()
    cfg = model_config(name, num_levels=levels, **PLE_KEYS)
    model = build_model(schema, cfg, seed=0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = tiny_batch(schema, 16)

    def task1_logit_sum(p):
        return nnx.merge(graphdef, p, rest)(batch, train=False)["logits"][:, 1].sum()

    grads = nnx.to_pure_dict(jax.grad(task1_logit_sum)(params))
    Ks = PLE_KEYS["num_specific_experts"]
    out = []
    for level in grads["levels"].values():
        layers = level["experts"]["layers"].values()
        specific0 = [jnp.abs(w[:Ks]).max() for lyr in layers for w in lyr.values()]  # task 0
        specific1 = [jnp.abs(w[Ks : 2 * Ks]).max() for lyr in layers for w in lyr.values()]
        out.append((float(max(specific0)), float(max(specific1))))
    return out


def test_cgc_task0_specific_experts_get_no_gradient_from_task1():
    ((g0, g1),) = _task1_grad_on_task0_specific("cgc", 1)
    assert g0 == 0.0
    assert g1 > 0.0  # task 1's own specific experts do learn from it


def test_ple_isolation_holds_at_the_last_level_only():
    (inner0, _), (last0, last1) = _task1_grad_on_task0_specific("ple", 2)
    # Inner level: task 0's specific experts feed the shared gate, hence task 1.
    assert inner0 > 0.0
    assert last0 == 0.0 and last1 > 0.0


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


@pytest.mark.parametrize("weight", [0.6, 2.0])
def test_aitm_aux_loss_is_the_calibrator(weight):
    schema = tiny_schema()
    model = build_model(schema, model_config("aitm", aitm_constraint_weight=weight), seed=3)
    batch = tiny_batch(schema, 64)
    out = model(batch, train=False)
    assert out["logits"].shape == (64, 2)
    p = _sigmoid(out["logits"])
    violation = np.maximum(p[:, 1] - p[:, 0], 0)
    assert violation.max() > 0  # the check is not vacuous: some rows violate the order
    np.testing.assert_allclose(out["aux_loss"], weight * violation.mean(), rtol=1e-5)
    np.testing.assert_allclose(out["aux_metrics"]["aitm_constraint"], violation.mean(), rtol=1e-5)
    w = float(out["aux_metrics"]["aitm_transfer_weight"])
    assert 0.0 < w < 1.0
    # Padding rows (valid = 0) do not count.
    valid = np.zeros(64, np.float32)
    valid[:20] = 1
    out_v = model(dict(batch, valid=valid), train=False)
    np.testing.assert_allclose(out_v["aux_loss"], weight * violation[:20].mean(), rtol=1e-5)


def test_aitm_order_head_reads_the_click_tower():
    # The transfer makes the order logit depend on the click tower; the click logit does not
    # depend on the order tower (information flows click → order only).
    schema = tiny_schema()
    model = build_model(schema, model_config("aitm", aitm_constraint_weight=0.6), seed=0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = tiny_batch(schema, 16)

    def logit_sum(p, t):
        return nnx.merge(graphdef, p, rest)(batch, train=False)["logits"][:, t].sum()

    for t, other in ((1, 0), (0, 1)):
        g = nnx.to_pure_dict(jax.grad(logit_sum)(params, t))
        tower_grads = [w[other] for lyr in g["towers"]["layers"].values() for w in lyr.values()]
        reached = max(float(jnp.abs(x).max()) for x in tower_grads)
        assert (reached > 0) == (t == 1), (t, reached)


def test_zoo_models_need_two_tasks():
    schema = tiny_schema(tasks=("click",))
    for name, keys in (("esmm", {}), ("aitm", dict(aitm_constraint_weight=0.6))):
        with pytest.raises(ValueError, match=f"model '{name}'"):
            build_model(schema, model_config(name, **keys), seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["esmm", "cgc", "ple", "aitm"])
def test_zoo_model_learns_both_tasks(name, tmp_path):
    config = importlib.import_module(f"configs.{name}").get_config("runlocal")
    final = loop.train_and_evaluate(config, str(tmp_path))
    val = final["val"]
    assert val["click/auc"] > 0.6, val
    assert val["order/auc"] > 0.6, val
    if name in ("cgc", "ple"):
        assert np.asarray(val["gates/mean"]).shape == (2, 3)  # runlocal: 1 specific + 2 shared
        assert np.asarray(val["gates/collapsed"]).shape == (2,)
