"""``aliexpress``: the AliExpress multi-country data (one directory per country = one source).

``*train*.csv`` and ``*test*.csv`` per directory, 82 columns with a header: ``search_id``, 16
categorical integer ids, 63 numeric columns (already scaled by their publisher; used as given),
``click``, ``conversion``. Several directories separated by commas in ``config.data.path`` are
several sources (source = the directory's position). ``search_id`` is the group id of GAUC /
CLICK@N (the ``user`` column), not a model feature: the schema needs the user field to be a
categorical field, so ``search_id`` is one with vocabulary size 1 (always 0, a constant input).
Search ids are per country, so the groups are (search id, source): the raw table's derived
column ``search_group``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mtl_jax.data import preprocessing as pp
from mtl_jax.data.errors import BadLines
from mtl_jax.data.readers import shared

CATEGORICAL = tuple(f"categorical_{i}" for i in range(1, 17))
NUMERICAL = tuple(f"numerical_{i}" for i in range(1, 64))
COLUMNS = ("search_id", *CATEGORICAL, *NUMERICAL, "click", "conversion")
KINDS = {
    "search_id": "id",
    **{c: "id" for c in CATEGORICAL},
    **{c: "number" for c in NUMERICAL},
    "click": "binary",
    "conversion": "binary",
}


def read_file(path: str, bad: BadLines, stats: dict, *, source: int = 0, num_sources: int = 1):
    """One file as a raw table, with the derived ``source`` and ``search_group`` columns."""
    raw = shared.read_text(path, stats, header=True)
    shared.expect_header(raw, COLUMNS)
    raw = shared.check_columns(raw, KINDS, bad)
    n = raw.table.num_rows
    raw.set("source", pa.array(np.full(n, source, np.int64)))
    search = raw.table.column("search_id").to_numpy()
    raw.set("search_group", pa.array(search * num_sources + source))
    return raw


def preprocessing(num_sources: int) -> pp.Preprocessing:
    return pp.Preprocessing(
        kind="aliexpress",
        categorical=[
            pp.CategoricalColumn("search_id", "search_id", "int64", "context", group_only=True),
            *(pp.CategoricalColumn(c, c, "int64", "other") for c in CATEGORICAL),
        ],
        dense=[pp.DenseColumn(c, c, scaling="none") for c in NUMERICAL],
        tasks=["click", "order"],
        label_columns=["click", "conversion"],
        task_types=["binary", "binary"],
        user_field="search_id",
        user_column="search_group",
        source_column="source",
        num_sources=num_sources,
    )


def read(cfg) -> shared.SplitColumns:
    opts = shared.options(cfg)
    paths = shared.resolve_path(cfg, kind="aliexpress").split(",")
    bad, stats = BadLines(opts.skip_bad), {"sources": paths}
    by_split: dict[str, list[shared.Raw]] = {"train": [], "test": []}
    for source, path in enumerate(paths):
        for split in by_split:
            f = shared.one(path, f"*{split}*.csv", split)
            by_split[split].append(read_file(f, bad, stats, source=source, num_sources=len(paths)))
    parts = {s: shared.concat(p) for s, p in by_split.items()}
    parts["train"], parts["val"] = shared.train_val(
        parts["train"], opts, user_column="search_group", what="aliexpress"
    )
    stats["bad_lines"] = bad.to_dict()
    return shared.finish(parts, preprocessing(len(paths)), opts, stats)
