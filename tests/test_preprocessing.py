"""The preprocessing object: JSON round trip, apply on raw rows = the reader's columns, unseen
values counted, and the training loop saving it with the run."""

import json
import os

import ml_collections
import numpy as np
import pyarrow as pa
import pytest

from mtl_jax.data import preprocessing as pp
from mtl_jax.data import readers
from mtl_jax.data.errors import BadLines
from mtl_jax.data.readers import census, generic_csv


def _csv(tmp_path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["u,c,d,y,z,p"]
    for i in range(n):
        c, d = f"c{rng.integers(0, 9)}", rng.normal()
        lines.append(f"u{i % 37},{c},{d!r},{int(rng.uniform() < 0.3)},{rng.normal()!r},0.3")
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cfg(path, **kw):
    c = dict(kind="csv", path=str(path), label_columns=("y", "z"),
             task_types=("binary", "regression"), categorical_columns=("c",),
             dense_columns=("d",), user_column="u",
             oracle_columns=("p", "z"), min_count=2, dense_scaling="standard", seed=1)  # fmt: skip
    c.update(kw)
    return ml_collections.ConfigDict(c)


def test_json_round_trip_and_apply_reproduce_the_reader(tmp_path):
    path = _csv(tmp_path)
    ds = readers.read(_cfg(path))
    prep = pp.Preprocessing.from_json(ds.preprocessing.to_json())
    assert prep.schema() == ds.schema
    assert json.loads(prep.to_json()) == json.loads(ds.preprocessing.to_json())
    # The raw table of the file, mapped again: every row's columns as the reader made them.
    cols = generic_csv.Columns(_cfg(path))
    raw = generic_csv.read_file(str(path), cols, BadLines(), {})
    again, counts = prep.apply(raw.table)
    test = ds.splits["test"]
    # The reader's test rows are some of the file's rows; find them by their (dense, label) values.
    key = {(float(d), float(z)): i for i, (d, z) in
           enumerate(zip(again["dense"][:, 0], again["labels"][:, 1]))}  # fmt: skip
    rows = [key[(float(d), float(z))] for d, z in zip(test["dense"][:, 0], test["labels"][:, 1])]
    for k in ("cat", "dense", "labels", "p_true", "source"):
        np.testing.assert_array_equal(again[k][rows], test[k], err_msg=k)
    assert set(counts) == {"c"} and raw.table.num_rows == 400
    assert prep.schema().has_p_true and prep.schema().task_types == ("binary", "regression")


def test_unseen_values_become_zero_and_are_counted(tmp_path):
    ds = readers.read(_cfg(_csv(tmp_path)))
    prep = pp.Preprocessing.from_json(ds.preprocessing.to_json())
    table = pa.table({"c": ["c1", "new", "", "c2"], "d": [0.0, 1.0, 2.0, 3.0], "u": ["a"] * 4})
    cols, counts = prep.apply(table)
    vocab = prep.categorical[0].vocabulary
    assert cols["cat"][:, 0].tolist() == [vocab.index("c1") + 1, 0, 0, vocab.index("c2") + 1]
    assert counts["c"] == {"missing": 1, "rare": 0, "unseen": 1}
    assert "labels" not in cols  # new data without labels
    assert cols["dense"].dtype == np.float32 and np.isfinite(cols["dense"]).all()


def test_bad_preprocessing_json_is_refused():
    with pytest.raises(ValueError, match="preprocessing format"):
        pp.Preprocessing.from_json('{"format": "other"}')


def test_census_preprocessing_maps_raw_rows(shared_data):
    sample = os.path.join(shared_data, "census-income", "deepctr", "census-income.sample")
    ds = readers.read(ml_collections.ConfigDict(dict(kind="census", path=sample)))
    raw = census.read_file(sample, BadLines(), {})
    cols, counts = ds.preprocessing.apply(raw.table)
    assert cols["cat"].shape == (200, len(census.CATEGORICAL))
    assert cols["labels"].sum(axis=0).tolist() == [12, 84]
    assert sum(v["unseen"] for v in counts.values()) > 0  # val/test-only values


@pytest.mark.slow
def test_training_on_csv_writes_preprocessing_json(tmp_path):
    from configs import common
    from mtl_jax import loop

    path = _csv(tmp_path, n=600)
    c = common.get_base_config("runlocal", model="mmoe")
    c.data = _cfg(path, label_columns=("y", "y2"), task_types=(), oracle_columns=())
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0] + ",y2"] + [ln + ",0" for ln in lines[1:]]) + "\n")
    c.update(num_steps=4, batch_size=32, eval_batch_size=64, log_every_steps=2,
             eval_every_steps=100, checkpoint_every_steps=100)  # fmt: skip
    c.loss.cascade = "none"
    loop.train_and_evaluate(c, str(tmp_path / "run"))
    saved = pp.Preprocessing.from_json((tmp_path / "run" / "preprocessing.json").read_text())
    assert saved.schema().to_json() == (tmp_path / "run" / "schema.json").read_text()
