"""Feature schema: one description of the columns drives the readers, the pipeline and the model.

A batch is a dict of numpy (host) or jax (device) arrays with these keys:

  cat     int32   [B, F]  one id per categorical field, field-local, 0 = missing / out of vocabulary
  dense   float32 [B, N]  dense features (N may be 0)
  labels  float32 [B, T]  task labels in ``schema.tasks`` order (click, order): 0/1 for a
                          ``binary`` task, a real value for a ``regression`` task
  user    int32   [B]     user id (GAUC, CLICK@N); present when ``schema.user_field`` is set
  source  int32   [B]     data source id in [0, num_sources)
  seq_item int32  [B, L]  behaviour sequence item ids (0 = padding); when ``schema.sequence`` is set
  seq_days float32[B, L]  days since each behaviour
  seq_loc  int32  [B, L]  location id of each behaviour (0 = unknown)
  p_true  float32 [B, T]  the truth where the data knows it (synthetic data, or a CSV's
                          ``oracle_columns``): per binary task the true probability (for
                          Ali-CCP p_click and p_order = P(click and order)), per regression task
                          the noise-free expected value; the oracle metrics use it
  valid   float32 [B]     1 for real rows, 0 for padding rows of a final partial eval batch

Fields that name the same ``table`` share one embedding table (e.g. the behaviour sequence items
share the item-id table of field 205).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

#: ``binary``: 0/1 labels, BCE loss, AUC / log-loss metrics; ``regression``: real labels, MSE loss,
#: MSE / RMSE / R² metrics.
TASK_TYPES = ("binary", "regression")


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
    """A single-valued categorical field.

    Attributes:
      name: column name, e.g. ``"205"`` for Ali-CCP's item id.
      vocab_size: number of ids including the reserved id 0 (missing / rare / unseen).
      table: embedding table name; fields with the same table share it. Defaults to ``name``.
      group: ``user``, ``item``, ``combination``, ``context`` or ``other`` (documentation and
        feature-group models).
      embed_dim: embedding width of the field's table; None takes the model's ``embed_dim``.
    """

    name: str
    vocab_size: int
    table: str | None = None
    group: str = "other"
    embed_dim: int | None = None

    @property
    def table_name(self) -> str:
        return self.table or self.name


@dataclasses.dataclass(frozen=True)
class SequenceFeature:
    """A user behaviour sequence (DIN input): item ids with days-ago and a location id each.

    Attributes:
      name: prefix of the batch keys (the batch keys themselves are ``seq_item``/``seq_days``/
        ``seq_loc``).
      table: embedding table of the items; normally the target item field's table.
      target: name of the categorical field the sequence is attended against (the target item).
      max_len: padded length L.
      num_locations: vocabulary size of the location ids (including 0 = unknown).
    """

    name: str
    table: str
    target: str
    max_len: int
    num_locations: int


@dataclasses.dataclass(frozen=True)
class Schema:
    """All features of a dataset and its tasks.

    ``categorical`` may be empty (dense-only data). ``task_types`` gives each task's type
    (``TASK_TYPES``); left empty, every task is ``binary``.
    """

    categorical: tuple[CategoricalFeature, ...]
    dense: tuple[str, ...] = ()
    sequence: SequenceFeature | None = None
    tasks: tuple[str, ...] = ("click", "order")
    user_field: str | None = None
    num_sources: int = 1
    has_p_true: bool = False
    task_types: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.task_types:
            object.__setattr__(self, "task_types", ("binary",) * len(self.tasks))
        object.__setattr__(self, "task_types", tuple(self.task_types))
        if len(self.task_types) != len(self.tasks):
            raise ValueError(
                f"schema: {len(self.task_types)} task types {list(self.task_types)} for "
                f"{len(self.tasks)} tasks {list(self.tasks)}"
            )
        for name, kind in zip(self.tasks, self.task_types):
            if kind not in TASK_TYPES:
                raise ValueError(
                    f"schema: task {name!r} has type {kind!r}; expected one of {TASK_TYPES}"
                )
        names = [f.name for f in self.categorical]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"schema: duplicate categorical field names {dup}")
        for f in self.categorical:
            if f.vocab_size < 1:
                raise ValueError(
                    f"schema: field {f.name!r} has vocab_size {f.vocab_size}; need >= 1"
                )
        sizes: dict[str, int] = {}
        for f in self.categorical:
            t = f.table_name
            if t in sizes and sizes[t] != f.vocab_size:
                raise ValueError(
                    f"schema: fields sharing table {t!r} disagree on vocab_size "
                    f"({sizes[t]} vs {f.vocab_size} for field {f.name!r})"
                )
            sizes[t] = f.vocab_size
        dims: dict[str, int | None] = {}
        for f in self.categorical:
            t = f.table_name
            if t in dims and dims[t] != f.embed_dim:
                raise ValueError(
                    f"schema: fields sharing table {t!r} disagree on embed_dim "
                    f"({dims[t]} vs {f.embed_dim} for field {f.name!r})"
                )
            dims[t] = f.embed_dim
        if self.sequence is not None:
            if self.sequence.table not in sizes:
                raise ValueError(
                    f"schema: sequence table {self.sequence.table!r} is not the table of any "
                    f"categorical field; known tables {sorted(sizes)}"
                )
            if self.sequence.target not in names:
                raise ValueError(
                    f"schema: sequence target {self.sequence.target!r} is not a categorical field"
                )
        if self.user_field is not None and self.user_field not in names:
            raise ValueError(f"schema: user_field {self.user_field!r} is not a categorical field")
        if not self.tasks:
            raise ValueError("schema: at least one task is needed")

    # ---- derived views -------------------------------------------------------------------------
    @property
    def num_fields(self) -> int:
        return len(self.categorical)

    @property
    def num_dense(self) -> int:
        return len(self.dense)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def field_index(self, name: str) -> int:
        for i, f in enumerate(self.categorical):
            if f.name == name:
                return i
        raise KeyError(
            f"schema: no categorical field {name!r}; "
            f"fields are {[f.name for f in self.categorical]}"
        )

    def tables(self) -> dict[str, int]:
        """Table name → vocabulary size, in first-use order."""
        out: dict[str, int] = {}
        for f in self.categorical:
            out.setdefault(f.table_name, f.vocab_size)
        return out

    def table_dims(self, default_dim: int) -> dict[str, int]:
        """Table name → embedding width (``default_dim`` where the schema leaves it open)."""
        out: dict[str, int] = {}
        for f in self.categorical:
            out.setdefault(f.table_name, f.embed_dim or default_dim)
        return out

    def is_regression(self, k: int) -> bool:
        """Whether task ``k`` is a regression task."""
        return self.task_types[k] == "regression"

    @property
    def all_binary(self) -> bool:
        return all(t == "binary" for t in self.task_types)

    def task_index(self, name: str) -> int:
        if name not in self.tasks:
            raise KeyError(f"schema: no task {name!r}; tasks are {list(self.tasks)}")
        return self.tasks.index(name)

    # ---- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        d = dict(d)
        d["categorical"] = tuple(CategoricalFeature(**f) for f in d["categorical"])
        d["dense"] = tuple(d.get("dense", ()))
        d["tasks"] = tuple(d.get("tasks", ("click", "order")))
        d["task_types"] = tuple(d.get("task_types", ()))  # absent in runs written before types
        if d.get("sequence") is not None:
            d["sequence"] = SequenceFeature(**d["sequence"])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> Schema:
        return cls.from_dict(json.loads(text))


def batch_keys(schema: Schema) -> Sequence[str]:
    """The keys a batch of this schema carries (besides ``valid``)."""
    keys = ["cat", "dense", "labels", "source"]
    if schema.user_field is not None:
        keys.append("user")
    if schema.sequence is not None:
        keys += ["seq_item", "seq_days", "seq_loc"]
    if schema.has_p_true:
        keys.append("p_true")
    return keys
