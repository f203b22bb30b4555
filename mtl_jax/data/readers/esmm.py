"""``esmm_text``: PaddleRec's ESMM / ESCM2 Ali-CCP text (``sample_id,click,conversion,f:id,...``).

One impression per line, no header: the sample id, the two labels, then ``field:id`` tokens for
every feature occurrence (the impression's own, then the user's common features). Layouts:
``train/`` and ``test/`` sub-directories of files (PaddleRec's), or ``*train*`` / ``*test*``
files. Each field keeps its first id, as PaddleRec's reader does, but every token is read
(PaddleRec's reader skips the first one, ``features[4:]``); an absent field is missing (-1 in the
raw table, id 0). Tokens of fields that are not Ali-CCP fields are counted and ignored.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtl_jax.data.errors import BadLines
from mtl_jax.data.readers import shared

_FIELD_VALUES = pa.array(shared.ALICCP_FIELDS)
#: Lines are read whole (the column separator of the CSV reader is one the format never holds).
_NO_SEPARATOR = "\x1f"


def read_file(path: str, bad: BadLines, stats: dict) -> shared.Raw:
    """One file as a raw table: ``sample_id``, ``click``, ``conversion`` and one int64 column
    per Ali-CCP field (its first id, -1 if absent)."""
    raw = shared.read_text(
        path, stats, header=False, column_names=["line"], delimiter=_NO_SEPARATOR, quoting=False
    )
    n = raw.table.num_rows
    toks = pc.split_pattern(raw.table.column("line").combine_chunks(), ",")
    count = pc.list_value_length(toks).to_numpy(zero_copy_only=False)
    problems = []
    for i in np.flatnonzero(count < 3).tolist():
        problems.append(
            (i, f"expected sample_id,click,conversion,... found {count[i]} columns",
             "wrong column count")
        )  # fmt: skip
    has3 = count >= 3
    cols = {}
    for k, name in enumerate(("sample_id", "click", "conversion")):
        v = np.full(n, "", object)
        v[has3] = pc.list_element(toks.filter(pa.array(has3)), k).to_numpy(zero_copy_only=False)
        cols[name] = v
    labels = {}
    for name in ("click", "conversion"):
        v = cols[name]
        labels[name] = (v == "1").astype(np.float64)
        for i in np.flatnonzero((v != "0") & (v != "1") & has3).tolist():
            _, parsed, _ = shared.parse_numbers(pa.array([v[i]]))
            reason = "label not 0/1" if parsed[0] else "non-numeric label"
            problems.append((i, f"{name} label {v[i][:40]!r} is not 0 or 1", reason))
    sid = pa.array(cols["sample_id"].astype(str))
    sid_ok = pc.ascii_is_decimal(sid).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(~sid_ok & has3).tolist():
        problems.append((i, f"sample_id {cols['sample_id'][i][:40]!r} is not an integer",
                         "bad sample_id"))  # fmt: skip
    # Feature tokens: field:id, every one of them.
    feats = pc.list_slice(toks, 3)
    flat = pc.list_flatten(feats)
    row = pc.list_parent_indices(feats).to_numpy()
    parts = pc.split_pattern(flat, ":", max_splits=1)
    two = pc.list_value_length(parts).to_numpy(zero_copy_only=False) == 2
    field = pc.list_element(parts.filter(pa.array(two)), 0)
    fid = pc.list_element(parts.filter(pa.array(two)), 1)
    good = two.copy()
    good[two] = (
        (pc.binary_length(field).to_numpy() > 0)
        & pc.ascii_is_decimal(fid).to_numpy(zero_copy_only=False)
        & (pc.binary_length(fid).to_numpy() <= 18)
    )
    for j in np.flatnonzero(~good).tolist():
        problems.append((int(row[j]), f"feature token {flat[j].as_py()[:40]!r} is not field:id",
                         "bad feature token"))  # fmt: skip
    field_all = np.full(len(flat), "", object)
    fidx = np.full(len(flat), -1, np.int64)
    ids = np.zeros(len(flat), np.int64)
    where = np.flatnonzero(two)
    fidx[where] = pc.index_in(field, value_set=_FIELD_VALUES).fill_null(-1).to_numpy()
    ok_ids = good[where]
    ids[where[ok_ids]] = pc.cast(fid.filter(pa.array(ok_ids)), pa.int64()).to_numpy()
    field_all[where] = field.to_numpy(zero_copy_only=False)
    unknown = stats.setdefault("unknown_field_tokens", {})
    for name, c in zip(*np.unique(field_all[good & (fidx < 0)].astype(str), return_counts=True)):
        unknown[str(name)] = unknown.get(str(name), 0) + int(c)
    # The first id of each (row, field).
    use = np.flatnonzero(good & (fidx >= 0))
    key = row[use] * len(shared.ALICCP_FIELDS) + fidx[use]
    _, first = np.unique(key, return_index=True)
    first = use[first]
    table = {
        "sample_id": pa.array(np.where(sid_ok, cols["sample_id"], "0").astype(str)),
        "click": labels["click"],
        "conversion": labels["conversion"],
    }
    for f, name in enumerate(shared.ALICCP_FIELDS):
        col = np.full(n, -1, np.int64)
        m = fidx[first] == f
        col[row[first[m]]] = ids[first[m]]
        table[name] = col
    raw.table = pa.table(table)
    ok = np.ones(n, bool)
    ok[[i for i, _, _ in problems]] = False
    shared.report(raw, bad, problems)
    raw = raw.take(ok) if not ok.all() else raw
    raw.set("sample_id", pc.cast(raw.table.column("sample_id"), pa.int64()))
    return raw


def _files(path: str) -> dict[str, list[str]]:
    if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test")):
        return {s: shared.files(os.path.join(path, s), "*", s) for s in ("train", "test")}
    return {s: [shared.one(path, f"*{s}*", s)] for s in ("train", "test")}


def read(cfg) -> shared.SplitColumns:
    opts, path = shared.options(cfg), shared.resolve_path(cfg, kind="esmm_text")
    bad, stats = BadLines(opts.skip_bad), {}
    parts = {
        s: shared.concat([read_file(f, bad, stats) for f in fs]) for s, fs in _files(path).items()
    }
    parts["train"], parts["val"] = shared.train_val(
        parts["train"], opts, user_column="101", what="esmm_text"
    )
    stats["bad_lines"] = bad.to_dict()
    prep = shared.aliccp_preprocessing(
        "esmm_text", shared.ALICCP_FIELDS, labels=("click", "conversion"), missing=-1
    )
    return shared.finish(parts, prep, opts, stats)
