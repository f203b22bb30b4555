"""The synthetic generator's phenomenon knobs and configs/phenomena.py."""

import json
import os

import numpy as np
import pytest

from configs import phenomena
from mtl_jax.data import synthetic as S

SMALL = dict(vocab_scale=0.01, num_train=4000, num_val=10, num_test=10)


PREKNOB = os.path.join(os.path.dirname(__file__), "data", "synthetic_preknob_summary.json")


def _column_summary(d) -> dict:
    """Per key: shape, and the mean and standard deviation of every column."""
    out = {}
    for k, v in d.items():
        a = np.asarray(v, np.float64).reshape(len(v), -1)
        out[k] = {"shape": list(np.shape(v)), "mean": a.mean(0), "std": a.std(0)}
    return out


def test_default_knobs_reproduce_the_data_every_earlier_result_used():
    """At their defaults the knobs give the data of the generator before they existed (commit
    4a6d65d's parent), so the committed tables still describe this generator.

    The reference is the old generator's per-column means and standard deviations
    (tests/data/synthetic_preknob_summary.json, recorded on a machine where the old and the new
    generator gave bit-identical arrays). Not a digest of the bytes: numpy's SIMD exp / log / sin
    differ in the last bit between CPUs, and digests recorded on one machine failed on the next
    (even of floats rounded to 6 decimals). The tolerance admits a few flipped draws; another
    generator (other draws, another order) moves the column means by ~1%.
    """
    with open(PREKNOB) as f:
        want = json.load(f)
    got = {
        "one": S.generate(S.SyntheticConfig(vocab_scale=0.01, num_train=5000), "train"),
        "three": S.generate(
            S.SyntheticConfig(vocab_scale=0.01, num_train=5000, num_sources=3, seed=2), "train"
        ),
    }
    for name, data in got.items():
        summary = _column_summary(data)
        assert sorted(summary) == sorted(want[name]), name
        for k, w in want[name].items():
            assert summary[k]["shape"] == w["shape"], (name, k)
            for stat in ("mean", "std"):
                np.testing.assert_allclose(
                    summary[k][stat], w[stat], rtol=1e-3, atol=1e-3, err_msg=f"{name} {k} {stat}"
                )


def test_interest_decay_changes_only_the_labels():
    base = S.generate(S.SyntheticConfig(**SMALL), "train")
    fast = S.generate(S.SyntheticConfig(**SMALL, interest_decay_days=1.0), "train")
    for k in ("cat", "dense", "seq_item", "seq_days"):
        np.testing.assert_array_equal(base[k], fast[k])  # aggregates keep their 3-day decay
    assert not np.allclose(base["p_true"], fast["p_true"])


def test_task_feature_split_separates_the_feature_groups():
    """At ρ = 0 and split 1, p_click is a function of (user, position) and p_cvr of the item."""
    d = S.generate(
        S.SyntheticConfig(**SMALL, task_correlation=0.0, task_feature_split=1.0), "train"
    )
    p_click = d["p_true"][:, 0]
    p_cvr = d["p_true"][:, 1] / p_click
    user_pos = d["cat"][:, 0].astype(np.int64) * 8 + d["cat"][:, 18]
    item = d["cat"][:, 9]
    for key, p in ((user_pos, p_click), (item, p_cvr)):
        order = np.argsort(key, kind="stable")
        k, v = key[order], p[order]
        same = k[1:] == k[:-1]
        assert same.sum() > 100
        np.testing.assert_allclose(v[1:][same], v[:-1][same], rtol=1e-4)
    # without the split the click probability varies with the item for a fixed user and position
    d0 = S.generate(S.SyntheticConfig(**SMALL, task_correlation=0.0), "train")
    key = d0["cat"][:, 0].astype(np.int64) * 8 + d0["cat"][:, 18]
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    p = d0["p_true"][order, 0]
    assert np.abs(p[1:][same] - p[:-1][same]).max() > 0.01


def test_interaction_adds_the_product_of_the_standardised_biases():
    cfg = S.SyntheticConfig(**SMALL, interaction_weight=1.0)
    base = S.generate(S.SyntheticConfig(**SMALL), "train")
    inter = S.generate(cfg, "train")
    np.testing.assert_array_equal(base["cat"], inter["cat"])
    assert not np.allclose(base["p_true"], inter["p_true"])
    model = S.latent_model(cfg)
    assert model.labels.bias_scale.shape == (2,) and (model.labels.bias_scale > 0).all()


def test_misaligned_sources_show_other_features_but_share_the_labels():
    aligned = S.generate(S.SyntheticConfig(**SMALL, num_sources=3), "train")
    shown = S.generate(S.SyntheticConfig(**SMALL, num_sources=3, source_misalignment=1.0), "train")
    for k in ("labels", "p_true", "source", "user"):
        np.testing.assert_array_equal(aligned[k], shown[k])
    first = aligned["source"] == 0
    np.testing.assert_array_equal(aligned["dense"][first], shown["dense"][first])
    np.testing.assert_array_equal(aligned["cat"][first], shown["cat"][first])
    assert not np.allclose(aligned["dense"][~first], shown["dense"][~first])
    # a position id of a later source is a permutation of the true one
    for src in (1, 2):
        rows = aligned["source"] == src
        pairs = set(zip(aligned["cat"][rows, 18].tolist(), shown["cat"][rows, 18].tolist()))
        assert len(pairs) == 3 and len({a for a, _ in pairs}) == 3


@pytest.mark.parametrize("name", sorted(phenomena.PHENOMENA))
def test_every_phenomenon_config_builds(name):
    c = phenomena.get_config(f"model=mmoe,phenomenon={name},seed=2")
    assert c.seed == 2 and c.data.synthetic.num_train == 150_000
    for key, value in phenomena.PHENOMENA[name].items():
        assert c.data.synthetic[key] == value
    S.SyntheticConfig(**dict(c.data.synthetic))  # valid knobs


def test_phenomenon_config_refuses_unknown_names():
    with pytest.raises(ValueError, match="phenomenon='spin'"):
        phenomena.get_config("phenomenon=spin")
    with pytest.raises(ValueError, match="configs/nope.py"):
        phenomena.get_config("model=nope")
    assert phenomena.get_config("model=multisource").data.synthetic.num_sources == 3


def test_summary_puts_each_component_off_and_on_against_mmoe(tmp_path):
    import json

    from mtl_jax import phenomena as report

    todo = report.settings()
    assert todo["none"][0] == "mmoe" and "sequence_mmoe" in todo["none"]
    assert todo["sources"] == ["mmoe", "multisource"] and "multisource" not in todo["none"]
    assert "sequence_mmoe" in todo["headroom"]
    assert report.settings(headroom_components=False)["headroom"] == ["mmoe"]
    # fake runs: sequence_mmoe ties MMoE on the default data and wins by 0.01 on every seed with
    # the sequence phenomenon on
    for setting, gain in (("none", 0.0), ("sequence", 0.01)):
        for name in ("mmoe", "sequence_mmoe"):
            for seed in range(6):
                d = tmp_path / setting / name / f"seed{seed}"
                d.mkdir(parents=True)
                auc = 0.70 + 0.001 * seed + (gain if name == "sequence_mmoe" else 0.0)
                test = {
                    "click/auc": auc, "order/auc": 0.8, "click/oracle_gap": 0.02,
                    "order/oracle_gap": 0.03,
                }  # fmt: skip
                (d / "final_metrics.json").write_text(json.dumps({"test": test}))
    lines = report.summary(str(tmp_path), range(6))
    row = next(r for r in lines if r.startswith("| sequence_mmoe |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["sequence_mmoe", "none", "sequence"]
    assert cells[3] == "+0.00% (p 1.000)"
    assert cells[4].startswith("+1.4") and "p 0.031 *" in cells[4]
    assert next(r for r in lines if r.startswith("| coarse_attention |")).count("not run") == 4
    none_row = next(r for r in lines if r.startswith("| none |"))
    assert "0.0200 ± 0.0000" in none_row
