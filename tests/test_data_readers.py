"""Readers of the real excerpts in ../shared/data: rows, fields, labels; vocabularies, splits, bad
input."""

import gzip
import os

import ml_collections
import numpy as np
import pytest

from mtl_jax.data import loading, readers
from mtl_jax.data.errors import BadLines, DataError
from mtl_jax.data.readers import aitm, esmm
from mtl_jax.data.schema import batch_keys


def cfg(**kw):
    return ml_collections.ConfigDict(kw)


def totals(ds, splits=("train", "val", "test")):
    """(rows, label sums) over the given splits."""
    lab = np.concatenate([ds.splits[s]["labels"] for s in splits])
    return len(lab), lab.sum(axis=0).astype(int).tolist()


def check_layout(ds):
    for s in ("train", "val", "test"):
        cols = ds.splits[s]
        assert set(cols) == set(batch_keys(ds.schema)), s
        n = len(cols["labels"])
        assert cols["cat"].shape == (n, ds.schema.num_fields) and cols["cat"].dtype == np.int32
        assert cols["dense"].shape == (n, ds.schema.num_dense) and cols["dense"].dtype == np.float32
        assert cols["labels"].shape == (n, ds.schema.num_tasks)
        assert set(np.unique(cols["labels"])) <= {0.0, 1.0}
        sizes = np.array([f.vocab_size for f in ds.schema.categorical])
        assert ((cols["cat"] >= 0) & (cols["cat"] < sizes)).all()
        assert (cols["source"] >= 0).all() and (cols["source"] < ds.schema.num_sources).all()


def test_rechub_csv_sample(shared_data):
    path = os.path.join(shared_data, "ali-ccp-sample", "torch-rechub")
    ds = readers.read(cfg(kind="rechub_csv", path=path))
    check_layout(ds)
    assert [totals(ds, (s,)) for s in ("train", "val", "test")] == [
        (100, [7, 1]),
        (50, [3, 1]),
        (50, [2, 1]),
    ]
    assert ds.schema.num_fields == 23 and ds.schema.dense[0] == "D109_14"
    assert ds.schema.user_field == "101"
    # All rows share user 101 = 1; the first row's D109_14 is 0.4734 as in the file.
    assert ds.splits["train"]["dense"][0, 0] == pytest.approx(0.4734)
    assert len(np.unique(ds.splits["train"]["user"])) == 1
    # 205 = 0 (missing) in row 1, id 1 in row 2 of the file.
    f205 = ds.schema.field_index("205")
    assert ds.splits["train"]["cat"][0, f205] == 0 and ds.splits["train"]["cat"][1, f205] > 0


def test_aitm_csv_with_and_without_header(shared_data):
    path = os.path.join(shared_data, "ali-ccp-sample", "paddlerec-aitm")
    ds = readers.read(cfg(kind="aitm_csv", path=path, seed=1))
    check_layout(ds)
    assert totals(ds, ("test",)) == (50, [3, 3])  # test.csv: no header, 50 rows
    assert totals(ds, ("train", "val")) == (48, [3, 3])  # train.csv: header, 48 rows
    assert ds.stats["splits"]["test"]["second_task_without_first"] == 3
    assert ds.schema.num_fields == 18 and ds.schema.num_dense == 0


def test_esmm_text_keeps_first_id_and_reads_every_token(shared_data):
    path = os.path.join(shared_data, "ali-ccp-sample", "paddlerec-esmm")
    ds = readers.read(cfg(kind="esmm_text", path=path))
    check_layout(ds)
    assert totals(ds, ("test",)) == (10, [1, 0])  # 10 impressions, 1 click, 0 conversions
    assert totals(ds, ("train", "val")) == (10, [2, 1])
    raw = esmm.read_file(os.path.join(path, "test", "small.txt"), BadLines(), {})
    first = open(os.path.join(path, "test", "small.txt")).readline().split(",")
    # The first feature token of line 1 is 210:1; PaddleRec's reader skips it, this one keeps it.
    assert first[3] == "210:1" and raw.table.column("210")[0].as_py() == 1
    assert raw.table.column("126")[0].as_py() == -1  # 126 absent for this user
    i101 = ds.schema.field_index("101")
    assert (ds.splits["test"]["cat"][:, i101] > 0).all()
    assert (ds.splits["test"]["cat"][:, ds.schema.field_index("126")] == 0).all()


def test_aliexpress_sources_and_search_id_groups(shared_data):
    rechub = os.path.join(shared_data, "aliexpress-sample", "torch-rechub")
    fuxi = os.path.join(shared_data, "aliexpress-sample", "fuxictr-tiny_mtl")
    ds = readers.read(cfg(kind="aliexpress", path=rechub, val_split="user", seed=2))
    check_layout(ds)
    assert totals(ds, ("train", "val")) == (100, [60, 2])
    assert totals(ds, ("test",)) == (20, [10, 2])
    assert ds.schema.num_fields == 17 and ds.schema.num_dense == 63
    assert ds.schema.user_field == "search_id" and ds.schema.categorical[0].vocab_size == 1
    assert not (set(ds.splits["train"]["user"]) & set(ds.splits["val"]["user"]))
    both = readers.read(cfg(kind="aliexpress", path=f"{rechub},{fuxi}"))
    check_layout(both)
    assert both.schema.num_sources == 2
    assert totals(both, ("test",)) == (120, [16, 3])
    src = both.splits["test"]["source"]
    assert (src == 0).sum() == 20 and (src == 1).sum() == 100


def test_census_sample_with_index_column_and_full_test_file(shared_data):
    sample = os.path.join(shared_data, "census-income", "deepctr", "census-income.sample")
    ds = readers.read(cfg(kind="census", path=sample, seed=0))
    check_layout(ds)
    assert totals(ds) == (200, [12, 84])
    assert [len(ds.splits[s]["labels"]) for s in ("train", "val", "test")] == [160, 20, 20]
    assert ds.schema.tasks == ("income", "never_married") and ds.schema.user_field is None
    assert "marital_stat" not in [f.name for f in ds.schema.categorical]
    assert "instance_weight" not in ds.schema.dense
    train_dense = ds.splits["train"]["dense"].astype(np.float64)  # standardised by default
    np.testing.assert_allclose(train_dense.mean(0), 0.0, atol=1e-5)
    stds = train_dense.std(0)
    assert np.all((np.abs(stds - 1.0) < 1e-4) | (stds == 0.0))  # a constant column → 0
    full = os.path.join(shared_data, "census-income", "keras-mmoe", "census-income.test.gz")
    ds = readers.read(cfg(kind="census", path=full))
    assert totals(ds) == (99_762, [6_186, 43_143])


def test_generic_csv_vocab_rare_unseen_and_scaling(tmp_path):
    (tmp_path / "train.csv").write_text(
        "y,z,c,d,u\n1,0,a,1.0,u1\n0,0,a,3.0,u1\n1,1,a,5.0,u2\n0,0,b,2.0,u3\n"
    )
    (tmp_path / "test.csv").write_text("y,z,c,d,u\n1,0,c,9.0,u9\n0,0,b,-1.0,u1\n")
    ds = readers.read(
        cfg(
            kind="csv", path=str(tmp_path), label_columns=("y", "z"), categorical_columns=("c",),
            dense_columns=("d",), user_column="u", min_count=2, seed=0, val_fraction=0.25,
            dense_scaling="minmax",
        )
    )  # fmt: skip
    check_layout(ds)
    assert ds.schema.tasks == ("y", "z") and ds.schema.user_field == "u"
    assert ds.schema.categorical[ds.schema.field_index("u")].vocab_size == 1  # group id only
    test = ds.splits["test"]
    c = ds.schema.field_index("c")
    np.testing.assert_array_equal(test["cat"][:, c], [0, 0])  # c unseen, b rare → 0
    ids = ds.stats["ids"]["test"]["c"]
    assert (ids["unseen"], ids["rare"]) == (1, 1)
    assert test["dense"][:, 0].tolist() == [1.0, 0.0]  # MinMax by train, clipped
    assert test["user"][0] != test["user"][1]


def test_parquet_needs_pyarrow_or_reads(tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        (tmp_path / "d.parquet").write_bytes(b"PAR1")
        with pytest.raises(ImportError, match="pyarrow"):
            readers.read(
                cfg(kind="csv", path=str(tmp_path / "d.parquet"), label_columns=("y",),
                    categorical_columns=("c",))
            )  # fmt: skip
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"y": [0, 1] * 10, "c": list("ab") * 10}), tmp_path / "d.parquet")
    ds = readers.read(
        cfg(kind="csv", path=str(tmp_path / "d.parquet"), label_columns=("y",),
            categorical_columns=("c",))
    )  # fmt: skip
    assert totals(ds) == (20, [10])


@pytest.mark.parametrize("mode", ["random", "user"])
def test_validation_split_disjoint_and_reproducible_by_seed(tmp_path, mode):
    rng = np.random.default_rng(0)
    users = rng.integers(0, 40, 400)
    lines = ["y,c,u"] + [f"{i % 2},{i % 7},u{u}" for i, u in enumerate(users)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(lines[:20]) + "\n")

    def split(seed):
        ds = readers.read(
            cfg(kind="csv", path=str(tmp_path), label_columns=("y",), categorical_columns=("c",),
                user_column="u", val_split=mode, seed=seed)
        )  # fmt: skip
        return ds.splits["train"], ds.splits["val"]

    (tr, va), (tr2, va2), (_, va3) = split(1), split(1), split(2)
    assert len(tr["labels"]) + len(va["labels"]) == 400
    assert 25 <= len(va["labels"]) <= 70
    np.testing.assert_array_equal(va["user"], va2["user"])
    np.testing.assert_array_equal(tr["cat"], tr2["cat"])
    assert not np.array_equal(np.sort(va["user"]), np.sort(va3["user"]))
    if mode == "user":
        assert not set(tr["user"].tolist()) & set(va["user"].tolist())


def test_split_indices_partition():
    for groups in (None, np.arange(1000) % 37):
        a, b, c = readers.split_indices(1000, (0.1, 0.1), 3, groups)
        assert len(np.union1d(np.union1d(a, b), c)) == 1000
        assert not (set(a) & set(b)) and not (set(b) & set(c)) and not (set(a) & set(c))
        assert 80 <= len(a) <= 140 and 80 <= len(b) <= 140


def test_load_dispatches_and_checks_kind_and_path(shared_data, tmp_path, monkeypatch, caplog):
    sample = os.path.join(shared_data, "census-income", "deepctr", "census-income.sample")
    with caplog.at_level("INFO", logger="absl"):
        schema, splits = loading.load(cfg(kind="census", path=sample))
    assert schema.num_tasks == 2 and len(splits["test"]["labels"]) == 20
    # The read is reported in the absl log: kind, path, and per split rows and rates.
    (report,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: ")]
    assert report.startswith(f"data: census {sample}\n") and "   20 rows" in report
    with pytest.raises(ValueError, match="config.data.kind must be one of"):
        loading.load(cfg(kind="nope"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config.data.path='missing/x.gz'.*does not exist"):
        loading.load(cfg(kind="census", path="missing/x.gz"))
    with pytest.raises(ValueError, match="config.data.path is required"):
        loading.load(cfg(kind="prepared"))


# ---- bad input ----------------------------------------------------------------------------------

AITM_HEADER = "click,purchase," + ",".join(aitm.FIELDS)
AITM_ROW = "0,0," + ",".join(["1"] * 18)
BAD_AITM = {
    "wrong column count": "0,0," + ",".join(["1"] * 17),
    "non-numeric label": "x,0," + ",".join(["1"] * 18),
    "label not 0/1": "2,0," + ",".join(["1"] * 18),
    "bad id": "0,0,1.5," + ",".join(["1"] * 17),
    "non-numeric value": "0,0,a," + ",".join(["1"] * 17),
}


def _aitm(tmp_path, train: str):
    (tmp_path / "a_train.csv").write_text(train)
    (tmp_path / "a_test.csv").write_text(AITM_ROW + "\n")
    return cfg(kind="aitm_csv", path=str(tmp_path))


@pytest.mark.parametrize("reason", sorted(BAD_AITM))
def test_bad_csv_lines_raise_with_file_and_line(tmp_path, reason):
    c = _aitm(tmp_path, "\n".join([AITM_HEADER, AITM_ROW, AITM_ROW, BAD_AITM[reason], AITM_ROW]))
    path = str(tmp_path / "a_train.csv")
    with pytest.raises(DataError) as e:
        readers.read(c)
    assert (e.value.file, e.value.line) == (path, 4)
    assert str(e.value).startswith(f"{path}:4: ")
    c.skip_bad = True
    ds = readers.read(c)
    assert ds.stats["bad_lines"]["by_reason"] == {reason: 1}
    assert totals(ds, ("train", "val"))[0] == 3


def test_truncated_empty_and_binary_files(tmp_path):
    c = _aitm(tmp_path, AITM_HEADER + "\n" + AITM_ROW + "\n" + AITM_ROW[:9])
    with pytest.raises(DataError, match=r"a_train.csv:3: expected 20 comma-separated columns"):
        readers.read(c)
    c = _aitm(tmp_path, "")
    with pytest.raises(DataError, match=r"a_train.csv:1: empty file"):
        readers.read(c)
    (tmp_path / "a_train.csv").write_bytes(b"click,purchase\n\x00\x01\x02garbage")
    with pytest.raises(DataError, match=r"a_train.csv:2: not a text file"):
        readers.read(c)
    gz = tmp_path / "census.gz"
    gz.write_bytes(gzip.compress(b"1, 2, 3\n"))
    with pytest.raises(DataError, match=r"census.gz:1: expected 42 columns"):
        readers.read(cfg(kind="census", path=str(gz)))
    gz.write_bytes(gzip.compress(bytes(range(256)) * 40)[:200])  # a truncated gzip stream
    with pytest.raises(DataError, match=r"census.gz:1: cannot read the file"):
        readers.read(cfg(kind="census", path=str(gz)))


def test_bad_esmm_and_census_labels(shared_data, tmp_path):
    d = tmp_path / "esmm"
    (d / "train").mkdir(parents=True)
    (d / "test").mkdir()
    (d / "train" / "t.txt").write_text("1,0,0,101:3,205:4\n2,1,1,101:3,205:x\n")
    (d / "test" / "t.txt").write_text("1,0,0,101:3\n")
    with pytest.raises(DataError, match=r"train/t.txt:2: feature token '205:x'"):
        readers.read(cfg(kind="esmm_text", path=str(d)))
    sample = os.path.join(shared_data, "census-income", "deepctr", "census-income.sample")
    lines = open(sample).read().splitlines()
    lines[4] = lines[4].replace(" - 50000.", " maybe")
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"c.csv:5: income_50k is 'maybe'"):
        readers.read(cfg(kind="census", path=str(tmp_path / "c.csv")))


# ---- Arrow parsing: quoting, BOM, CRLF, gzip --------------------------------------------------


def _csv_cfg(path, **kw):
    base = dict(kind="csv", path=str(path), label_columns=("y",), categorical_columns=("c",),
                dense_columns=("d",), seed=0)  # fmt: skip
    base.update(kw)
    return cfg(**base)


def _rows(ds):
    """All rows of every split as {(c raw value, d)}: the splits are seeded, values are not."""
    prep = ds.preprocessing
    out = set()
    for cols in ds.splits.values():
        c = cols["cat"][:, 0]
        vocab = [None, *prep.categorical[0].vocabulary]
        out |= {(vocab[i], float(d)) for i, d in zip(c.tolist(), cols["dense"][:, 0].tolist())}
    return out


def test_csv_quoting_bom_crlf_and_gzip_read_alike(tmp_path):
    rows = [("1", '"a,b"', "1.0"), ("0", '"multi\nline"', "2.0"), ("1", "plain", "3.0")] * 10
    text = "y,c,d\n" + "".join(f"{y},{c},{d}\n" for y, c, d in rows)
    (tmp_path / "plain.csv").write_text(text)
    (tmp_path / "bom_crlf.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    (tmp_path / "z.csv.gz").write_bytes(gzip.compress(text.encode()))
    got = [_rows(readers.read(_csv_cfg(tmp_path / n))) for n in ("plain.csv", "z.csv.gz")]
    crlf = _rows(readers.read(_csv_cfg(tmp_path / "bom_crlf.csv")))
    # Inside quotes the CRLF file's newline is \r\n (field content); the rest is the same.
    got.append({(v.replace("\r\n", "\n"), d) for v, d in crlf})
    assert got[0] == got[1] == got[2]
    assert {v for v, _ in got[0]} == {"a,b", "multi\nline", "plain"}  # a quoted comma stays


def test_bad_value_after_a_quoted_newline_names_the_physical_line(tmp_path):
    text = 'y,c,d\n1,"two\nlines",1.0\n0,x,2.0\n1,y,oops\n0,z,4.0\n'
    (tmp_path / "q.csv").write_text(text)
    with pytest.raises(DataError) as e:
        readers.read(_csv_cfg(tmp_path / "q.csv"))
    assert (e.value.line, str(e.value)) == (
        5,
        f"{tmp_path / 'q.csv'}:5: column 'd': 'oops' is not a number",
    )
    (tmp_path / "q2.csv").write_text('y,c,d\n1,"open,1.0\n0,x,2.0\n')
    with pytest.raises(DataError, match=r"q2.csv:2: a quoted field is never closed"):
        readers.read(_csv_cfg(tmp_path / "q2.csv"))


def test_blank_lines_are_counted_and_bad_lines_skip_in_line_order(tmp_path):
    text = "y,c,d\n1,a,1.0\n\n0,b\n2,c,3.0\n\n1,d,4.0\n" + "0,e,5.0\n" * 20
    (tmp_path / "b.csv").write_text(text)
    with pytest.raises(DataError, match=r"b.csv:4: expected 3 comma-separated columns, found 2"):
        readers.read(_csv_cfg(tmp_path / "b.csv"))
    ds = readers.read(_csv_cfg(tmp_path / "b.csv", skip_bad=True))
    assert ds.stats["bad_lines"]["by_reason"] == {"wrong column count": 1, "label not 0/1": 1}
    assert ds.stats["blank_lines"] == 2
    assert totals(ds)[0] == 22


# ---- generic CSV: task types, dense-only data, oracle columns, scaling --------------------------


def test_regression_dense_only_csv_loads(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = 3.0 * x[:, 0] - x[:, 1]
    lines = ["x0,x1,y,click"] + [f"{a},{b},{t},{int(t > 0)}" for (a, b), t in zip(x, y)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    ds = readers.read(
        cfg(kind="csv", path=str(tmp_path / "r.csv"), label_columns=("y", "click"),
            task_types=("regression", "binary"), dense_columns=("x0", "x1"))
    )  # fmt: skip
    assert ds.schema.categorical == () and ds.schema.task_types == ("regression", "binary")
    tr = ds.splits["train"]
    assert tr["cat"].shape == (len(tr["labels"]), 0) and tr["cat"].dtype == np.int32
    all_y = np.concatenate([ds.splits[s]["labels"][:, 0] for s in ("train", "val", "test")])
    np.testing.assert_allclose(np.sort(all_y), np.sort(y.astype(np.float32)))
    with pytest.raises(ValueError, match="task_types has 1 types"):
        readers.read(cfg(kind="csv", path=str(tmp_path / "r.csv"), label_columns=("y", "click"),
                         task_types=("regression",), dense_columns=("x0",)))  # fmt: skip
    (tmp_path / "bad.csv").write_text("x0,y\n1.0,2.5\n2.0,inf\n" + "1.0,1.0\n" * 10)
    with pytest.raises(DataError, match=r"bad.csv:3: label 'y' is 'inf', not finite"):
        readers.read(cfg(kind="csv", path=str(tmp_path / "bad.csv"), label_columns=("y",),
                         task_types=("regression",), dense_columns=("x0",)))  # fmt: skip
    with pytest.raises(DataError, match=r"bad.csv:2: label 'y' is '2.5', not 0 or 1"):
        readers.read(cfg(kind="csv", path=str(tmp_path / "bad.csv"), label_columns=("y",),
                         dense_columns=("x0",)))  # fmt: skip


def test_oracle_columns_fill_p_true(tmp_path):
    rng = np.random.default_rng(1)
    p = rng.uniform(size=300)
    lines = ["c,y,p"] + [f"k{i % 5},{int(rng.uniform() < q)},{float(q)!r}" for i, q in enumerate(p)]
    (tmp_path / "o.csv").write_text("\n".join(lines) + "\n")
    ds = readers.read(cfg(kind="csv", path=str(tmp_path / "o.csv"), label_columns=("y",),
                          categorical_columns=("c",), oracle_columns=("p",)))  # fmt: skip
    check_layout(ds)
    assert ds.schema.has_p_true and "p_true" in batch_keys(ds.schema)
    got = np.concatenate([ds.splits[s]["p_true"][:, 0] for s in ("train", "val", "test")])
    np.testing.assert_allclose(np.sort(got), np.sort(p.astype(np.float32)))
    lines[7] = "k1,1,1.5"
    (tmp_path / "o.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"o.csv:8: column 'p': '1.5' is not in \[0, 1\]"):
        readers.read(cfg(kind="csv", path=str(tmp_path / "o.csv"), label_columns=("y",),
                         categorical_columns=("c",), oracle_columns=("p",)))  # fmt: skip


@pytest.mark.parametrize("scaling", ["minmax", "standard", "none"])
def test_dense_scaling_is_fitted_on_train(tmp_path, scaling):
    (tmp_path / "train.csv").write_text("y,c,d,k\n" + "".join(
        f"{i % 2},a,{v},5\n" for i, v in enumerate([1.0, 2.0, 3.0, 4.0] * 5)))  # fmt: skip
    (tmp_path / "test.csv").write_text("y,c,d,k\n1,a,7.0,9\n0,a,-2.0,5\n")
    ds = readers.read(cfg(kind="csv", path=str(tmp_path), label_columns=("y",),
                          categorical_columns=("c",), dense_columns=("d", "k"),
                          dense_scaling=scaling, seed=0))  # fmt: skip
    test = ds.splits["test"]["dense"]
    train = np.concatenate([ds.splits[s]["dense"] for s in ("train", "val")])
    fitted = {d.name: d for d in ds.preprocessing.dense}
    if scaling == "minmax":
        assert 0.0 <= train.min() and train.max() <= 1.0
        lo, hi = fitted["d"].center, fitted["d"].center + fitted["d"].scale
        np.testing.assert_allclose(
            test[:, 0], np.clip((np.array([7.0, -2.0]) - lo) / (hi - lo), 0, 1)
        )
        np.testing.assert_allclose(test[:, 1], [1.0, 0.0])  # constant column: x - min, clipped
    elif scaling == "standard":
        tr = ds.splits["train"]["dense"][:, 0]
        assert abs(float(tr.mean())) < 1e-6 and abs(float(tr.std()) - 1.0) < 1e-5
        np.testing.assert_allclose(test[:, 1], [0.0, 0.0])  # constant in training → 0
    else:
        np.testing.assert_allclose(test, [[7.0, 9.0], [-2.0, 5.0]])


def test_finite_input_never_becomes_nan(tmp_path):
    big = ["1.7e308", "-1.7e308"] + ["0.5"] * 30
    (tmp_path / "h.csv").write_text(
        "y,c,d\n" + "".join(f"{i % 2},a,{v}\n" for i, v in enumerate(big))
    )
    # MinMax over [-1.7e308, 1.7e308]: max − min overflows float64, so it is refused by name.
    with pytest.raises(DataError, match=r"h.csv:2: column 'd': the training range .* overflows"):
        readers.read(cfg(kind="csv", path=str(tmp_path / "h.csv"), label_columns=("y",),
                         categorical_columns=("c",), dense_columns=("d",), seed=3,
                         dense_scaling="minmax"))  # fmt: skip
    ds = readers.read(cfg(kind="csv", path=str(tmp_path / "h.csv"), label_columns=("y",),
                          categorical_columns=("c",), dense_columns=("d",), seed=3,
                          dense_scaling="standard"))  # fmt: skip
    for cols in ds.splits.values():
        assert np.isfinite(cols["dense"]).all()
    # Without scaling a value beyond float32 cannot be a float32 feature.
    with pytest.raises(DataError, match=r"column 'd': 1.7e\+308 becomes .* beyond float32"):
        readers.read(cfg(kind="csv", path=str(tmp_path / "h.csv"), label_columns=("y",),
                         categorical_columns=("c",), dense_columns=("d",), seed=3,
                         dense_scaling="none"))  # fmt: skip


def test_census_implausible_values_name_line_and_column(shared_data, tmp_path):
    sample = os.path.join(shared_data, "census-income", "deepctr", "census-income.sample")
    lines = open(sample).read().splitlines()
    toks = lines[9].split(",")
    toks[1] = "1e308"  # age (after DeepCTR's index column)
    lines[9] = ",".join(toks)
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=r"c.csv:10: column 'age': '1e308' is outside the plausible"
    ):
        readers.read(cfg(kind="census", path=str(tmp_path / "c.csv")))
    ds = readers.read(cfg(kind="census", path=str(tmp_path / "c.csv"), skip_bad=True))
    assert ds.stats["bad_lines"]["by_reason"] == {"implausible value": 1}
    assert totals(ds)[0] == 199


def test_text_is_never_retyped(tmp_path):
    # "007" and "7" are different category values; Arrow must not infer a number type.
    lines = ["y,c"] + [f"{i % 2},{'007' if i % 3 else '7'}" for i in range(60)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    ds = readers.read(cfg(kind="csv", path=str(tmp_path / "t.csv"), label_columns=("y",),
                          categorical_columns=("c",)))  # fmt: skip
    assert sorted(ds.preprocessing.categorical[0].vocabulary) == ["007", "7"]


def test_a_quote_inside_an_unquoted_field_is_text(tmp_path):
    pizza = '12" pizza'
    lines = ["y,c,d"] + [f"{i % 2},{pizza if i == 3 else 'plain'},1.0" for i in range(30)]
    (tmp_path / "q.csv").write_text("\n".join(lines) + "\n")
    ds = readers.read(_csv_cfg(tmp_path / "q.csv"))
    assert set(ds.preprocessing.categorical[0].vocabulary) == {pizza, "plain"}
