"""Raw Ali-CCP → prepare → shards → batches: checked against an independent pure-Python reading of
the raw files; splits, counts and bad input."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from mtl_jax import cli
from mtl_jax.data import aliccp_writer, loading, pipeline, prepare, shards
from mtl_jax.data.errors import DataError
from mtl_jax.data.readers import aliccp_raw as ar
from mtl_jax.data.schema import batch_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LB = 5
MIN_COUNT = 2


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    info = aliccp_writer.write_raw(
        str(d), 1500, seed=3, num_test=400, rows_per_group=15.0, click_rate=0.2, cvr=0.3,
        anomaly_rate=0.02, groups_per_batch=16,
    )  # fmt: skip
    return str(d), info


def _prepare(raw, out, **kw):
    opts = dict(
        raw_dir=raw, out=str(out), min_count=MIN_COUNT, max_bag_len=LB, progress=False, seed=5
    )
    opts.update(kw)
    return prepare.prepare_aliccp(prepare.AliccpOptions(**opts))


@pytest.fixture(scope="module")
def prepared(raw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    meta = _prepare(raw_dir[0], out)
    return str(out), meta


# ---- an independent reading of the raw files ----------------------------------------------------


def _entries(flist: bytes):
    out = []
    for e in flist.split(b"\x01"):
        f, rest = e.split(b"\x02")
        i, v = rest.split(b"\x03")
        out.append((f.decode(), int(i), float(np.float32(float(v)))))
    return out


def reference(raw, split):
    """{sample_id: (labels, {field: kept raw id}, {field: kept weight}, {bag field: ids})}."""
    common = {}
    with open(os.path.join(raw, f"common_features_{split}.csv"), "rb") as f:
        for line in f:
            key, _, flist = line.rstrip(b"\n").split(b",")
            common[key] = _entries(flist)
    rows = {}
    with open(os.path.join(raw, f"sample_skeleton_{split}.csv"), "rb") as f:
        for line in f:
            sid, click, conv, key, _, flist = line.rstrip(b"\n").split(b",")
            if click == b"0" and conv == b"1":
                continue
            own, cm = _entries(flist), common[key]
            kept, weight, bags = {}, {}, {}
            for field in ar.FIELD_NAMES:
                es = [(i, w) for f_, i, w in own if f_ == field] or [
                    (i, w) for f_, i, w in cm if f_ == field
                ]
                if not es:
                    continue
                order = sorted(range(len(es)), key=lambda k: (-es[k][1], k))
                kept[field], weight[field] = es[order[0]]
                if field in ar.BAG_FIELDS:
                    bags[field] = [es[k][0] for k in order[:LB]]
            rows[int(sid)] = ((int(click), int(conv)), kept, weight, bags)
    return rows


def _train_counts(ref, train_ids):
    counts = {f: {} for f in ar.FIELD_NAMES}
    for sid in train_ids:
        _, kept, _, bags = ref[sid]
        for f in ar.FIELD_NAMES:
            ids = bags.get(f, []) if f in ar.BAG_FIELDS else [kept[f]] if f in kept else []
            for i in ids:
                counts[f][i] = counts[f].get(i, 0) + 1
    return counts


def _assert_matches_raw(raw, out, meta):
    """Every row of every split, read through the evaluation pipeline, equals the reference
    reading of the raw files; returns the reference rows of the train and test files."""
    cfg = ml_collections.ConfigDict(
        dict(kind="prepared", path=out, extra_columns=("sample_id",) + tuple(
            f"bag_{f}_ids" for f in ar.BAG_FIELDS))
    )  # fmt: skip
    schema, splits = loading.load(cfg)
    assert set(splits["train"]) == set(batch_keys(schema)) | set(cfg.extra_columns)
    for cols in splits.values():
        assert isinstance(cols["cat"], np.memmap)
    vocab = {f: np.load(os.path.join(out, "vocab", f"{f}.npy")) for f in ar.FIELD_NAMES}
    ref_train, ref_test = reference(raw, "train"), reference(raw, "test")
    train_ids = [int(x) for x in splits["train"]["sample_id"]]
    counts = _train_counts(ref_train, train_ids)

    def expect(f, raw_id):
        if raw_id is None or counts[f].get(raw_id, 0) < MIN_COUNT:
            return 0
        return raw_id

    def to_raw(f, ids):
        return [0 if i == 0 else int(vocab[f][i - 1]) for i in ids]

    for split, ref in (("train", ref_train), ("val", ref_train), ("test", ref_test)):
        cols = splits[split]
        # Read everything back through the evaluation pipeline: padding rows are dropped.
        got = {
            k: [] for k in ("cat", "labels", "sample_id", *(f"bag_{f}_ids" for f in ar.BAG_FIELDS))
        }
        for batch in pipeline.eval_batches(cols, batch_size=64):
            keep = batch["valid"] > 0
            for k in got:
                got[k].append(batch[k][keep])
        got = {k: np.concatenate(v) for k, v in got.items()}
        assert len(got["sample_id"]) == len(cols["labels"]) == meta["splits"][split]["rows"]
        for r, sid in enumerate(got["sample_id"].tolist()):
            labels, kept, _, bags = ref[sid]
            assert tuple(got["labels"][r].astype(int)) == labels
            for f_i, f in enumerate(ar.FIELD_NAMES):
                assert to_raw(f, [got["cat"][r, f_i]])[0] == expect(f, kept.get(f)), (split, sid, f)
            for f in ar.BAG_FIELDS:
                exp = [expect(f, i) for i in bags.get(f, [])]
                exp += [0] * (LB - len(exp))
                assert to_raw(f, got[f"bag_{f}_ids"][r]) == exp, (split, sid, f)
    return ref_train, ref_test


def test_round_trip_matches_the_raw_files(raw_dir, prepared):
    raw, info = raw_dir
    out, meta = prepared
    ref_train, ref_test = _assert_matches_raw(raw, out, meta)
    # Every impression except the dropped funnel anomalies is in exactly one split.
    n_train_rows = len(ref_train)
    assert meta["splits"]["train"]["rows"] + meta["splits"]["val"]["rows"] == n_train_rows
    assert meta["splits"]["test"]["rows"] == len(ref_test)
    dropped = meta["dropped"]["click0_conversion1"]
    assert dropped["sample_skeleton_train.csv"] == info["train"]["anomalies"] > 0
    assert dropped["sample_skeleton_train.csv"] + n_train_rows == info["train"]["impressions"]


def test_dense_is_the_kept_weight_minmax_scaled_by_train(raw_dir, prepared):
    raw, _ = raw_dir
    out, meta = prepared
    _, splits = shards.open_shards(out)
    ref = reference(raw, "train")
    train_ids = splits["train"]["sample_id"].tolist()
    w = np.array([[ref[s][2].get(f, 0.0) for f in ar.DENSE_FIELDS] for s in train_ids])
    lo, hi = w.min(0), w.max(0)
    np.testing.assert_allclose(meta["dense"]["train_min"], lo, rtol=1e-6)
    np.testing.assert_allclose(meta["dense"]["train_max"], hi, rtol=1e-6)
    expect = (w - lo) / np.where(hi > lo, hi - lo, 1.0)
    np.testing.assert_allclose(splits["train"]["dense"], expect, atol=1e-6)
    assert 0.0 <= float(splits["test"]["dense"].min()) and float(splits["test"]["dense"].max()) <= 1


def test_metadata_schema_and_sequence(prepared):
    out, meta = prepared
    schema = loading.load(ml_collections.ConfigDict(dict(kind="prepared", path=out)))[0]
    assert schema.user_field == "101" and schema.tasks == ("click", "order")
    assert schema.sequence.table == "127_14" and schema.sequence.target == "216"
    assert schema.sequence.max_len == LB
    _, splits = shards.open_shards(out)
    tr = splits["train"]
    np.testing.assert_array_equal(tr["seq_item"], tr["bag_127_14_ids"])
    np.testing.assert_array_equal(tr["seq_days"], tr["bag_127_14_w"])
    assert tr["seq_loc"].shape == (len(tr["labels"]), LB) and not tr["seq_loc"].any()
    # Bag weights are descending and the single id of a bag field is its first entry.
    for f in ar.BAG_FIELDS:
        bw = np.asarray(tr[f"bag_{f}_w"])
        assert (np.diff(bw, axis=1) <= 0).all()
    np.testing.assert_array_equal(
        tr["cat"][:, ar.FIELD_INDEX["127_14"]], tr["bag_127_14_ids"][:, 0]
    )
    for s in shards.SPLITS:
        info = meta["splits"][s]
        assert info["click_rate"] == pytest.approx(tr["labels"][:, 0].mean()) or s != "train"
        for f, v in meta["vocabulary"].items():
            assert schema.categorical[ar.FIELD_INDEX[f]].vocab_size == v["size"]
            assert int(np.asarray(splits[s]["cat"][:, ar.FIELD_INDEX[f]]).max()) < v["size"]
    assert meta["ids"]["val"]["fields"]["205"]["unseen"] > 0
    assert meta["ids"]["train"]["fields"]["205"]["rare"] > 0
    assert meta["sources"][0]["bytes"] > 0 and meta["timing"]["mb_per_s"] > 0


@pytest.mark.parametrize("val_split", ["random", "user"])
def test_validation_split_disjoint_and_reproducible(raw_dir, prepared, tmp_path, val_split):
    raw, _ = raw_dir
    a = _prepare(raw, tmp_path / "a", val_split=val_split, seed=7)
    _prepare(raw, tmp_path / "b", val_split=val_split, seed=7)
    _prepare(raw, tmp_path / "c", val_split=val_split, seed=8)
    ids = {}
    for name in "abc":
        _, sp = shards.open_shards(str(tmp_path / name))
        ids[name] = {s: set(sp[s]["sample_id"].tolist()) for s in ("train", "val")}
        users = {s: set(sp[s]["user"].tolist()) for s in ("train", "val")}
        assert not ids[name]["train"] & ids[name]["val"]
        if val_split == "user":
            assert not users["train"] & users["val"]
    assert ids["a"] == ids["b"]
    assert ids["a"]["val"] != ids["c"]["val"]
    n = a["splits"]["train"]["rows"] + a["splits"]["val"]["rows"]
    assert 0.03 * n < a["splits"]["val"]["rows"] < 0.25 * n


def test_parallel_readers_give_identical_shards(raw_dir, prepared, tmp_path):
    """--workers 2 (forked readers, in a fresh process) writes exactly the in-process result."""
    raw, _ = raw_dir
    out, _ = prepared
    cmd = [
        sys.executable, "-m", "mtl_jax.data.prepare", "aliccp", "--raw-dir", raw,
        "--out", str(tmp_path / "w2"), "--workers", "2", "--min-count", str(MIN_COUNT),
        "--max-bag-len", str(LB), "--seed", "5", "--chunk-mb", "0.05", "--no-progress",
    ]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "prepared aliccp" in r.stdout
    _, one = shards.open_shards(out)
    _, two = shards.open_shards(str(tmp_path / "w2"))
    for s in shards.SPLITS:
        for k in one[s]:
            np.testing.assert_array_equal(one[s][k], two[s][k], err_msg=f"{s}/{k}")


def test_cli_refuses_a_non_empty_out_and_names_missing_files(raw_dir, prepared, tmp_path):
    out, _ = prepared
    argv = ["aliccp", "--raw-dir", raw_dir[0], "--out", out, "--no-progress"]
    assert cli.run(prepare.main, argv) == 2  # one "error: ..." line, the CLI's status for bad input
    with pytest.raises(FileNotFoundError, match="common_features_train.csv"):
        _prepare(str(tmp_path), tmp_path / "o")
    meta = json.load(open(os.path.join(out, "metadata.json")))
    assert meta["format"] == shards.FORMAT


# ---- bad input ---------------------------------------------------------------------------------

GOOD_CM = b"00000000000000aa,2,101\x025\x031.0\x01127_14\x027\x030.69315\n"
GOOD_SK = b"1,0,0,00000000000000aa,2,205\x0211\x031.0\x01301\x0221\x031.0\n"


def _raw(tmp_path, sk_train, cm_train=GOOD_CM):
    d = tmp_path / "raw"
    d.mkdir(exist_ok=True)
    (d / "sample_skeleton_train.csv").write_bytes(sk_train)
    (d / "common_features_train.csv").write_bytes(cm_train)
    (d / "sample_skeleton_test.csv").write_bytes(GOOD_SK)
    (d / "common_features_test.csv").write_bytes(GOOD_CM)
    return str(d)


BAD_SKELETON = {
    "wrong column count": b"2,0,0,00000000000000aa,1\n",
    "broken separators": b"2,0,0,00000000000000aa,2,205\x0211\x031.0\x01301\x0221\x021.0\n",
    "non-numeric label": b"2,x,0,00000000000000aa,1,205\x0211\x031.0\n",
    "label not 0/1": b"2,2,0,00000000000000aa,1,205\x0211\x031.0\n",
    "feature_num mismatch": b"2,0,0,00000000000000aa,3,205\x0211\x031.0\n",
    "bad feature value": b"2,0,0,00000000000000aa,1,205\x0211\x03nan\n",
    "common_feature_index not found": b"2,0,0,00000000000000bb,1,205\x0211\x031.0\n",
}


@pytest.mark.parametrize("reason", sorted(BAD_SKELETON))
def test_bad_skeleton_lines_raise_with_file_and_line(tmp_path, reason):
    raw = _raw(
        tmp_path, GOOD_SK + GOOD_SK.replace(b"1,", b"3,", 1) + BAD_SKELETON[reason] + GOOD_SK
    )
    path = os.path.join(raw, "sample_skeleton_train.csv")
    with pytest.raises(DataError) as e:
        _prepare(raw, tmp_path / "out")
    assert e.value.file == path and e.value.line == 3
    assert str(e.value).startswith(f"{path}:3: ")
    # Skipping counts the line under its reason and keeps the rest.
    meta = _prepare(raw, tmp_path / "skip", skip_bad=True)
    assert meta["dropped"]["bad_lines"]["by_reason"] == {reason: 1}
    assert meta["splits"]["train"]["rows"] + meta["splits"]["val"]["rows"] == 3


def test_truncated_last_line_empty_and_binary_files(tmp_path):
    raw = _raw(tmp_path, GOOD_SK + GOOD_SK[:-9])  # cut inside the last entry, no newline
    path = os.path.join(raw, "sample_skeleton_train.csv")
    with pytest.raises(DataError, match=r":2: truncated last line") as e:
        _prepare(raw, tmp_path / "o1")
    assert e.value.file == path
    raw = _raw(tmp_path, b"")
    with pytest.raises(DataError, match=r"sample_skeleton_train.csv:1: empty file"):
        _prepare(raw, tmp_path / "o2")
    raw = _raw(tmp_path, GOOD_SK, cm_train=GOOD_CM + b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(DataError, match=r"common_features_train.csv:4: not a text file"):
        _prepare(raw, tmp_path / "o3")


def test_bad_common_line_names_the_common_file(tmp_path):
    bad_cm = GOOD_CM + b"00000000000000bb,2,101\x025\x031.0\n"  # feature_num says 2, has 1
    raw = _raw(tmp_path, GOOD_SK + b"2,0,0,00000000000000bb,1,205\x0211\x031.0\n", bad_cm)
    with pytest.raises(DataError) as e:
        _prepare(raw, tmp_path / "o")
    assert e.value.file.endswith("common_features_train.csv") and e.value.line == 2
    assert "feature_num" in e.value.problem
    meta = _prepare(raw, tmp_path / "skip", skip_bad=True)
    reasons = meta["dropped"]["bad_lines"]["by_reason"]
    assert reasons == {"feature_num mismatch": 1, "impression of a bad common_features line": 1}


def test_own_entries_win_over_the_common_line(tmp_path):
    """An impression's own entries of a user bag (a common-table row of its own) and a common
    line's item-side bag (used where the impression has none) both match the reference."""
    cm = (
        b"00000000000000aa,6,101\x025\x031.0\x01127_14\x0271\x030.5\x01127_14\x0272\x031.5"
        b"\x01127_14\x0273\x031.0\x01210\x0281\x031.0\x01210\x0282\x031.0\n"
        b"00000000000000bb,2,101\x026\x031.0\x01127_14\x0271\x032.0\n"
    )
    sk = []
    for i in range(1, 25):
        key = b"00000000000000aa" if i % 3 else b"00000000000000bb"
        own = [b"205\x02%d\x031.0" % (300 + i % 4), b"301\x0221\x031.0"]
        if i % 4 == 0:  # own behaviour entries: they replace the common line's 127_14
            own += [b"127_14\x0274\x030.7", b"127_14\x0271\x032.5"]
        if i % 5 == 0:  # own intention nodes: they replace the common line's 210
            own += [b"210\x0283\x031.0"]
        sk.append(b"%d,%d,0,%s,%d,%s\n" % (i, i % 2, key, len(own), b"\x01".join(own)))
    d = tmp_path / "raw"
    d.mkdir()
    for split in ("train", "test"):
        (d / f"sample_skeleton_{split}.csv").write_bytes(b"".join(sk))
        (d / f"common_features_{split}.csv").write_bytes(cm)
    meta = _prepare(str(d), tmp_path / "out", val_fraction=0.3)
    _assert_matches_raw(str(d), str(tmp_path / "out"), meta)
    # Rows with own 127_14 entries point past the key rows of the common table.
    _, splits = shards.open_shards(str(tmp_path / "out"))
    assert meta["tables"]["common_train"]["rows"] > 2
    assert (np.asarray(splits["test"]["common_row"]) >= 2).sum() == 6


def test_batches_equal_the_pre_arrow_prepare(tmp_path):
    """tests/data/golden_aliccp holds tiny raw files and every batch the previous prepare (the
    numpy parser, bags stored per row; commit 6091a02) made of them: the shards of this one,
    joined and ragged, give the same columns, training batches, vocabularies and statistics."""
    import gzip

    golden = os.path.join(ROOT, "tests", "data", "golden_aliccp")
    expected = json.load(open(os.path.join(golden, "expected.json")))
    arrays = np.load(os.path.join(golden, "expected.npz"))
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in os.listdir(golden):
        if name.endswith(".csv.gz"):
            (raw / name[:-3]).write_bytes(gzip.open(os.path.join(golden, name)).read())
    for workers, chunk in ((1, 4 << 20), (2, 5000)):
        out = tmp_path / f"out{workers}"
        meta = prepare.prepare_aliccp(
            prepare.AliccpOptions(
                raw_dir=str(raw), out=str(out), progress=False, workers=workers,
                chunk_bytes=chunk, **expected["options"],
            )
        )  # fmt: skip
        bags = tuple(f"bag_{f}_{k}" for f in ar.BAG_FIELDS for k in ("ids", "w"))
        cfg = ml_collections.ConfigDict(
            dict(kind="prepared", path=str(out), extra_columns=("sample_id", *bags))
        )
        schema, splits = loading.load(cfg)
        assert json.loads(schema.to_json()) == expected["schema"]
        for s, cols in splits.items():
            for k, v in cols.items():
                np.testing.assert_array_equal(np.asarray(v), arrays[f"{s}/{k}"], err_msg=f"{s}/{k}")
        spec = expected["train_batches"]
        it = iter(
            pipeline.train_batches(
                loading.model_inputs(splits["train"]), batch_size=spec["batch_size"],
                num_steps=spec["num_steps"], seed=spec["seed"], prefetch=0,
            )
        )  # fmt: skip
        for i in range(spec["num_steps"]):
            for k, v in next(it).items():
                np.testing.assert_array_equal(v, arrays[f"train_batch{i}/{k}"], err_msg=f"{i}/{k}")
        assert meta["ids"] == expected["ids"] and meta["dense"] == expected["dense"]
        assert {k: v["size"] for k, v in meta["vocabulary"].items()} == expected["vocabulary"]
        for k, v in expected["dropped"].items():
            assert meta["dropped"][k] == v, k


@pytest.mark.slow
def test_source_field_and_training_on_it(raw_dir, tmp_path):
    """--source-field 301: each position value is a source (vocabulary order), stored in the
    ``source`` column and counted in the metadata; the paper's combined model (multi-source
    loss with the adversarial term) trains on the shards: ``configs/aliccp.py:model=paper_full``."""
    raw, _ = raw_dir
    out = tmp_path / "src"
    meta = _prepare(raw, out, source_field="301")
    sf = meta["source_field"]
    vocab = np.load(os.path.join(out, "vocab", "301.npy"))
    assert sf["field"] == "301" and [s["raw_id"] for s in sf["sources"]][: len(vocab)] == [
        int(v) for v in vocab
    ]
    assert meta["schema"]["num_sources"] == sf["num_sources"] >= len(vocab) >= 2
    _, splits = shards.open_shards(str(out))
    f301 = ar.FIELD_INDEX["301"]
    for s, cols in splits.items():
        ids = np.asarray(cols["cat"][:, f301])
        src = np.asarray(cols["source"])
        np.testing.assert_array_equal(src, np.where(ids > 0, ids - 1, len(vocab)))
        counts = np.bincount(src, minlength=sf["num_sources"])
        assert counts.tolist() == [x["rows"][s] for x in sf["sources"]]
    from configs import aliccp
    from mtl_jax import loop

    c = aliccp.get_config("model=paper_full,runlocal")
    c.data.path = str(out)
    c.update(num_steps=3, batch_size=64, eval_batch_size=256, log_every_steps=3,
             eval_every_steps=100, checkpoint_every_steps=100)  # fmt: skip
    final = loop.train_and_evaluate(c, str(tmp_path / "run"))
    assert np.isfinite(final["test"]["loss"])


def test_truncated_last_common_line_is_named(tmp_path):
    """A common-features file without its last newline: the line parsed whole (fast path) is
    still reported as truncated, with its file and line."""
    raw = _raw(tmp_path, GOOD_SK, cm_train=GOOD_CM[:-1])
    with pytest.raises(DataError, match=r"common_features_train.csv:1: truncated last line"):
        _prepare(raw, tmp_path / "o")
    meta = _prepare(raw, tmp_path / "skip", skip_bad=True)
    reasons = meta["dropped"]["bad_lines"]["by_reason"]
    assert reasons == {"truncated last line": 1, "impression of a bad common_features line": 1}
