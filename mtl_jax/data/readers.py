"""Readers of real multi-task datasets in preprocessed layouts; each is a ``config.data.kind``.

Every reader returns a :class:`Dataset`: the schema and ``{"train", "val", "test"}`` columns in the
batch layout of ``schema.py`` (``cat`` int32 [N, F] with 0 = missing / rare / unseen, ``dense``
float32 [N, N_d], ``labels`` float32 [N, T] in {0, 1}, ``source`` int32 [N], ``user`` int32 [N]
when the schema has a user field), plus statistics.

=============  =====================================================================================
kind           ``config.data.path``
=============  =====================================================================================
rechub_csv     directory with torch-rechub's Ali-CCP files ``*train*.csv``, ``*val*.csv``,
               ``*test*.csv`` (33 columns with header); the three files are the three splits
aitm_csv       directory with AITM's ``ctr_cvr.train`` / ``ctr_cvr.dev`` (optional) /
               ``ctr_cvr.test``, or ``train/`` and ``test/`` sub-directories of ``.csv`` files
               (PaddleRec's layout), or ``*train*`` and ``*test*`` files; 20 columns, header
               optional (detected per file)
esmm_text      directory with ``train/`` and ``test/`` sub-directories (PaddleRec's ESMM layout) or
               ``*train*`` / ``*test*`` files; lines ``sample_id,click,conversion,field:id,...``
aliexpress     directory with ``*train*.csv`` and ``*test*.csv`` (82 columns with header); several
               directories separated by commas are several sources (e.g. countries)
census         the UCI census-income file (``.gz`` or plain; 42 columns, or 43 with DeepCTR's
               leading index column): a seeded 80/10/10 split; or a directory with
               ``census-income.data[.gz]`` and ``census-income.test[.gz]`` (train / test)
csv            a ``.csv`` or ``.parquet`` file (seeded 80/10/10 split) or a directory with
               ``*train*`` and ``*test*`` (and optionally ``*val*``) files; columns named by
               ``config.data.label_columns`` / ``categorical_columns`` / ``dense_columns`` /
               ``user_column`` / ``source_column``
prepared       a directory written by ``python -m mtl_jax.data.prepare``
=============  =====================================================================================

Relative paths are resolved against the current working directory.

Common ``config.data`` keys (defaults in brackets): ``min_count`` [1] — ids with fewer training
occurrences become 0 (vocabularies are built from the training split only; ids unseen in training
are 0 too; both are counted per split and field); ``val_split`` ["random"] or "user" — the
validation split taken from the training file keeps each user's rows together; ``val_fraction``
[0.1]; ``seed`` [0] — seeds every split; ``skip_bad`` [False] — skip and count bad lines instead of
raising :class:`DataError`; ``extra_columns`` [()] — ``prepared`` only: stored columns beyond the
batch keys to load (e.g. ``("sample_id", "bag_210_ids")``).

Choices per format:

* The single id of each field is what the file holds (torch-rechub and AITM already reduced
  multi-valued fields to their last id); ``esmm_text`` keeps the first id of each field, as
  PaddleRec's reader does, but reads every feature token (PaddleRec's reader skips the first).
* Id 0 of rechub / AITM files and an absent field in ``esmm_text`` mean missing and stay 0.
* Dense columns of rechub and AliExpress are used as given (their publishers scaled them to
  [0, 1]); census and generic CSV numeric columns are MinMax-scaled with training statistics
  (validation / test values clipped to [0, 1]).
* Rows with order = 1 and click = 0 (present in the PaddleRec AITM excerpt) are kept and counted.
* AliExpress's ``search_id`` is the group id of GAUC / CLICK@N (the ``user`` column), not a model
  feature: the schema needs the user field to be a categorical field, so ``search_id`` is one
  with vocabulary size 1 (always 0, a constant input). A generic CSV's ``user_column`` that is
  not also in ``categorical_columns`` is handled the same way.
* Census: the MMoE paper's tasks ``income`` (> 50K) and ``never_married``; categorical columns as
  in keras-mmoe (29), the numeric ones MinMax-scaled, ``instance_weight`` dropped (a sampling
  weight, not a feature — the UCI documentation says so), labels removed from the features.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import itertools
import math
import os

import numpy as np

from mtl_jax.data import shards
from mtl_jax.data.errors import BadLines, DataError
from mtl_jax.data.schema import CategoricalFeature, Schema, batch_keys
from mtl_jax.data.synthetic import DENSE, FIELDS

KINDS = ("rechub_csv", "aitm_csv", "esmm_text", "aliexpress", "census", "csv", "prepared")
SPLITS = ("train", "val", "test")
VAL_SPLITS = ("random", "user")
_CHUNK_LINES = 1 << 16

# ---- formats ------------------------------------------------------------------------------------

ALICCP_FIELDS = tuple(FIELDS)
RECHUB_COLUMNS = ("click", "purchase", *ALICCP_FIELDS, *DENSE)
AITM_FIELDS = (
    "101", "121", "122", "124", "125", "126", "127", "128", "129",
    "205", "206", "207", "216", "508", "509", "702", "853", "301",
)  # fmt: skip
AITM_COLUMNS = ("click", "purchase", *AITM_FIELDS)
ALIEXPRESS_CATEGORICAL = tuple(f"categorical_{i}" for i in range(1, 17))
ALIEXPRESS_NUMERICAL = tuple(f"numerical_{i}" for i in range(1, 64))
ALIEXPRESS_COLUMNS = (
    "search_id",
    *ALIEXPRESS_CATEGORICAL,
    *ALIEXPRESS_NUMERICAL,
    "click",
    "conversion",
)
CENSUS_COLUMNS = (
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour",
    "hs_college", "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex",
    "union_member", "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses",
    "stock_dividends", "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat",
    "det_hh_summ", "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same",
    "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father", "country_mother",
    "country_self", "citizenship", "own_or_self", "vet_question", "vet_benefits", "weeks_worked",
    "year", "income_50k",
)  # fmt: skip
#: keras-mmoe's categorical columns (drawbridge/keras-mmoe census_income_demo.py).
CENSUS_CATEGORICAL = (
    "class_worker", "det_ind_code", "det_occ_code", "education", "hs_college", "major_ind_code",
    "major_occ_code", "race", "hisp_origin", "sex", "union_member", "unemp_reason",
    "full_or_part_emp", "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat",
    "det_hh_summ", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt",
    "fam_under_18", "country_father", "country_mother", "country_self", "citizenship",
    "vet_question",
)  # fmt: skip
CENSUS_NUMERIC = tuple(
    c
    for c in CENSUS_COLUMNS
    if c not in CENSUS_CATEGORICAL and c not in ("marital_stat", "income_50k", "instance_weight")
)
CENSUS_TASKS = ("income", "never_married")
_CENSUS_INCOME = {"- 50000.": 0.0, "50000+.": 1.0}


@dataclasses.dataclass
class Dataset:
    """A loaded dataset: schema, split columns and statistics (rows, label rates, rare/unseen
    ids per split and field, skipped lines)."""

    schema: Schema
    splits: dict[str, dict[str, np.ndarray]]
    stats: dict


@dataclasses.dataclass
class _Part:
    """Raw columns of one split before vocabularies: categorical values per field (any dtype),
    dense [n, N] float, labels [n, T], user values, source ids."""

    cat: list[np.ndarray]
    dense: np.ndarray
    labels: np.ndarray
    user: np.ndarray | None = None
    source: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> _Part:
        return _Part(
            cat=[c[idx] for c in self.cat],
            dense=self.dense[idx],
            labels=self.labels[idx],
            user=None if self.user is None else self.user[idx],
            source=None if self.source is None else self.source[idx],
        )

    @staticmethod
    def concat(parts: list[_Part]) -> _Part:
        return _Part(
            cat=[np.concatenate(cs) for cs in zip(*(p.cat for p in parts))],
            dense=np.concatenate([p.dense for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            user=None if parts[0].user is None else np.concatenate([p.user for p in parts]),
            source=None if parts[0].source is None else np.concatenate([p.source for p in parts]),
        )


# ---- config -------------------------------------------------------------------------------------


def _get(cfg, key: str, default):
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def resolve_path(cfg, *, kind: str) -> str:
    """``config.data.path`` resolved against the working directory; it must exist."""
    path = _get(cfg, "path", None)
    if not path:
        raise ValueError(f"config.data.path is required for config.data.kind={kind!r}")
    parts = [p.strip() for p in str(path).split(",")] if kind == "aliexpress" else [str(path)]
    resolved = [os.path.abspath(os.path.expanduser(p)) for p in parts]
    for r in resolved:
        if not os.path.exists(r):
            raise FileNotFoundError(
                f"config.data.path={path!r}: {r} does not exist (relative paths are resolved "
                f"against the working directory {os.getcwd()})"
            )
    return ",".join(resolved)


def _options(cfg) -> dict:
    o = {
        "min_count": int(_get(cfg, "min_count", 1)),
        "val_split": str(_get(cfg, "val_split", "random")),
        "val_fraction": float(_get(cfg, "val_fraction", 0.1)),
        "seed": int(_get(cfg, "seed", 0)),
        "skip_bad": bool(_get(cfg, "skip_bad", False)),
    }
    if o["min_count"] < 1:
        raise ValueError(f"config.data.min_count must be >= 1, got {o['min_count']}")
    if o["val_split"] not in VAL_SPLITS:
        raise ValueError(
            f"config.data.val_split must be one of {VAL_SPLITS}, got {o['val_split']!r}"
        )
    if not 0.0 < o["val_fraction"] < 0.5:
        raise ValueError(f"config.data.val_fraction must be in (0, 0.5), got {o['val_fraction']}")
    return o


# ---- text files -------------------------------------------------------------------------------


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _text_lines(path: str):
    """Yields ``(line_number, text)`` of a text file (gzip allowed), newline stripped.

    Raises :class:`DataError` for an empty file or one with NUL bytes (binary). Bytes are decoded
    as latin-1, so any non-ASCII garbage reaches the field checks, which name the line.
    """
    with _open_binary(path) as f:
        try:
            head = f.read(1 << 16)
        except (OSError, EOFError) as e:  # e.g. a truncated or corrupt gzip stream
            raise DataError(path, 1, f"cannot read the file: {e}") from None
        if not head:
            raise DataError(path, 1, "empty file (no lines)")
        z = head.find(b"\0")
        if z >= 0:
            raise DataError(
                path, head.count(b"\n", 0, z) + 1, f"not a text file: NUL byte at offset {z}"
            )
        stream = itertools.chain([head], iter(lambda: f.read(1 << 20), b""))
        carry = b""
        line_no = 0
        try:
            for block in stream:
                if b"\0" in block:
                    z = block.find(b"\0")
                    raise DataError(path, line_no + block.count(b"\n", 0, z) + 1, "NUL byte")
                lines = (carry + block).split(b"\n")
                carry = lines.pop()
                for raw in lines:
                    line_no += 1
                    yield line_no, raw.decode("latin-1").rstrip("\r")
        except (OSError, EOFError) as e:
            raise DataError(path, line_no + 1, f"cannot read the file: {e}") from None
        if carry:
            yield line_no + 1, carry.decode("latin-1").rstrip("\r")


def _is_number(tok: str) -> bool:
    try:
        return math.isfinite(float(tok))
    except ValueError:
        return False


def _read_numeric_csv(
    path: str,
    columns: tuple[str, ...],
    bad: BadLines,
    *,
    integer: tuple[str, ...] = (),
    labels: tuple[str, ...] = (),
    header: bool | None,
    stats: dict,
) -> tuple[np.ndarray, np.ndarray]:
    """A numeric comma-separated file → (float64 [n, C] values, [n] line numbers).

    ``header`` True / False / None (detect: a first line that is not all numbers). Lines are
    parsed a chunk at a time with numpy's C parser; a chunk it rejects is checked line by line
    to name the first bad line (or, when skipping, to drop and count the bad ones). Integer
    columns must hold non-negative integers, label columns 0 or 1, every value a finite number.
    """
    ncols = len(columns)
    lines = _text_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError(path, 1, "empty file (no lines)")
    toks = [t.strip() for t in first[1].split(",")]
    has_header = header if header is not None else not all(_is_number(t) for t in toks)
    if has_header:
        if tuple(toks) != columns:
            raise DataError(
                path,
                1,
                f"header {toks[:6]}... does not match the expected {ncols} columns "
                f"{list(columns[:6])}...",
            )
        body = lines
    else:
        body = itertools.chain([first], lines)
    int_idx = [columns.index(c) for c in integer]
    lab_idx = [columns.index(c) for c in labels]
    values, numbers = [], []
    while True:
        chunk = list(itertools.islice(body, _CHUNK_LINES))
        if not chunk:
            break
        blank = [ln for ln, t in chunk if not t.strip()]
        if blank:
            stats["blank_lines"] = stats.get("blank_lines", 0) + len(blank)
            chunk = [(ln, t) for ln, t in chunk if t.strip()]
        arr = None
        try:
            arr = np.loadtxt(
                [t for _, t in chunk], delimiter=",", dtype=np.float64, comments=None, ndmin=2
            )
            if arr.shape[1] != ncols:
                arr = None
        except ValueError:
            arr = None
        if arr is not None:
            row_bad = ~np.isfinite(arr).all(axis=1)
            if int_idx:
                iv = arr[:, int_idx]
                row_bad |= ((iv < 0) | (iv != np.floor(iv))).any(axis=1)
            if lab_idx:
                lv = arr[:, lab_idx]
                row_bad |= ((lv != 0) & (lv != 1)).any(axis=1)
            if row_bad.any():
                arr = None
        if arr is None:  # find (or skip) the bad lines
            good, rows = [], []
            for ln, t in chunk:
                problem, row = _check_numeric_line(t, columns, int_idx, lab_idx)
                if problem is None:
                    good.append(ln)
                    rows.append(row)
                else:
                    bad.bad(path, ln, problem[1], problem[0])
            arr = np.array(rows, np.float64).reshape(-1, ncols)
            lines_ok = np.array(good, np.int64)
        else:
            lines_ok = np.array([ln for ln, _ in chunk], np.int64)
        values.append(arr)
        numbers.append(lines_ok)
    if not values:
        return np.zeros((0, ncols)), np.zeros(0, np.int64)
    return np.concatenate(values), np.concatenate(numbers)


def _check_numeric_line(text: str, columns, int_idx, lab_idx):
    """``((reason, message), None)`` for a bad line, else ``(None, values)``."""
    toks = text.split(",")
    if len(toks) != len(columns):
        return (
            "wrong column count",
            f"expected {len(columns)} comma-separated columns, found {len(toks)}",
        ), None
    vals = []
    for i, t in enumerate(toks):
        try:
            v = float(t)
        except ValueError:
            kind = "non-numeric label" if i in lab_idx else "non-numeric value"
            return (kind, f"column {columns[i]!r}: {t.strip()[:40]!r} is not a number"), None
        if not math.isfinite(v):
            return ("non-finite value", f"column {columns[i]!r}: {t.strip()!r} is not finite"), None
        if i in lab_idx and v not in (0.0, 1.0):
            return ("label not 0/1", f"label {columns[i]!r} is {t.strip()!r}, not 0 or 1"), None
        if i in int_idx and (v < 0 or v != math.floor(v)):
            return (
                "bad id",
                f"column {columns[i]!r}: {t.strip()!r} is not a non-negative integer id",
            ), None
        vals.append(v)
    return None, vals


def _files(directory: str, pattern: str, what: str, *, required: bool = True) -> list[str]:
    found = sorted(p for p in glob.glob(os.path.join(directory, pattern)) if os.path.isfile(p))
    if required and not found:
        raise FileNotFoundError(
            f"config.data.path={directory!r}: no {what} file matching {pattern!r}"
        )
    return found


def _one(directory: str, pattern: str, what: str) -> str:
    found = _files(directory, pattern, what)
    if len(found) > 1:
        raise ValueError(
            f"config.data.path={directory!r}: {len(found)} {what} files match {pattern!r} "
            f"({[os.path.basename(p) for p in found]}); keep exactly one"
        )
    return found[0]


# ---- splits, vocabularies ----------------------------------------------------------------------


def split_indices(n: int, fractions: tuple[float, ...], seed: int, groups=None):
    """Seeded disjoint index sets of ``n`` rows: one per fraction, the rest last.

    With ``groups`` (e.g. user ids) whole groups are assigned, in a seeded order, until each set
    holds at least its fraction of the rows: a group's rows are never split.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        perm = rng.permutation(n)
        out, start = [], 0
        for frac in fractions:
            k = int(round(n * frac))
            out.append(np.sort(perm[start : start + k]))
            start += k
        out.append(np.sort(perm[start:]))
        return out
    _, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(counts))
    covered = np.cumsum(counts[order])  # rows in the first k + 1 groups of the order
    assign = np.full(len(counts), len(fractions), np.int64)
    start, target = 0, 0.0
    for i, frac in enumerate(fractions):
        target += n * frac
        end = max(start, min(len(counts), int(np.searchsorted(covered, target)) + 1))
        assign[order[start:end]] = i
        start = end
    row_set = assign[inv.reshape(-1)]
    return [np.flatnonzero(row_set == i) for i in range(len(fractions) + 1)]


def _vocab(train: np.ndarray, min_count: int, missing):
    """Kept values (sorted), their ids (1.. by descending count, ties by value), rare values."""
    vals = train if missing is None else train[train != missing]
    u, c = np.unique(vals, return_counts=True)
    keep = c >= min_count
    ku, kc = u[keep], c[keep]
    ids = np.empty(len(ku), np.int32)
    ids[np.lexsort((np.arange(len(ku)), -kc))] = np.arange(1, len(ku) + 1, dtype=np.int32)
    return ku, ids, u[~keep]


def _factorize(cols: dict[str, np.ndarray], missing):
    """String columns → int64 codes in first-seen order over all splits (a dict is much faster
    than sorting strings); returns the codes and the code of ``missing`` (-1 if absent)."""
    lists = {s: c.tolist() for s, c in cols.items()}
    table = {v: i for i, v in enumerate(dict.fromkeys(v for c in lists.values() for v in c))}
    out = {s: np.array(list(map(table.__getitem__, c)), np.int64) for s, c in lists.items()}
    return out, (None if missing is None else table.get(missing, -1))


def _lookup(col: np.ndarray, keys: np.ndarray, ids: np.ndarray | None = None):
    """(ids of ``col`` in sorted ``keys`` (0 where absent), found mask)."""
    if not len(keys):
        return np.zeros(len(col), np.int32), np.zeros(len(col), bool)
    pos = np.minimum(np.searchsorted(keys, col), len(keys) - 1)
    found = keys[pos] == col
    out = np.where(found, ids[pos] if ids is not None else pos + 1, 0).astype(np.int32)
    return out, found


def _finish(
    parts: dict[str, _Part],
    *,
    fields: tuple[str, ...],
    groups: tuple[str, ...],
    dense_names: tuple[str, ...],
    tasks: tuple[str, ...],
    opts: dict,
    missing: dict[str, object] | None = None,
    scale_dense: bool = False,
    user_field: str | None = None,
    group_only: tuple[str, ...] = (),
    num_sources: int = 1,
    stats: dict | None = None,
) -> Dataset:
    """Vocabularies from the training split, ids, dense scaling, user ids → a Dataset."""
    missing = missing or {}
    stats = dict(stats or {})
    parts = {s: parts[s] for s in SPLITS}
    train = parts["train"]
    cats = {s: np.zeros((len(p.labels), len(fields)), np.int32) for s, p in parts.items()}
    sizes, id_stats = [], {s: {} for s in parts}
    for f, name in enumerate(fields):
        if name in group_only:  # a group id (GAUC), not a feature: always 0
            sizes.append(1)
            continue
        miss = missing.get(name)
        cols = {s: p.cat[f] for s, p in parts.items()}
        if train.cat[f].dtype.kind in "UO":
            cols, miss = _factorize(cols, miss)
        keys, ids, rare = _vocab(cols["train"], opts["min_count"], miss)
        sizes.append(len(keys) + 1)
        for s, col in cols.items():
            cats[s][:, f], hit = _lookup(col, keys, ids)
            is_miss = np.zeros(len(col), bool) if miss is None else col == miss
            _, is_rare = _lookup(col, rare)
            id_stats[s][name] = {
                "missing": int(is_miss.sum()),
                "rare": int(is_rare.sum()),
                "unseen": int((~hit & ~is_rare & ~is_miss).sum()),
            }
    lo = hi = None
    if scale_dense and len(dense_names):
        lo = train.dense.min(axis=0) if len(train.dense) else np.zeros(len(dense_names))
        hi = train.dense.max(axis=0) if len(train.dense) else np.zeros(len(dense_names))
        span = np.where(hi > lo, hi - lo, 1.0)
    users = None
    if user_field is not None:
        allu = np.concatenate([p.user for p in parts.values()])
        users = np.unique(allu)
    splits = {}
    for s, p in parts.items():
        dense = p.dense.astype(np.float64)
        if lo is not None:
            dense = np.clip((dense - lo) / span, 0.0, 1.0)
        cols = {
            "cat": cats[s],
            "dense": dense.astype(np.float32).reshape(len(p.labels), len(dense_names)),
            "labels": p.labels.astype(np.float32),
            "source": (
                np.zeros(len(p.labels), np.int32) if p.source is None else p.source.astype(np.int32)
            ),
        }
        if users is not None:
            cols["user"] = _lookup(p.user, users)[0]
        splits[s] = cols
    schema = Schema(
        categorical=tuple(
            CategoricalFeature(name, size, group=g) for name, size, g in zip(fields, sizes, groups)
        ),
        dense=tuple(dense_names),
        tasks=tuple(tasks),
        user_field=user_field,
        num_sources=num_sources,
    )
    for s, cols in splits.items():
        lab = cols["labels"]
        stats.setdefault("splits", {})[s] = {
            "rows": len(lab),
            "label_rates": dict(
                zip(tasks, (lab.mean(axis=0) if len(lab) else lab.sum(0)).tolist())
            ),
        }
        if len(tasks) == 2:
            stats["splits"][s]["second_task_without_first"] = int(
                ((lab[:, 1] > 0) & (lab[:, 0] == 0)).sum()
            )
    stats["ids"] = id_stats
    if lo is not None:
        stats["dense_train_min"], stats["dense_train_max"] = lo.tolist(), hi.tolist()
    return Dataset(schema=schema, splits=splits, stats=stats)


def _train_val(part: _Part, opts: dict, *, what: str) -> tuple[_Part, _Part]:
    """The seeded validation split of a training part (random or by user)."""
    groups = None
    if opts["val_split"] == "user":
        if part.user is None:
            raise ValueError(
                f"config.data.val_split='user' needs a user column, and {what} has none; "
                "use val_split='random'"
            )
        groups = part.user
    val, train = split_indices(len(part.labels), (opts["val_fraction"],), opts["seed"], groups)
    return part.take(train), part.take(val)


# ---- Ali-CCP processed formats ---------------------------------------------------------------


def _aliccp_dataset(parts, opts, fields, dense_names, stats) -> Dataset:
    return _finish(
        parts,
        fields=fields,
        groups=tuple(FIELDS[f][1] for f in fields),
        dense_names=dense_names,
        tasks=("click", "order"),
        opts=opts,
        missing={f: 0.0 for f in fields},
        user_field="101",
        stats=stats,
    )


def read_rechub_csv(cfg) -> Dataset:
    opts, path = _options(cfg), resolve_path(cfg, kind="rechub_csv")
    bad, stats = BadLines(opts["skip_bad"]), {}
    parts = {}
    for split in SPLITS:
        f = _one(path, f"*{split}*.csv", split)
        vals, _ = _read_numeric_csv(
            f, RECHUB_COLUMNS, bad, integer=ALICCP_FIELDS, labels=("click", "purchase"),
            header=True, stats=stats,
        )  # fmt: skip
        cat = [vals[:, 2 + i] for i in range(len(ALICCP_FIELDS))]
        parts[split] = _Part(
            cat=cat, dense=vals[:, 2 + len(ALICCP_FIELDS) :], labels=vals[:, :2], user=cat[0]
        )
    stats["bad_lines"] = bad.to_dict()
    return _aliccp_dataset(parts, opts, ALICCP_FIELDS, DENSE, stats)


def _aitm_files(path: str) -> dict[str, list[str]]:
    if os.path.isfile(os.path.join(path, "ctr_cvr.train")):
        out = {"train": [os.path.join(path, "ctr_cvr.train")]}
        if os.path.isfile(os.path.join(path, "ctr_cvr.dev")):
            out["val"] = [os.path.join(path, "ctr_cvr.dev")]
        out["test"] = _files(path, "ctr_cvr.test", "test")
        return out
    if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test")):
        return {s: _files(os.path.join(path, s), "*", s) for s in ("train", "test")}
    return {s: [_one(path, f"*{s}*", s)] for s in ("train", "test")}


def read_aitm_csv(cfg) -> Dataset:
    opts, path = _options(cfg), resolve_path(cfg, kind="aitm_csv")
    bad, stats = BadLines(opts["skip_bad"]), {}
    parts = {}
    for split, files in _aitm_files(path).items():
        chunks = []
        for f in files:
            vals, _ = _read_numeric_csv(
                f, AITM_COLUMNS, bad, integer=AITM_FIELDS, labels=("click", "purchase"),
                header=None, stats=stats,
            )  # fmt: skip
            cat = [vals[:, 2 + i] for i in range(len(AITM_FIELDS))]
            chunks.append(
                _Part(cat=cat, dense=np.zeros((len(vals), 0)), labels=vals[:, :2], user=cat[0])
            )
        parts[split] = _Part.concat(chunks)
    if "val" not in parts:
        parts["train"], parts["val"] = _train_val(parts["train"], opts, what="aitm_csv")
    stats["bad_lines"] = bad.to_dict()
    return _aliccp_dataset(parts, opts, AITM_FIELDS, (), stats)


def _esmm_files(path: str) -> dict[str, list[str]]:
    if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test")):
        return {s: _files(os.path.join(path, s), "*", s) for s in ("train", "test")}
    return {s: [_one(path, f"*{s}*", s)] for s in ("train", "test")}


def _read_esmm_file(path: str, bad: BadLines, stats: dict) -> _Part:
    """PaddleRec ESMM lines: ``sample_id,click,conversion,field:id,...`` (first id per field)."""
    index = {f: i for i, f in enumerate(ALICCP_FIELDS)}
    unknown = stats.setdefault("unknown_field_tokens", {})
    rows, labels = [], []
    for ln, text in _text_lines(path):
        if not text.strip():
            stats["blank_lines"] = stats.get("blank_lines", 0) + 1
            continue
        toks = text.split(",")
        if len(toks) < 3:
            bad.bad(path, ln, f"expected sample_id,click,conversion,... found {len(toks)} columns",
                    "wrong column count")  # fmt: skip
            continue
        lab = []
        for name, t in (("click", toks[1]), ("conversion", toks[2])):
            if t not in ("0", "1"):
                reason = "label not 0/1" if _is_number(t) else "non-numeric label"
                bad.bad(path, ln, f"{name} label {t[:40]!r} is not 0 or 1", reason)
                break
            lab.append(float(t))
        if len(lab) < 2:
            continue
        if not toks[0].strip().isdigit():
            bad.bad(path, ln, f"sample_id {toks[0][:40]!r} is not an integer", "bad sample_id")
            continue
        row = [-1] * len(ALICCP_FIELDS)
        problem = None
        for t in toks[3:]:  # every token: PaddleRec's reader skips the first one (features[4:])
            field, sep, fid = t.partition(":")
            if not sep or not fid.isdigit() or not field:
                problem = f"feature token {t[:40]!r} is not field:id"
                break
            i = index.get(field)
            if i is None:
                unknown[field] = unknown.get(field, 0) + 1
            elif row[i] < 0:
                row[i] = int(fid)
        if problem:
            bad.bad(path, ln, problem, "bad feature token")
            continue
        rows.append(row)
        labels.append(lab)
    cat = np.array(rows, np.int64).reshape(-1, len(ALICCP_FIELDS))
    cols = [cat[:, i] for i in range(cat.shape[1])]
    return _Part(
        cat=cols,
        dense=np.zeros((len(rows), 0)),
        labels=np.array(labels, np.float64).reshape(-1, 2),
        user=cols[0],
    )


def read_esmm_text(cfg) -> Dataset:
    opts, path = _options(cfg), resolve_path(cfg, kind="esmm_text")
    bad, stats = BadLines(opts["skip_bad"]), {}
    parts = {
        s: _Part.concat([_read_esmm_file(f, bad, stats) for f in files])
        for s, files in _esmm_files(path).items()
    }
    parts["train"], parts["val"] = _train_val(parts["train"], opts, what="esmm_text")
    stats["bad_lines"] = bad.to_dict()
    return _finish(
        parts,
        fields=ALICCP_FIELDS,
        groups=tuple(FIELDS[f][1] for f in ALICCP_FIELDS),
        dense_names=(),
        tasks=("click", "order"),
        opts=opts,
        missing={f: -1 for f in ALICCP_FIELDS},
        user_field="101",
        stats=stats,
    )


# ---- AliExpress ------------------------------------------------------------------------------


def read_aliexpress(cfg) -> Dataset:
    opts, paths = _options(cfg), resolve_path(cfg, kind="aliexpress").split(",")
    bad, stats = BadLines(opts["skip_bad"]), {"sources": paths}
    by_split = {"train": [], "test": []}
    for source, path in enumerate(paths):
        for split in ("train", "test"):
            f = _one(path, f"*{split}*.csv", split)
            vals, _ = _read_numeric_csv(
                f, ALIEXPRESS_COLUMNS, bad, integer=("search_id", *ALIEXPRESS_CATEGORICAL),
                labels=("click", "conversion"), header=True, stats=stats,
            )  # fmt: skip
            n = len(vals)
            by_split[split].append(
                _Part(
                    cat=[vals[:, i] for i in range(17)],
                    dense=vals[:, 17:80],
                    labels=vals[:, 80:82],
                    # search ids are per source file: the source keeps groups apart
                    user=vals[:, 0] * len(paths) + source,
                    source=np.full(n, source, np.int32),
                )
            )
    parts = {s: _Part.concat(p) for s, p in by_split.items()}
    parts["train"], parts["val"] = _train_val(parts["train"], opts, what="aliexpress")
    stats["bad_lines"] = bad.to_dict()
    return _finish(
        parts,
        fields=("search_id", *ALIEXPRESS_CATEGORICAL),
        groups=("context",) + ("other",) * 16,
        dense_names=ALIEXPRESS_NUMERICAL,
        tasks=("click", "order"),
        opts=opts,
        user_field="search_id",
        group_only=("search_id",),
        num_sources=len(paths),
        stats=stats,
    )


# ---- census-income -----------------------------------------------------------------------------


def _read_census_file(path: str, bad: BadLines, stats: dict) -> _Part:
    cat_idx = [CENSUS_COLUMNS.index(c) for c in CENSUS_CATEGORICAL]
    num_idx = [CENSUS_COLUMNS.index(c) for c in CENSUS_NUMERIC]
    marital, income = CENSUS_COLUMNS.index("marital_stat"), CENSUS_COLUMNS.index("income_50k")
    width = None
    rows, numbers, labels = [], [], []
    for ln, text in _text_lines(path):
        if not text.strip():
            stats["blank_lines"] = stats.get("blank_lines", 0) + 1
            continue
        # Values follow ", " (DeepCTR's copy writes numbers without the space).
        toks = text.replace(", ", ",").split(",")
        if width is None:
            if len(toks) not in (42, 43):
                raise DataError(
                    path, ln, f"expected 42 columns (or 43 with a leading index), found {len(toks)}"
                )
            width = len(toks)
        if len(toks) != width:
            bad.bad(path, ln, f"expected {width} columns, found {len(toks)}", "wrong column count")
            continue
        if width == 43:
            if not toks[0].isdigit():
                bad.bad(path, ln, f"index column {toks[0][:40]!r} is not an integer", "bad index")
                continue
            toks = toks[1:]
        y = _CENSUS_INCOME.get(toks[income].strip())
        if y is None:
            bad.bad(
                path, ln, f"income_50k is {toks[income].strip()[:40]!r}, not '- 50000.' or "
                "'50000+.'", "label not 0/1",
            )  # fmt: skip
            continue
        rows.append(toks)
        numbers.append(ln)
        labels.append((y, float(toks[marital].strip() == "Never married")))
    text_num = np.array([[r[i] for i in num_idx] for r in rows], dtype=str).reshape(
        -1, len(num_idx)
    )
    try:
        num = text_num.astype(np.float64)
        ok = np.isfinite(num).all(axis=1)
    except ValueError:  # some value is not a number: find the lines, one at a time
        num = np.zeros(text_num.shape)
        ok = np.ones(len(rows), bool)
        for r, vals in enumerate(text_num.tolist()):
            try:
                num[r] = [float(v) for v in vals]
                ok[r] = np.isfinite(num[r]).all()
            except ValueError:
                ok[r] = False
    for r in np.flatnonzero(~ok).tolist():
        j = next(j for j, v in enumerate(text_num[r].tolist()) if not _is_number(v))
        bad.bad(
            path, numbers[r], f"column {CENSUS_NUMERIC[j]!r}: {text_num[r, j].strip()[:40]!r} is "
            "not a finite number", "non-numeric value",
        )  # fmt: skip
    stats.setdefault("files", {})[path] = {"columns": width, "rows": int(ok.sum())}
    keep = np.flatnonzero(ok)
    return _Part(
        cat=[np.array([r[i] for r in rows], dtype=object)[keep] for i in cat_idx],
        dense=num[keep],
        labels=np.array(labels, np.float64).reshape(-1, 2)[keep],
    )


def read_census(cfg) -> Dataset:
    opts, path = _options(cfg), resolve_path(cfg, kind="census")
    bad, stats = BadLines(opts["skip_bad"]), {}
    if os.path.isdir(path):
        train = _Part.concat(
            [_read_census_file(f, bad, stats) for f in _files(path, "census-income.data*", "train")]
        )
        test = _Part.concat(
            [_read_census_file(f, bad, stats) for f in _files(path, "census-income.test*", "test")]
        )
        train, val = _train_val(train, opts, what="census")
        parts = {"train": train, "val": val, "test": test}
    else:
        if opts["val_split"] == "user":
            raise ValueError("config.data.val_split='user' needs a user column; census has none")
        whole = _read_census_file(path, bad, stats)
        f = opts["val_fraction"]
        val, test, train = split_indices(len(whole.labels), (f, f), opts["seed"])
        parts = {"train": whole.take(train), "val": whole.take(val), "test": whole.take(test)}
    stats["bad_lines"] = bad.to_dict()
    return _finish(
        parts,
        fields=CENSUS_CATEGORICAL,
        groups=("other",) * len(CENSUS_CATEGORICAL),
        dense_names=CENSUS_NUMERIC,
        tasks=CENSUS_TASKS,
        opts=opts,
        scale_dense=True,
        stats=stats,
    )


# ---- generic CSV / Parquet ---------------------------------------------------------------------


def _names(cfg, key: str) -> tuple[str, ...]:
    v = _get(cfg, key, ())
    if isinstance(v, str):
        v = [x.strip() for x in v.split(",") if x.strip()]
    return tuple(str(x) for x in v)


def _read_table(path: str, needed: list[str], bad: BadLines, stats: dict) -> dict[str, np.ndarray]:
    """Named columns of a CSV (header line) or Parquet file as string arrays, plus ``_line``."""
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(
                f"config.data.path={path!r} is a Parquet file; reading it needs pyarrow "
                "(pip install pyarrow), which mtl_jax does not depend on"
            ) from None
        table = pq.read_table(path)
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise DataError(path, 1, f"columns {missing} not in the file ({table.column_names})")
        out = {
            c: np.array(
                ["" if v is None else str(v) for v in table.column(c).to_pylist()], dtype=str
            )
            for c in needed
        }
        out["_line"] = np.arange(1, table.num_rows + 1)  # Parquet "line" = 1-based row
        return out
    lines = _text_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError(path, 1, "empty file (no lines)")
    header = [t.strip() for t in first[1].split(",")]
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(path, 1, f"header has no columns {missing} (header: {header[:20]})")
    idx = [header.index(c) for c in needed]
    rows, numbers = [], []
    for ln, text in lines:
        if not text.strip():
            stats["blank_lines"] = stats.get("blank_lines", 0) + 1
            continue
        toks = text.split(",")
        if len(toks) != len(header):
            bad.bad(
                path, ln, f"expected {len(header)} columns (as the header), found {len(toks)}",
                "wrong column count",
            )  # fmt: skip
            continue
        rows.append([toks[i].strip() for i in idx])
        numbers.append(ln)
    arr = np.array(rows, dtype=str).reshape(-1, len(needed))
    out = {c: arr[:, i] for i, c in enumerate(needed)}
    out["_line"] = np.array(numbers, np.int64)
    return out


def _floats(path, col: np.ndarray, lines: np.ndarray, name: str, bad: BadLines, *, label=False):
    """A string column → float64, checking each value; returns (values, ok mask)."""
    out = np.zeros(len(col))
    ok = np.ones(len(col), bool)
    for i, t in enumerate(col.tolist()):
        try:
            v = float(t)
            good = math.isfinite(v) and (not label or v in (0.0, 1.0))
        except ValueError:
            v, good = 0.0, False
        if good:
            out[i] = v
            continue
        ok[i] = False
        if label:
            reason = "label not 0/1" if _is_number(t) else "non-numeric label"
            bad.bad(path, int(lines[i]), f"label {name!r} is {t[:40]!r}, not 0 or 1", reason)
        else:
            bad.bad(path, int(lines[i]), f"column {name!r}: {t[:40]!r} is not a finite number",
                    "non-numeric value")  # fmt: skip
    return out, ok


def read_csv(cfg) -> Dataset:
    opts, path = _options(cfg), resolve_path(cfg, kind="csv")
    labels = _names(cfg, "label_columns")
    cats = _names(cfg, "categorical_columns")
    dense = _names(cfg, "dense_columns")
    user = _get(cfg, "user_column", None) or None
    source = _get(cfg, "source_column", None) or None
    if not labels:
        raise ValueError("config.data.label_columns must name at least one label column")
    if not cats and user is None:
        raise ValueError("config.data.categorical_columns must name at least one column")
    needed = list(dict.fromkeys([*labels, *cats, *dense, *(c for c in (user, source) if c)]))
    bad, stats = BadLines(opts["skip_bad"]), {}

    def load(f: str) -> _Part:
        t = _read_table(f, needed, bad, stats)
        lines = t["_line"]
        ok = np.ones(len(lines), bool)
        lab = np.zeros((len(lines), len(labels)))
        for j, c in enumerate(labels):
            lab[:, j], good = _floats(f, t[c], lines, c, bad, label=True)
            ok &= good
        den = np.zeros((len(lines), len(dense)))
        for j, c in enumerate(dense):
            den[:, j], good = _floats(f, t[c], lines, c, bad)
            ok &= good
        src = None
        if source:
            s, good = _floats(f, t[source], lines, source, bad)
            good &= (s >= 0) & (s == np.floor(s))
            for i in np.flatnonzero(~good & ok).tolist():
                bad.bad(f, int(lines[i]), f"source {t[source][i]!r} is not a non-negative integer",
                        "bad source")  # fmt: skip
            ok &= good
            src = s.astype(np.int64)
        fields = [*cats, *([user] if user and user not in cats else [])]
        part = _Part(
            cat=[t[c] for c in fields],
            dense=den,
            labels=lab,
            user=None if user is None else t[user],
            source=src,
        )
        return part.take(np.flatnonzero(ok))

    if os.path.isdir(path):
        files = {s: _one(path, f"*{s}*", s) for s in ("train", "test")}
        val_files = _files(path, "*val*", "val", required=False)
        parts = {s: load(f) for s, f in files.items()}
        if val_files:
            parts["val"] = load(val_files[0])
        else:
            parts["train"], parts["val"] = _train_val(parts["train"], opts, what="the csv data")
    else:
        whole = load(path)
        f = opts["val_fraction"]
        groups = whole.user if opts["val_split"] == "user" else None
        if opts["val_split"] == "user" and groups is None:
            raise ValueError("config.data.val_split='user' needs config.data.user_column")
        val, test, train = split_indices(len(whole.labels), (f, f), opts["seed"], groups)
        parts = {"train": whole.take(train), "val": whole.take(val), "test": whole.take(test)}
    fields = (*cats, *((user,) if user and user not in cats else ()))
    num_sources = 1
    if source:
        num_sources = (
            int(max((p.source.max() for p in parts.values() if len(p.source)), default=0)) + 1
        )
    stats["bad_lines"] = bad.to_dict()
    return _finish(
        parts,
        fields=fields,
        groups=tuple("user" if c == user else "other" for c in fields),
        dense_names=dense,
        tasks=labels,
        opts=opts,
        missing={c: "" for c in fields},
        scale_dense=True,
        user_field=user,
        group_only=(user,) if user and user not in cats else (),
        num_sources=num_sources,
        stats=stats,
    )


# ---- prepared shards ---------------------------------------------------------------------------


def read_prepared(cfg) -> Dataset:
    path = resolve_path(cfg, kind="prepared")
    meta = shards.read_metadata(path)
    schema = Schema.from_dict(meta["schema"])
    extra = _names(cfg, "extra_columns")
    names = list(dict.fromkeys([*batch_keys(schema), *extra]))
    splits = {s: shards.open_split(path, s, meta, names) for s in SPLITS}
    rates = {
        s: dict(zip(schema.tasks, (info["click_rate"], info["conversion_rate"])))
        for s, info in meta["splits"].items()
    }
    stats = {
        "splits": {s: {"rows": meta["splits"][s]["rows"], "label_rates": rates[s]} for s in SPLITS},
        "ids": {s: v["fields"] for s, v in meta.get("ids", {}).items()},
        "prepared": {k: meta[k] for k in ("dropped", "timing") if k in meta},
    }
    return Dataset(schema=schema, splits=splits, stats=stats)


READERS = {
    "rechub_csv": read_rechub_csv,
    "aitm_csv": read_aitm_csv,
    "esmm_text": read_esmm_text,
    "aliexpress": read_aliexpress,
    "census": read_census,
    "csv": read_csv,
    "prepared": read_prepared,
}


def read(cfg) -> Dataset:
    """Reads the dataset ``config.data`` names."""
    kind = cfg.kind
    if kind not in READERS:
        raise ValueError(f"config.data.kind must be one of {('synthetic', *KINDS)}, got {kind!r}")
    return READERS[kind](cfg)


def summary(ds: Dataset) -> str:
    """Rows, label rates, rare / unseen ids per split and skipped lines, in a few lines."""
    lines = []
    for s, info in ds.stats.get("splits", {}).items():
        rates = info.get("label_rates")
        rate = " ".join(f"{k}={v:.4f}" for k, v in rates.items()) if rates else ""
        ids = ds.stats.get("ids", {}).get(s, {})
        rare = sum(v["rare"] for v in ids.values())
        unseen = sum(v["unseen"] for v in ids.values())
        lines.append(
            f"  {s:5s} {info['rows']:>10,} rows {rate}  ids → 0: rare {rare:,} unseen {unseen:,}"
        )
    bad = ds.stats.get("bad_lines")
    if bad and bad["skipped_lines"]:
        lines.append(f"  skipped bad lines: {bad['skipped_lines']} {bad['by_reason']}")
    if ds.stats.get("blank_lines"):
        lines.append(f"  blank lines ignored: {ds.stats['blank_lines']}")
    return "\n".join(lines)
