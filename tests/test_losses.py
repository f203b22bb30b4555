"""Loss semantics against numpy references: cascades, label weights, masks, ranking score."""

import numpy as np
import pytest

from mtl_jax import losses


def _bce(p, y):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _sig(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 2)).astype(np.float32)
    click = (rng.random(64) < 0.4).astype(np.float32)
    order = click * (rng.random(64) < 0.5)
    return logits, np.stack([click, order], 1).astype(np.float32)


def test_none_is_independent_bce(data):
    logits, labels = data
    got = losses.task_losses(logits, labels, cascade="none", label_weights=[(1, 1), (1, 1)])
    ref = _bce(_sig(logits), labels).mean(0)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_masked_order_loss_uses_clicked_rows_only(data):
    logits, labels = data
    got = losses.task_losses(logits, labels, cascade="masked", label_weights=[(1, 1), (1, 1)])
    clicked = labels[:, 0] > 0
    ref_order = _bce(_sig(logits[clicked, 1]), labels[clicked, 1]).mean()
    np.testing.assert_allclose(got[1], ref_order, rtol=1e-5)
    np.testing.assert_allclose(got[0], _bce(_sig(logits[:, 0]), labels[:, 0]).mean(), rtol=1e-5)


def test_product_is_esmm_ctcvr_loss(data):
    logits, labels = data
    got = losses.task_losses(logits, labels, cascade="product", label_weights=[(1, 1), (1, 1)])
    p_ctcvr = _sig(logits[:, 0]) * _sig(logits[:, 1])
    np.testing.assert_allclose(got[1], _bce(p_ctcvr, labels[:, 1]).mean(), rtol=1e-4)


def test_label_weights_and_valid_mask(data):
    logits, labels = data
    valid = np.ones(64, np.float32)
    valid[:10] = 0
    got = losses.task_losses(
        logits, labels, cascade="none", label_weights=[(3, 1), (1, 2)], valid=valid
    )
    for k, (wp, wn) in enumerate([(3, 1), (1, 2)]):
        w = np.where(labels[:, k] > 0, wp, wn) * valid
        ref = (w * _bce(_sig(logits[:, k]), labels[:, k])).sum() / w.sum()
        np.testing.assert_allclose(got[k], ref, rtol=1e-5)


def test_predict_and_ranking_score(data):
    logits, _ = data
    pred = losses.predict(logits, "masked")
    np.testing.assert_allclose(pred["cvr"], _sig(logits[:, 1]), rtol=1e-6)
    np.testing.assert_allclose(
        pred["probs"][:, 1], _sig(logits[:, 0]) * _sig(logits[:, 1]), rtol=1e-6
    )
    score = losses.ranking_score(pred["probs"], [0.8, 0.2])
    np.testing.assert_allclose(score, pred["probs"] @ np.array([0.8, 0.2]), rtol=1e-6)
    assert "cvr" not in losses.predict(logits, "none")


def test_weighted_total_and_bad_cascade(data):
    logits, labels = data
    t = losses.task_losses(logits, labels, cascade="none", label_weights=[(1, 1), (1, 1)])
    np.testing.assert_allclose(losses.weighted_total(t, [1.0, 0.02]), t[0] + 0.02 * t[1], rtol=1e-6)
    with pytest.raises(ValueError, match="config.loss.cascade"):
        losses.task_losses(logits, labels, cascade="esmm", label_weights=[(1, 1), (1, 1)])
