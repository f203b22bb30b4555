"""The preprocessing of a reader-based dataset: raw rows → batch columns, saved with the run.

A :class:`Preprocessing` holds everything a reader learnt from the training split: per
categorical field its vocabulary (raw value → id 1..K; 0 is missing, rare or unseen), per dense
column its scaling statistics, and the names of the label, user, source and oracle columns and
the tasks with their types. :meth:`Preprocessing.fit` learns it from the training rows,
:meth:`Preprocessing.apply` maps any raw table (the training splits, or new data at prediction
time) to the batch columns of ``schema.py``, and ``to_json`` / ``from_json`` store it: the
training loop writes ``<workdir>/preprocessing.json`` so that a later ``predict`` maps new rows
exactly as training did.

The *raw table* is the Arrow table a reader's ``read_file`` makes from one file: the file's
columns by name (text columns as strings, integer id columns as int64, numbers as float64), plus
the columns some formats derive (census's labels, AliExpress's ``source`` and
``search_group``). ``apply`` casts each column it needs to the stored type, so a table read
with ``pyarrow.csv.read_csv`` (typed columns) works too. Columns ``apply`` does not find are
left out of the result (new data has no labels).

Dense scaling (``config.data.dense_scaling``, fitted on the training split only):

* ``standard`` (the default, :data:`DEFAULT_DENSE_SCALING`): ``(x − mean) / std``; a constant
  column (std 0) becomes 0;
* ``minmax``: ``(x − min) / (max − min)``, clipped to [0, 1] on every split (a constant column:
  ``x − min``, clipped);
* ``none``: the values as they are.

Why ``standard`` is the default, measured (``python bench/dense_scaling.py``, 6 seeds, the same
data and seeds for both; README "Results"): MinMax puts every input in [0, 1] around its mean, so
a ReLU unit's pre-activation has nearly the same sign for every row, and many units are off for
every row from the start. On the MMoE paper's relatedness data read from CSV (100 dense columns),
3–5 of each task's 8 tower units were dead at initialisation with MinMax against 0–1 with
standardised inputs, and 1 of 6 MMoE runs ended with a dead task output (constant predictions,
AUC exactly 0.5); none of 12 runs did with ``standard``. On census-income, ``standard`` gave MMoE
+0.0039 income AUC (0.9474 vs 0.9436, paired p = 0.031) and +0.0002 never-married AUC. MinMax's
higher final AUC on the relatedness CSV (+0.014 to +0.019) is slower learning acting as
regularisation against that run's overfitting (validation AUC at step 250: 0.667 vs 0.710;
``standard`` peaks at step 2,500 and then falls), not a better representation of the inputs.

Everything is computed in float64 with explicit range checks, so finite input never becomes NaN
or inf: a column whose training range overflows float64 (``max − min`` is inf) and a value whose
result does not fit float32 are :class:`~mtl_jax.data.errors.DataError` naming the file, line and
column.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtl_jax.data.errors import DataError
from mtl_jax.data.schema import TASK_TYPES, CategoricalFeature, Schema

#: The default of ``config.data.dense_scaling`` (one place; see the module docstring).
DEFAULT_DENSE_SCALING = "standard"
DENSE_SCALINGS = ("minmax", "standard", "none")
FORMAT = "mtl_jax.preprocessing/1"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_DTYPES = {"string": pa.string(), "int64": pa.int64()}


@dataclasses.dataclass
class CategoricalColumn:
    """One categorical field.

    Attributes:
      name: the field's name in the schema.
      column: the raw column it is read from.
      dtype: ``string`` or ``int64``: how raw values are compared.
      group: feature group (``user``, ``item``, ...).
      missing: the raw value that means missing (id 0, counted as missing), or None.
      group_only: a user-group id for GAUC, not a feature: always 0 (vocabulary size 1).
      vocabulary: the raw values of ids 1..K, in id order (descending training count, ties by
        value).
    """

    name: str
    column: str
    dtype: str = "string"
    group: str = "other"
    missing: str | int | None = None
    group_only: bool = False
    vocabulary: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DenseColumn:
    """One dense column: ``scaling`` with training statistics ``center`` and ``scale``
    (minmax: min and max − min; standard: mean and std; none: 0 and 1)."""

    name: str
    column: str
    scaling: str = DEFAULT_DENSE_SCALING
    center: float = 0.0
    scale: float = 1.0


@dataclasses.dataclass
class Preprocessing:
    """Raw rows → batch columns (see the module docstring).

    Attributes:
      kind: the reader (``config.data.kind``) whose raw tables this maps.
      categorical: the categorical fields in schema order.
      dense: the dense columns in schema order.
      tasks: task names; ``label_columns`` the raw column of each; ``task_types`` binary or
        regression per task.
      user_field: the schema's user field (GAUC groups), or None; ``user_column`` the raw column
        whose values are the groups.
      source_column: raw column of the data source id (an integer in [0, num_sources)), or None
        (every row is source 0).
      oracle_columns: raw column of the true probability / expected value per task (the batch's
        ``p_true``), or empty.
      num_sources: number of sources.
    """

    kind: str
    categorical: list[CategoricalColumn]
    dense: list[DenseColumn]
    tasks: list[str]
    label_columns: list[str]
    task_types: list[str]
    user_field: str | None = None
    user_column: str | None = None
    source_column: str | None = None
    oracle_columns: list[str] = dataclasses.field(default_factory=list)
    num_sources: int = 1

    def __post_init__(self):
        self._value_sets: dict[str, pa.Array] = {}
        self._rare: dict[str, pa.Array] = {}  # training values below min_count (fit only)
        for t in self.task_types:
            if t not in TASK_TYPES:
                raise ValueError(f"task type {t!r}: expected one of {TASK_TYPES}")
        for d in self.dense:
            if d.scaling not in DENSE_SCALINGS:
                raise ValueError(f"dense scaling {d.scaling!r}: expected one of {DENSE_SCALINGS}")

    # ---- fitting ---------------------------------------------------------------------------------
    def fit(self, table: pa.Table, *, min_count: int = 1, where=None):
        """Learns the vocabularies and dense statistics from the training rows.

        ``where(i)`` gives the (file, line) of row ``i`` for error messages.
        """
        where = where or _row_number
        for c in self.categorical:
            if c.group_only:
                c.vocabulary = []
                continue
            values = _values(table.column(c.column), c.dtype)
            if c.missing is not None:
                values = values.filter(pc.not_equal(values, pa.scalar(c.missing, values.type)))
            vc = pc.value_counts(values)
            keys, counts = vc.field("values"), vc.field("counts").to_numpy()
            keep = counts >= min_count
            kept = keys.filter(pa.array(keep))
            order = np.lexsort((_rank(kept), -counts[keep]))
            c.vocabulary = kept.take(pa.array(order)).to_pylist()
            self._rare[c.name] = keys.filter(pa.array(~keep))
            self._value_sets.pop(c.name, None)
        for d in self.dense:
            x = _floats(table.column(d.column))
            if d.scaling == "none" or not len(x):
                d.center, d.scale = 0.0, 1.0
                continue
            if d.scaling == "minmax":
                lo, hi = float(x.min()), float(x.max())
                with np.errstate(over="ignore"):
                    span = hi - lo
                if not np.isfinite(span):
                    i = int(np.argmax(x))
                    raise DataError(
                        *where(i),
                        f"column {d.column!r}: the training range [{lo:g}, {hi:g}] overflows "
                        "float64 (max − min is inf); MinMax scaling cannot represent it — fix "
                        "the column or set config.data.dense_scaling='standard' or 'none'",
                    )
                d.center, d.scale = lo, span if span > 0 else 1.0
            else:  # standard, computed on x / max|x| so that no sum overflows
                s = float(np.abs(x).max())
                if s == 0.0:
                    d.center, d.scale = 0.0, 0.0
                    continue
                y = x / s
                d.center, d.scale = float(y.mean() * s), float(y.std() * s)
        return self

    def fit_stats(self) -> dict:
        """What fitting learnt, for a dataset's statistics."""
        return {
            "dense_scaling": {
                d.name: {"scaling": d.scaling, "center": d.center, "scale": d.scale}
                for d in self.dense
            },
            "vocabulary_sizes": {c.name: self.vocab_size(c) for c in self.categorical},
        }

    # ---- applying --------------------------------------------------------------------------------
    def vocab_size(self, c: CategoricalColumn) -> int:
        return 1 if c.group_only else len(c.vocabulary) + 1

    def _value_set(self, c: CategoricalColumn) -> pa.Array:
        vs = self._value_sets.get(c.name)
        if vs is None:
            vs = self._value_sets[c.name] = pa.array(c.vocabulary, _DTYPES[c.dtype])
        return vs

    def apply(self, table: pa.Table, *, users=None, where=None):
        """Maps a raw table to batch columns; returns ``(columns, id_counts)``.

        Args:
          table: raw rows (see the module docstring).
          users: the raw user values to number the ``user`` column by (id = position + 1); by
            default the table's own distinct values.
          where: ``where(i)`` is the (file, line) of row ``i`` for error messages (default
            ``("<table>", i + 1)``).

        ``id_counts[field]`` counts the ids mapped to 0: ``missing``, ``rare`` (seen in training
        fewer than ``min_count`` times; only right after ``fit``) and ``unseen``.
        """
        where = where or _row_number
        n = table.num_rows
        cols: dict[str, np.ndarray] = {}
        counts: dict[str, dict[str, int]] = {}
        cat = np.zeros((n, len(self.categorical)), np.int32)
        for f, c in enumerate(self.categorical):
            if c.group_only:
                continue
            values = _values(table.column(c.column), c.dtype)
            idx = pc.index_in(values, value_set=self._value_set(c))
            ids = idx.fill_null(-1).to_numpy(zero_copy_only=False) + 1
            cat[:, f] = ids
            zero = ids == 0
            miss = np.zeros(n, bool)
            if c.missing is not None:
                miss = pc.equal(values, pa.scalar(c.missing, values.type)).to_numpy(
                    zero_copy_only=False
                )
            rare = np.zeros(n, bool)
            if c.name in self._rare and len(self._rare[c.name]):
                rare = pc.is_in(values, value_set=self._rare[c.name]).to_numpy(zero_copy_only=False)
            counts[c.name] = {
                "missing": int((zero & miss).sum()),
                "rare": int((zero & rare & ~miss).sum()),
                "unseen": int((zero & ~rare & ~miss).sum()),
            }
        cols["cat"] = cat
        dense = np.zeros((n, len(self.dense)), np.float32)
        for j, d in enumerate(self.dense):
            dense[:, j] = self._scale(d, _floats(table.column(d.column)), where)
        cols["dense"] = dense
        if all(c in table.column_names for c in self.label_columns):
            cols["labels"] = np.stack(
                [_floats(table.column(c)) for c in self.label_columns], axis=1
            ).astype(np.float32).reshape(n, len(self.tasks))  # fmt: skip
        if self.source_column is not None and self.source_column in table.column_names:
            src = _floats(table.column(self.source_column))
            bad = np.flatnonzero((src < 0) | (src >= self.num_sources) | (src != np.floor(src)))
            if len(bad):
                i = int(bad[0])
                raise DataError(
                    *where(i),
                    f"column {self.source_column!r}: source {src[i]:g} is not an integer in "
                    f"[0, {self.num_sources})",
                )
            cols["source"] = src.astype(np.int32)
        else:
            cols["source"] = np.zeros(n, np.int32)
        if self.user_column is not None and self.user_column in table.column_names:
            u = user_values(table, self.user_column)
            if users is None:
                users = u.unique()
            cols["user"] = pc.index_in(u, value_set=users).to_numpy(zero_copy_only=False) + 1
            cols["user"] = cols["user"].astype(np.int32)
        if self.oracle_columns and all(c in table.column_names for c in self.oracle_columns):
            cols["p_true"] = np.stack(
                [_floats(table.column(c)) for c in self.oracle_columns], axis=1
            ).astype(np.float32)
        return cols, counts

    def _scale(self, d: DenseColumn, x: np.ndarray, where) -> np.ndarray:
        """One dense column through its scaling, in float64 (halved operands: no overflow)."""
        if d.scaling == "minmax":
            y = np.clip((0.5 * x - 0.5 * d.center) / (0.5 * d.scale), 0.0, 1.0)
        elif d.scaling == "standard":
            if d.scale == 0.0:
                return np.zeros(len(x))
            y = (0.5 * x - 0.5 * d.center) / (0.5 * d.scale)
        else:
            y = x
        big = np.flatnonzero(~(np.abs(y) <= _FLOAT32_MAX))
        if len(big):
            i = int(big[0])
            raise DataError(
                *where(i),
                f"column {d.column!r}: {x[i]:g} becomes {y[i]:g} after {d.scaling} scaling, "
                "beyond float32; fix the column or choose another config.data.dense_scaling",
            )
        return y

    # ---- schema and serialisation ----------------------------------------------------------------
    def schema(self) -> Schema:
        return Schema(
            categorical=tuple(
                CategoricalFeature(c.name, self.vocab_size(c), group=c.group)
                for c in self.categorical
            ),
            dense=tuple(d.name for d in self.dense),
            tasks=tuple(self.tasks),
            user_field=self.user_field,
            num_sources=self.num_sources,
            has_p_true=bool(self.oracle_columns),
            task_types=tuple(self.task_types),
        )

    def to_dict(self) -> dict:
        d = {"format": FORMAT}
        d.update(dataclasses.asdict(self))
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=_json_default)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        d = dict(d)
        fmt = d.pop("format", None)
        if fmt != FORMAT:
            raise ValueError(f"preprocessing format {fmt!r}, expected {FORMAT!r}")
        d["categorical"] = [CategoricalColumn(**c) for c in d["categorical"]]
        d["dense"] = [DenseColumn(**c) for c in d["dense"]]
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        return cls.from_dict(json.loads(text))


# ---- helpers -------------------------------------------------------------------------------------


def _json_default(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _row_number(i: int) -> tuple[str, int]:
    return "<table>", i + 1


def _combined(col) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _values(col, dtype: str) -> pa.Array:
    """A raw categorical column as the vocabulary's type (text stripped; null → missing)."""
    col = _combined(col)
    if dtype == "string":
        if not pa.types.is_string(col.type):
            col = pc.cast(col, pa.string())
        return pc.utf8_trim_whitespace(col.fill_null(""))
    if pa.types.is_string(col.type):
        col = pc.utf8_trim_whitespace(col)
    return pc.cast(col, pa.int64())


def _floats(col) -> np.ndarray:
    """A raw numeric column as float64 (text is parsed; a value that is not a number raises)."""
    col = _combined(col)
    if pa.types.is_string(col.type):
        col = pc.utf8_trim_whitespace(col)
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)


def _rank(values: pa.Array) -> np.ndarray:
    """The rank of each value in ascending order (for ties of the vocabulary)."""
    order = pc.sort_indices(values).to_numpy()
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank


def user_values(table: pa.Table, column: str) -> pa.Array:
    """The user-group column of a raw table, as strings or integers."""
    col = _combined(table.column(column))
    if pa.types.is_string(col.type):
        return pc.utf8_trim_whitespace(col.fill_null(""))
    return col
