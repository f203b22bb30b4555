"""``csv``: any CSV or Parquet file with named columns; CSV and Parquet go the same way.

``config.data.path`` is a ``.csv`` (``.csv.gz``) or ``.parquet`` file (a seeded 80/10/10 split)
or a directory with ``*train*`` and ``*test*`` (and optionally ``*val*``) files. Columns by name:

* ``label_columns``: one per task, in task order; ``task_types`` (default all ``binary``) says
  per label whether it is ``binary`` (0/1) or ``regression`` (any finite real number).
* ``categorical_columns`` (may be empty: dense-only data): text values, stripped; an empty value
  is missing. ``dense_columns``: finite numbers, scaled per ``dense_scaling``.
* ``user_column`` (optional): the GAUC / CLICK@N groups; unless it is also a categorical column it
  is a group-only field (vocabulary size 1, always 0). ``source_column`` (optional): a
  non-negative integer source id per row (``num_sources`` = the largest + 1).
* ``oracle_columns`` (optional, one per task, in task order): the truth per row where the data
  knows it — the true probability of a binary task (in [0, 1]), the noise-free expected value of
  a regression task — which fills the batch's ``p_true`` and turns on the oracle metrics, as the
  synthetic data does.

A Parquet file's columns are read as text and checked like a CSV file's; its "line" in messages
is the 1-based row.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtl_jax.data import preprocessing as pp
from mtl_jax.data.errors import BadLines, DataError
from mtl_jax.data.readers import shared
from mtl_jax.data.schema import TASK_TYPES


class Columns:
    """The column names and task types a ``csv`` config asks for, checked."""

    def __init__(self, cfg):
        g = shared.get
        self.labels = shared.names(cfg, "label_columns")
        self.categorical = shared.names(cfg, "categorical_columns")
        self.dense = shared.names(cfg, "dense_columns")
        self.user = g(cfg, "user_column", None) or None
        self.source = g(cfg, "source_column", None) or None
        self.oracle = shared.names(cfg, "oracle_columns")
        self.task_types = shared.names(cfg, "task_types") or ("binary",) * len(self.labels)
        if not self.labels:
            raise ValueError("config.data.label_columns must name at least one label column")
        if not self.categorical and not self.dense:
            raise ValueError(
                "config.data.categorical_columns and config.data.dense_columns are both empty: "
                "the model would have no input"
            )
        if len(self.task_types) != len(self.labels):
            raise ValueError(
                f"config.data.task_types has {len(self.task_types)} types "
                f"{list(self.task_types)} for {len(self.labels)} label columns "
                f"{list(self.labels)}; give one per label column"
            )
        for t in self.task_types:
            if t not in TASK_TYPES:
                raise ValueError(f"config.data.task_types: {t!r} is not one of {TASK_TYPES}")
        if self.oracle and len(self.oracle) != len(self.labels):
            raise ValueError(
                f"config.data.oracle_columns has {len(self.oracle)} columns for "
                f"{len(self.labels)} label columns; give one per task, in task order"
            )
        self.fields = (*self.categorical, *((self.user,) if self.user else ()))
        self.fields = tuple(dict.fromkeys(self.fields))

    @property
    def needed(self) -> list[str]:
        extra = (c for c in (self.user, self.source) if c)
        return list(
            dict.fromkeys([*self.labels, *self.categorical, *self.dense, *extra, *self.oracle])
        )

    def kinds(self, order: list[str]) -> dict[str, str]:
        """Numeric columns → kind of check, in the file's column order."""
        k = {}
        for c, t in zip(self.labels, self.task_types):
            k[c] = "binary" if t == "binary" else "real_label"
        for c in self.dense:
            k.setdefault(c, "number")
        if self.source:
            k.setdefault(self.source, "id")
        for c, t in zip(self.oracle, self.task_types):
            k.setdefault(c, "probability" if t == "binary" else "number")
        return {c: k[c] for c in sorted(k, key=order.index)}


def read_file(path: str, cols: Columns, bad: BadLines, stats: dict) -> shared.Raw:
    """One CSV or Parquet file as a raw table of the needed columns, checked."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(path, 1, f"cannot read the Parquet file: {e}") from None
        missing = [c for c in cols.needed if c not in schema.names]
        if missing:
            raise DataError(path, 1, f"columns {missing} not in the file ({schema.names})")
        table = pq.read_table(path, columns=cols.needed)
        text = {c: pc.cast(table.column(c), pa.string()).fill_null("") for c in cols.needed}
        raw = shared.Raw(pa.table(text), np.arange(1, table.num_rows + 1), [path])
    else:
        raw = shared.read_text(path, stats, header=True)
        shared.require_columns(raw, cols.needed)
        raw.table = raw.table.select(cols.needed)
    return shared.check_columns(raw, cols.kinds(cols.needed), bad)


def preprocessing(cols: Columns, dense_scaling: str, num_sources: int) -> pp.Preprocessing:
    group_only = cols.user is not None and cols.user not in cols.categorical
    return pp.Preprocessing(
        kind="csv",
        categorical=[
            pp.CategoricalColumn(
                c,
                c,
                "string",
                "user" if c == cols.user else "other",
                missing="",
                group_only=group_only and c == cols.user,
            )
            for c in cols.fields
        ],  # fmt: skip
        dense=[pp.DenseColumn(c, c, scaling=dense_scaling) for c in cols.dense],
        tasks=list(cols.labels),
        label_columns=list(cols.labels),
        task_types=list(cols.task_types),
        user_field=cols.user,
        user_column=cols.user,
        source_column=cols.source,
        oracle_columns=list(cols.oracle),
        num_sources=num_sources,
    )


def read(cfg) -> shared.SplitColumns:
    opts, path = shared.options(cfg), shared.resolve_path(cfg, kind="csv")
    cols = Columns(cfg)
    bad, stats = BadLines(opts.skip_bad), {}
    if os.path.isdir(path):
        files = {s: shared.one(path, f"*{s}*", s) for s in ("train", "test")}
        parts = {s: read_file(f, cols, bad, stats) for s, f in files.items()}
        val_files = shared.files(path, "*val*", "val", required=False)
        if val_files:
            parts["val"] = read_file(val_files[0], cols, bad, stats)
        else:
            parts["train"], parts["val"] = shared.train_val(
                parts["train"], opts, user_column=cols.user, what="the csv data"
            )
    else:
        whole = read_file(path, cols, bad, stats)
        if opts.val_split == "user" and cols.user is None:
            raise ValueError("config.data.val_split='user' needs config.data.user_column")
        parts = shared.three_way(whole, opts, user_column=cols.user, what="the csv data")
    num_sources = 1
    if cols.source:
        top = [p.table.column(cols.source).to_numpy() for p in parts.values()]
        num_sources = int(max((t.max() for t in top if len(t)), default=0)) + 1
    stats["bad_lines"] = bad.to_dict()
    return shared.finish(parts, preprocessing(cols, opts.dense_scaling, num_sources), opts, stats)
