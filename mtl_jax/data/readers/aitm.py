"""``aitm_csv``: AITM's processed Ali-CCP (``ctr_cvr.{train,dev,test}``, PaddleRec's copies).

20 columns ``click,purchase`` and 18 fields as re-mapped integer ids (0 = missing or rare); the
header line is optional and detected per file (PaddleRec's ``test.csv`` has none). Layouts:
``ctr_cvr.train`` / ``ctr_cvr.dev`` (optional) / ``ctr_cvr.test``, or ``train/`` and ``test/``
sub-directories of files, or ``*train*`` and ``*test*`` files.
"""

from __future__ import annotations

import os

import numpy as np

from mtl_jax.data.errors import BadLines, DataError
from mtl_jax.data.readers import shared

FIELDS = (
    "101", "121", "122", "124", "125", "126", "127", "128", "129",
    "205", "206", "207", "216", "508", "509", "702", "853", "301",
)  # fmt: skip
COLUMNS = ("click", "purchase", *FIELDS)
KINDS = {"click": "binary", "purchase": "binary", **{f: "id" for f in FIELDS}}


def read_file(path: str, bad: BadLines, stats: dict) -> shared.Raw:
    """One file as a raw table; a first line that is not all numbers must be the header."""
    raw = shared.read_text(path, stats, header=False, column_names=list(COLUMNS))
    first_is_row0 = raw.table.num_rows and all(raw.lines[0] < p[1] for p in raw.pending)
    if first_is_row0:
        head = raw.table.slice(0, 1)
        if not all(shared.parse_numbers(head.column(c))[1][0] for c in COLUMNS):
            names = [head.column(c)[0].as_py().strip() for c in COLUMNS]
            if tuple(names) != COLUMNS:
                raise DataError(
                    path,
                    int(raw.lines[0]),
                    f"header {names[:6]}... does not match the expected {len(COLUMNS)} columns "
                    f"{list(COLUMNS[:6])}...",
                )
            raw = raw.take(np.arange(1, raw.table.num_rows))
    return shared.check_columns(raw, KINDS, bad)


def _files(path: str) -> dict[str, list[str]]:
    if os.path.isfile(os.path.join(path, "ctr_cvr.train")):
        out = {"train": [os.path.join(path, "ctr_cvr.train")]}
        if os.path.isfile(os.path.join(path, "ctr_cvr.dev")):
            out["val"] = [os.path.join(path, "ctr_cvr.dev")]
        out["test"] = shared.files(path, "ctr_cvr.test", "test")
        return out
    if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test")):
        return {s: shared.files(os.path.join(path, s), "*", s) for s in ("train", "test")}
    return {s: [shared.one(path, f"*{s}*", s)] for s in ("train", "test")}


def read(cfg) -> shared.SplitColumns:
    opts, path = shared.options(cfg), shared.resolve_path(cfg, kind="aitm_csv")
    bad, stats = BadLines(opts.skip_bad), {}
    parts = {
        s: shared.concat([read_file(f, bad, stats) for f in fs]) for s, fs in _files(path).items()
    }
    if "val" not in parts:
        parts["train"], parts["val"] = shared.train_val(
            parts["train"], opts, user_column="101", what="aitm_csv"
        )
    stats["bad_lines"] = bad.to_dict()
    return shared.finish(parts, shared.aliccp_preprocessing("aitm_csv", FIELDS), opts, stats)
