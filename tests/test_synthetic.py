"""Synthetic Ali-CCP data: contract, determinism, label model and oracle quality."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mtl_jax.data import synthetic
from mtl_jax.data.schema import batch_keys
from mtl_jax.data.synthetic import (
    FIELDS,
    LatentModel,
    SyntheticConfig,
    generate,
    synthetic_schema,
    vocab_sizes,
)

SMALL = SyntheticConfig(vocab_scale=0.01, num_train=60_000, num_val=6_000, num_test=6_000)

DTYPES = {
    "cat": np.int32,
    "dense": np.float32,
    "labels": np.float32,
    "user": np.int32,
    "source": np.int32,
    "seq_item": np.int32,
    "seq_days": np.float32,
    "seq_loc": np.int32,
    "p_true": np.float32,
}


@pytest.fixture(scope="module")
def train():
    return generate(SMALL, "train")


@pytest.fixture(scope="module")
def big():
    """More rows for the statistical checks."""
    cfg = dataclasses.replace(SMALL, num_train=200_000)
    return generate(cfg, "train")


def _col(name: str) -> int:
    return list(FIELDS).index(name)


def test_schema():
    s = synthetic_schema(SMALL)
    assert [f.name for f in s.categorical] == list(FIELDS)
    assert len(s.categorical) == 23 and s.num_dense == 8
    assert s.dense == ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")
    assert s.tasks == ("click", "order") and s.user_field == "101" and s.has_p_true
    assert s.sequence.table == "205" and s.sequence.target == "205"
    assert s.sequence.max_len == 20 and s.sequence.num_locations == 33
    assert s.num_sources == 1
    assert synthetic_schema(dataclasses.replace(SMALL, sequence=False)).sequence is None
    assert synthetic_schema(dataclasses.replace(SMALL, num_sources=3)).num_sources == 3


def test_vocab_sizes():
    full = vocab_sizes(SyntheticConfig())
    assert full == {name: v for name, (v, _) in FIELDS.items()}
    assert full["101"] == 238635 and full["205"] == 467298 and full["301"] == 4
    small = vocab_sizes(SMALL)
    for name, (v, _) in FIELDS.items():
        assert small[name] == (v if v <= 100 else max(32, round(v * 0.01)))
    tiny = vocab_sizes(dataclasses.replace(SMALL, vocab_scale=1e-6))
    assert min(v for n, v in tiny.items() if FIELDS[n][0] > 100) == 32


def test_keys_dtypes_shapes(train):
    s = synthetic_schema(SMALL)
    n, L = SMALL.num_train, SMALL.max_seq_len
    assert set(train) == set(batch_keys(s))
    shapes = {
        "cat": (n, 23),
        "dense": (n, 8),
        "labels": (n, 2),
        "user": (n,),
        "source": (n,),
        "seq_item": (n, L),
        "seq_days": (n, L),
        "seq_loc": (n, L),
        "p_true": (n, 2),
    }
    for k, v in train.items():
        assert v.dtype == DTYPES[k], k
        assert v.shape == shapes[k], k
    cfg = dataclasses.replace(SMALL, sequence=False, num_val=100)
    val = generate(cfg, "val")
    assert set(val) == set(batch_keys(synthetic_schema(cfg)))
    assert "seq_item" not in val and val["cat"].shape == (100, 23)


def test_sample_matches_schema():
    model = LatentModel(dataclasses.replace(SMALL, max_seq_len=7, num_locations=5))
    out = model.sample(1000, np.random.default_rng(0))
    assert set(out) == set(batch_keys(model.schema))
    assert out["seq_item"].shape == (1000, 7)
    assert out["seq_loc"].max() < 5
    assert model.sample(0, np.random.default_rng(0))["cat"].shape == (0, 23)


def test_ids_and_values_in_range(train):
    s = synthetic_schema(SMALL)
    cat = train["cat"]
    sizes = np.array([f.vocab_size for f in s.categorical])
    assert (cat >= 0).all() and (cat < sizes).all()
    assert (cat[:, _col("205")] > 0).all() and (cat[:, _col("206")] > 0).all()
    assert set(np.unique(cat[:, _col("301")])) <= {1, 2, 3}
    np.testing.assert_array_equal(train["user"], cat[:, 0])
    assert (train["user"] > 0).all()
    d = train["dense"]
    assert np.isfinite(d).all() and (d >= 0).all() and (d <= 1).all()
    assert (train["seq_item"] >= 0).all() and (train["seq_item"] < sizes[_col("205")]).all()
    loc = train["seq_loc"]
    assert (loc >= 0).all() and (loc < SMALL.num_locations).all()
    days = train["seq_days"]
    assert (days >= 0).all() and (days < 14).all()
    assert (train["source"] == 0).all()
    assert set(np.unique(train["labels"])) <= {0.0, 1.0}
    p = train["p_true"]
    assert ((p > 0) & (p < 1)).all() and (p[:, 1] <= p[:, 0]).all()


def test_missing_rates(big):
    cat = big["cat"]
    missing = (cat == 0).mean(0)
    assert 0.3 < missing[_col("126")] < 0.75  # Ali-CCP: ~58%
    assert 0.15 < missing[_col("216")] < 0.4  # Ali-CCP: ~29%
    assert 0.03 < missing[_col("121")] < 0.3  # Ali-CCP: ~13%
    for f in ("205", "206", "207", "210", "301"):
        assert missing[_col(f)] == 0, f
    for f, d in zip(("508", "509", "702", "853"), range(4, 8), strict=True):
        present = cat[:, _col(f)] > 0
        assert 0.02 < present.mean() < 0.95, f
        # a combination id is present exactly when its dense weight is
        np.testing.assert_array_equal(present, big["dense"][:, d] > 0)


def test_determinism_and_splits():
    cfg = dataclasses.replace(SMALL, seed=3, num_train=5000, num_val=5000)
    a = LatentModel(cfg).sample(3000, np.random.default_rng(7))
    b = LatentModel(cfg).sample(3000, np.random.default_rng(7))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    tr1, tr2 = generate(cfg, "train"), generate(cfg, "train")
    for k in tr1:
        np.testing.assert_array_equal(tr1[k], tr2[k])
    val = generate(cfg, "val")
    assert not np.array_equal(tr1["cat"], val["cat"])
    assert (tr1["cat"] != val["cat"]).any(1).mean() > 0.9
    # same users (the latent model is shared): a user's profile is the same in both splits
    common = np.intersect1d(tr1["user"], val["user"])
    assert len(common) > 50
    for u in common[:20]:
        np.testing.assert_array_equal(
            tr1["cat"][tr1["user"] == u][0, :9], val["cat"][val["user"] == u][0, :9]
        )
    other = generate(dataclasses.replace(cfg, seed=4), "train")
    assert not np.array_equal(other["cat"], tr1["cat"])


def test_result_independent_of_chunking():
    """Rows are seeded per chunk, so a shorter split is a prefix of a longer one."""
    cfg = dataclasses.replace(SMALL, num_train=3 * synthetic.CHUNK_ROWS + 17)
    long = generate(cfg, "train")
    short = generate(dataclasses.replace(cfg, num_train=synthetic.CHUNK_ROWS + 5), "train")
    for k in short:
        np.testing.assert_array_equal(short[k], long[k][: len(short[k])])


def test_sequence_flag_only_toggles_the_output():
    cfg = dataclasses.replace(SMALL, num_train=3000)
    with_seq = generate(cfg, "train")
    without = generate(dataclasses.replace(cfg, sequence=False), "train")
    assert set(with_seq) - set(without) == {"seq_item", "seq_days", "seq_loc"}
    for k in without:
        np.testing.assert_array_equal(without[k], with_seq[k])


def test_unknown_split():
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        generate(SMALL, "dev")


def test_order_implies_click(big):
    y = big["labels"]
    assert (y[:, 1] <= y[:, 0]).all()
    assert y[:, 1].sum() > 0


@pytest.mark.parametrize("click_rate,cvr", [(0.10, 0.10), (0.039, 0.0054)])
def test_rates_hit_targets(click_rate, cvr):
    cfg = dataclasses.replace(SMALL, click_rate=click_rate, cvr=cvr, num_train=200_000)
    d = generate(cfg, "train")
    y, p = d["labels"], d["p_true"]
    n = len(y)
    ctr = y[:, 0].mean()
    assert abs(ctr - click_rate) < 5 * np.sqrt(click_rate / n) + 0.05 * click_rate
    assert abs(p[:, 0].mean() - click_rate) < 0.05 * click_rate
    # E[order | click] = cvr, checked on the probabilities (few orders at Ali-CCP's rates)
    assert abs(p[:, 1].sum() / p[:, 0].sum() - cvr) < 0.05 * cvr
    clicks = y[:, 0].sum()
    assert abs(y[:, 1].sum() / clicks - cvr) < 5 * np.sqrt(cvr / clicks) + 0.05 * cvr


def test_p_true_matches_labels(big):
    y, p = big["labels"].astype(np.float64), big["p_true"].astype(np.float64)
    n = len(y)
    for t in range(2):
        se = np.sqrt((p[:, t] * (1 - p[:, t])).sum()) / n
        assert abs(y[:, t].mean() - p[:, t].mean()) < 5 * se, t
    # calibration by decile of p_click
    q = np.quantile(p[:, 0], np.linspace(0, 1, 11))
    b = np.clip(np.searchsorted(q, p[:, 0], side="right") - 1, 0, 9)
    for k in range(10):
        m = b == k
        se = np.sqrt((p[m, 0] * (1 - p[m, 0])).sum()) / m.sum()
        assert abs(y[m, 0].mean() - p[m, 0].mean()) < 5 * se + 1e-3


def test_oracle_auc(big):
    y, p = big["labels"], big["p_true"]
    auc_click = roc_auc_score(y[:, 0], p[:, 0])
    auc_order = roc_auc_score(y[:, 1], p[:, 1])
    c = y[:, 0] == 1
    auc_cvr = roc_auc_score(y[c, 1], p[c, 1] / p[c, 0])
    assert 0.7 < auc_click < 0.9
    assert auc_order > 0.75
    assert 0.65 < auc_cvr < 0.9


def _constant_per_key(key: np.ndarray, values: np.ndarray) -> int:
    """Asserts ``values`` (rows) are equal wherever ``key`` is; returns the repeated-key count."""
    order = np.argsort(key, kind="stable")
    k, v = key[order], values[order]
    same = k[1:] == k[:-1]
    np.testing.assert_array_equal(v[1:][same], v[:-1][same])
    return int(same.sum())


def test_item_and_user_fields_are_functions_of_their_id(big):
    cat = big["cat"]
    item_cols = [_col(f) for f in ("206", "207", "210", "216")]
    assert _constant_per_key(cat[:, _col("205")], cat[:, item_cols]) > 1000
    user_cols = [_col(f) for f in ("121", "122", "124", "125", "126", "127", "128", "129")]
    user_cols += [_col(f) for f in ("109_14", "110_14", "127_14", "150_14")]
    per_user = np.concatenate(
        [
            cat[:, user_cols],
            big["dense"][:, :4].view(np.int32),
            big["seq_item"],
            big["seq_loc"],
            big["seq_days"].view(np.int32),
        ],
        1,
    )
    assert _constant_per_key(big["user"], per_user) > 1000


def test_sequence_padding(train):
    item, days, loc = train["seq_item"], train["seq_days"], train["seq_loc"]
    pad = item == 0
    assert pad.any() and (~pad).any()
    assert (days[pad] == 0).all() and (loc[pad] == 0).all()
    assert (loc[~pad] >= 1).all()
    # padding only at the end, most recent behaviour first
    assert (pad[:, :-1] <= pad[:, 1:]).all()
    valid_pair = ~pad[:, 1:]
    assert (days[:, 1:][valid_pair] >= days[:, :-1][valid_pair]).all()
    lengths = (~pad).sum(1)
    assert lengths.max() == SMALL.max_seq_len and lengths.min() == 0


def test_sequence_carries_interest_signal(big):
    """Clicked rows' target category shows up in the history more often than unclicked ones'."""
    s = synthetic_schema(SMALL)
    del s
    d508 = big["dense"][:, 4]
    y = big["labels"][:, 0]
    assert d508[y == 1].mean() > 1.2 * d508[y == 0].mean()


def _logit(p):
    p = p.astype(np.float64)
    return np.log(p) - np.log1p(-p)


def test_task_correlation_direction():
    corr = {}
    for rho in (0.0, 1.0):
        cfg = dataclasses.replace(SMALL, task_correlation=rho, num_train=20_000)
        p = generate(cfg, "train")["p_true"]
        p_cvr = p[:, 1] / p[:, 0]
        corr[rho] = np.corrcoef(_logit(p[:, 0]), _logit(p_cvr))[0, 1]
    assert corr[1.0] > 0.99
    assert corr[0.0] < corr[1.0] - 0.3


def test_num_sources():
    cfg = dataclasses.replace(SMALL, num_sources=3, num_train=60_000)
    d = generate(cfg, "train")
    src = d["source"]
    assert set(np.unique(src)) == {0, 1, 2}
    item = d["cat"][:, _col("205")]
    tops = []
    for s in range(3):
        ids, counts = np.unique(item[src == s], return_counts=True)
        tops.append(set(ids[np.argsort(-counts)[:20]]))
    assert len(tops[0] & tops[1]) < 15 and len(tops[0] & tops[2]) < 15
    means = np.stack([d["dense"][src == s].mean(0) for s in range(3)])
    assert np.abs(means[1:] - means[0]).max() > 0.01
    y, p = d["labels"], d["p_true"]
    assert abs(y[:, 0].mean() - p[:, 0].mean()) < 0.01


@pytest.mark.parametrize(
    "field,value",
    [
        ("seed", -1),
        ("num_train", -5),
        ("num_val", 1.5),
        ("num_test", -1),
        ("vocab_scale", 0.0),
        ("vocab_scale", 1.5),
        ("max_seq_len", 0),
        ("num_locations", 1),
        ("task_correlation", 1.1),
        ("task_correlation", -0.1),
        ("click_rate", 0.0),
        ("click_rate", 1.0),
        ("cvr", 0.0),
        ("cvr", float("nan")),
        ("num_sources", 0),
        ("zipf_exponent", 0.0),
        ("sequence", "yes"),
    ],
)
def test_bad_config_raises(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**{field: value})


def test_config_is_hashable_and_cached():
    assert hash(SMALL) == hash(dataclasses.replace(SMALL))
    assert synthetic.latent_model(SMALL) is synthetic.latent_model(dataclasses.replace(SMALL))
