"""What every reader shares: config options, finding files, text tables through Arrow with line
numbers, checked conversion of columns, validation splits, and the last step from raw tables to
:class:`SplitColumns` (fit a :class:`~mtl_jax.data.preprocessing.Preprocessing` on the training
split, apply it to every split).

Text files go through ``pyarrow.csv``: RFC 4180 quoting, a UTF-8 byte-order mark, CRLF (or CR)
line ends and gzip are the library's job. Arrow does not number lines, so :func:`read_text` maps
every row to its physical line itself (newlines outside quoted fields, blank lines skipped as
Arrow skips them), and every bad value is reported as ``path:line: problem`` — or, with
``config.data.skip_bad``, skipped and counted under a short reason.
"""

from __future__ import annotations

import codecs
import dataclasses
import glob
import gzip
import os
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mtl_jax.data import preprocessing as pp
from mtl_jax.data.errors import BadLines, DataError
from mtl_jax.data.schema import Schema
from mtl_jax.data.synthetic import FIELDS

SPLITS = ("train", "val", "test")
#: Every Ali-CCP field, in torch-rechub's column order.
ALICCP_FIELDS = tuple(FIELDS)
VAL_SPLITS = ("random", "user")
#: A decimal number as Arrow's cast to float64 reads it (no spaces, no ``_``, no hex).
_NUMBER_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_MAX_SAFE_INT = float(2**53)


@dataclasses.dataclass
class SplitColumns:
    """What a reader returns: every split's columns, their schema, statistics (rows, label rates,
    rare/unseen ids per split and field, skipped lines) and the preprocessing that made the
    columns from the raw rows (None for prepared shards)."""

    schema: Schema
    splits: dict[str, dict[str, np.ndarray]]
    stats: dict
    preprocessing: pp.Preprocessing | None = None


# ---- config --------------------------------------------------------------------------------------


def get(cfg, key: str, default):
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def names(cfg, key: str) -> tuple[str, ...]:
    """A tuple of column names (a comma-separated string is accepted too)."""
    v = get(cfg, key, ())
    if isinstance(v, str):
        v = [x.strip() for x in v.split(",") if x.strip()]
    return tuple(str(x) for x in v)


@dataclasses.dataclass(frozen=True)
class Options:
    """The ``config.data`` keys every reader understands (see the package docstring)."""

    min_count: int = 1
    val_split: str = "random"
    val_fraction: float = 0.1
    seed: int = 0
    skip_bad: bool = False
    dense_scaling: str = pp.DEFAULT_DENSE_SCALING


def options(cfg) -> Options:
    o = Options(
        min_count=int(get(cfg, "min_count", 1)),
        val_split=str(get(cfg, "val_split", "random")),
        val_fraction=float(get(cfg, "val_fraction", 0.1)),
        seed=int(get(cfg, "seed", 0)),
        skip_bad=bool(get(cfg, "skip_bad", False)),
        dense_scaling=str(get(cfg, "dense_scaling", pp.DEFAULT_DENSE_SCALING)),
    )
    if o.min_count < 1:
        raise ValueError(f"config.data.min_count must be >= 1, got {o.min_count}")
    if o.val_split not in VAL_SPLITS:
        raise ValueError(f"config.data.val_split must be one of {VAL_SPLITS}, got {o.val_split!r}")
    if not 0.0 < o.val_fraction < 0.5:
        raise ValueError(f"config.data.val_fraction must be in (0, 0.5), got {o.val_fraction}")
    if o.dense_scaling not in pp.DENSE_SCALINGS:
        raise ValueError(
            f"config.data.dense_scaling must be one of {pp.DENSE_SCALINGS}, got {o.dense_scaling!r}"
        )
    return o


def resolve_path(cfg, *, kind: str) -> str:
    """``config.data.path`` resolved against the working directory; it must exist."""
    path = get(cfg, "path", None)
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


def files(directory: str, pattern: str, what: str, *, required: bool = True) -> list[str]:
    found = sorted(p for p in glob.glob(os.path.join(directory, pattern)) if os.path.isfile(p))
    if required and not found:
        raise FileNotFoundError(
            f"config.data.path={directory!r}: no {what} file matching {pattern!r}"
        )
    return found


def one(directory: str, pattern: str, what: str) -> str:
    found = files(directory, pattern, what)
    if len(found) > 1:
        raise ValueError(
            f"config.data.path={directory!r}: {len(found)} {what} files match {pattern!r} "
            f"({[os.path.basename(p) for p in found]}); keep exactly one"
        )
    return found[0]


# ---- text tables ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Raw:
    """Rows of one or more files: a table of named columns, each row's line (1-based) and file.

    Attributes:
      table: the columns.
      lines: [n] each row's line in its file.
      paths: the files.
      file_of: [n] index into ``paths`` of each row's file (None: all rows are ``paths[0]``).
      pending: problems of lines already left out (``(file, line, message, reason)``), not yet
        reported (see :func:`report`).
    """

    table: pa.Table
    lines: np.ndarray
    paths: list[str]
    file_of: np.ndarray | None = None
    pending: list = dataclasses.field(default_factory=list)

    @property
    def path(self) -> str:
        return self.paths[0] if len(self.paths) == 1 else f"{self.paths[0]} (and others)"

    def where(self, i: int) -> tuple[str, int]:
        """(file, line) of row ``i``."""
        f = 0 if self.file_of is None else int(self.file_of[i])
        return self.paths[f], int(self.lines[i])

    def take(self, rows: np.ndarray) -> Raw:
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows)
        return Raw(
            self.table.take(pa.array(rows, pa.int64())),
            self.lines[rows],
            self.paths,
            None if self.file_of is None else self.file_of[rows],
            self.pending,
        )

    def set(self, column: str, values) -> None:
        """Replaces (or adds) a column."""
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        names = self.table.column_names
        if column in names:
            self.table = self.table.set_column(names.index(column), column, arr)
        else:
            self.table = self.table.append_column(column, arr)


def read_bytes(path: str) -> bytes:
    """A file's bytes (gzip decompressed); DataError for empty, truncated or binary files."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # e.g. a truncated or corrupt gzip stream
        raise DataError(path, 1, f"cannot read the file: {e}") from None
    if not data.strip(b"\r\n"):
        raise DataError(path, 1, "empty file (no lines)")
    z = data.find(b"\0")
    if z >= 0:
        raise DataError(
            path, data.count(b"\n", 0, z) + 1, f"not a text file: NUL byte at offset {z}"
        )
    return data


def _check_utf8(path: str, data: bytes) -> None:
    dec = codecs.getincrementaldecoder("utf-8")()
    step = 1 << 24
    for a in range(0, len(data), step):
        try:
            dec.decode(data[a : a + step], final=a + step >= len(data))
        except UnicodeDecodeError as e:
            pos = a + e.start
            raise DataError(
                path,
                data.count(b"\n", 0, pos) + 1,
                f"not UTF-8 text: byte 0x{data[pos]:02x} at offset {pos}",
            ) from None


def _records(data: bytes, quoted: bool) -> tuple[np.ndarray, int] | None:
    """(physical line (1-based) of every non-blank record as Arrow's CSV reader splits them,
    number of blank lines).

    A record ends at ``\\n``, ``\\r\\n`` or a lone ``\\r`` outside quoted fields (an even number
    of quote characters before it; exact for RFC 4180 files). None when a quote is left open.
    """
    b = np.frombuffer(data, np.uint8)
    nl = b == 10
    brk = nl | (b == 13)
    brk[:-1] &= ~((b[:-1] == 13) & nl[1:])  # \r\n is one line end, at its \n
    end = brk
    if quoted:
        q = np.cumsum(b == 34)
        if q[-1] % 2:
            return None
        end = brk & (q % 2 == 0)
    ends = np.flatnonzero(end)
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends, [len(b)]])
    if starts[-1] == len(b):  # nothing after the last line end
        starts, stops = starts[:-1], stops[:-1]
    crlf = (stops > starts) & (stops < len(b)) & (b[np.minimum(stops, len(b) - 1)] == 10)
    crlf &= b[np.maximum(stops - 1, 0)] == 13
    nonblank = stops - crlf > starts
    line = 1 + np.concatenate([[0], np.cumsum(brk)])[starts]
    return line[nonblank], int((~nonblank).sum())


def _last_opening_quote(data: bytes, delimiter: str) -> int | None:
    """The offset of a quote that opens a field and is followed by no other quote, or None."""
    q = data.rfind(b'"')
    before = data[q - 1 : q] if q > 0 else b""
    return q if q == 0 or before in (delimiter.encode(), b"\n", b"\r") else None


def read_text(
    path: str,
    stats: dict,
    *,
    header: bool,
    column_names: list[str] | None = None,
    delimiter: str = ",",
    quoting: bool = True,
) -> Raw:
    """A delimited text file (gzip allowed) as a table of string columns with line numbers.

    Args:
      path: the file.
      stats: gets ``blank_lines`` (ignored) added.
      header: the first line names the columns (else ``column_names``).
      column_names: names when there is no header; their number is the expected column count.
      delimiter: one character.
      quoting: RFC 4180 double quotes (off for formats that never quote).

    Rows with the wrong number of columns are left out and become ``pending`` problems (reason
    ``wrong column count``), reported with the rows' other problems by :func:`report`.
    """
    data = read_bytes(path)
    _check_utf8(path, data)
    rec = _records(data, quoting and b'"' in data)
    if rec is None:  # an odd number of quotes: an open quoted field, or literal quotes
        opened = _last_opening_quote(data, delimiter)
        if opened is not None:
            raise DataError(
                path,
                data.count(b"\n", 0, opened) + 1,
                "a quoted field is never closed (a '\"' without its closing quote)",
            )
        rec = _records(data, False)  # quotes inside unquoted fields are text
    rec_lines, blank = rec
    invalid: list[tuple[int, int, int]] = []  # (record number, expected, actual)

    def on_invalid(row) -> str:
        invalid.append((row.number, row.expected_columns, row.actual_columns))
        return "skip"

    parse = dict(
        delimiter=delimiter, quote_char='"' if quoting else False, double_quote=quoting,
        newlines_in_values=quoting,
    )  # fmt: skip
    try:
        if header:  # the names, so that every column can be read as text (no type inference)
            head = pacsv.open_csv(
                pa.py_buffer(data),
                read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 16),
                parse_options=pacsv.ParseOptions(**parse, invalid_row_handler=lambda r: "skip"),
            )
            column_names = head.schema.names
            head.close()
            read = pacsv.ReadOptions(use_threads=False)
        else:
            read = pacsv.ReadOptions(use_threads=False, column_names=list(column_names))
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=read,
            parse_options=pacsv.ParseOptions(**parse, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in column_names},
                strings_can_be_null=False, null_values=[], quoted_strings_can_be_null=False,
            ),
        )  # fmt: skip
    except pa.ArrowInvalid as e:
        raise DataError(path, 1, f"cannot parse the file as delimited text: {e}") from None
    first = 2 if header else 1  # record number of the first data row
    n_records = first - 1 + table.num_rows + len(invalid)
    skipped = np.array(sorted(n for n, _, _ in invalid), np.int64)
    kept = np.setdiff1d(np.arange(first, n_records + 1), skipped, assume_unique=True)
    if len(rec_lines) == n_records:
        lines, line_of = rec_lines[kept - 1], (lambda n: int(rec_lines[n - 1]))
    else:  # quotes that do not pair up as RFC 4180 says: number the records instead
        lines, line_of = kept, (lambda n: int(n))
    stats["blank_lines"] = stats.get("blank_lines", 0) + blank
    sep = "comma-separated " if delimiter == "," else ""
    pending = [
        (
            path,
            line_of(n),
            f"expected {expected} {sep}columns, found {actual}",
            "wrong column count",
        )
        for n, expected, actual in sorted(invalid)
    ]
    return Raw(table, lines.astype(np.int64), [path], pending=pending)


# ---- checked conversion --------------------------------------------------------------------------


def _trimmed(col) -> pa.Array:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        col = pc.cast(col, pa.string())
    return pc.utf8_trim_whitespace(col)


def parse_numbers(col) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Text → float64: (values, parsed mask, trimmed text). Unparsed values are 0."""
    text = _trimmed(col).fill_null("")
    try:
        return (
            pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False),
            np.ones(len(text), bool),
            text,
        )
    except pa.ArrowInvalid:  # some value is not a number: parse the ones that are
        ok = (
            pc.match_substring_regex(text, _NUMBER_RE)
            .fill_null(False)
            .to_numpy(zero_copy_only=False)
        )
        values = np.zeros(len(text))
        if ok.any():
            values[ok] = pc.cast(text.filter(pa.array(ok)), pa.float64()).to_numpy(
                zero_copy_only=False
            )
        return values, ok, text


def _show(text: pa.Array, i: int) -> str:
    return repr(text[i].as_py()[:40])


def expect_header(raw: Raw, columns: tuple[str, ...]) -> None:
    """DataError unless the file's header names exactly ``columns``."""
    got = [c.strip() for c in raw.table.column_names]
    if tuple(got) != tuple(columns):
        raise DataError(
            raw.paths[0],
            1,
            f"header {got[:6]}... does not match the expected {len(columns)} columns "
            f"{list(columns[:6])}...",
        )


def require_columns(raw: Raw, needed) -> None:
    """DataError naming the columns the file's header lacks."""
    names = [c.strip() for c in raw.table.column_names]
    if names != raw.table.column_names:
        raw.table = raw.table.rename_columns(names)
    missing = [c for c in needed if c not in names]
    if missing:
        raise DataError(raw.paths[0], 1, f"header has no columns {missing} (header: {names[:20]})")


#: What a checked column must hold (see :func:`check_columns`).
KINDS_OF_VALUES = ("number", "id", "binary", "real_label", "probability")


def check_numbers(
    raw: Raw,
    column: str,
    *,
    kind: str = "number",
    lo: float | None = None,
    hi: float | None = None,
) -> tuple[np.ndarray, np.ndarray, list]:
    """A text column → float64 with checks: (values, ok mask, [(row, message, reason)]).

    ``kind``: ``number`` (any finite real), ``id`` (a non-negative integer), ``binary`` (a 0/1
    label), ``real_label`` (a finite real label), ``probability`` (in [0, 1]). ``lo``/``hi``
    bound a number (plausibility checks).
    """
    values, parsed, text = parse_numbers(raw.table.column(column))
    finite = parsed & np.isfinite(values)
    ok = finite.copy()
    if kind == "id":
        ok &= (values >= 0) & (values == np.floor(values)) & (values < _MAX_SAFE_INT)
    elif kind == "binary":
        ok &= (values == 0) | (values == 1)
    elif kind == "probability":
        ok &= (values >= 0) & (values <= 1)
    if lo is not None:
        ok &= values >= lo
    if hi is not None:
        ok &= values <= hi
    problems = []
    for i in np.flatnonzero(~ok).tolist():
        shown = _show(text, i)
        if kind in ("binary", "real_label"):
            if not parsed[i]:
                reason, msg = "non-numeric label", f"label {column!r} is {shown}, not a number"
            elif kind == "binary":
                reason, msg = "label not 0/1", f"label {column!r} is {shown}, not 0 or 1"
            else:
                reason, msg = "non-finite label", f"label {column!r} is {shown}, not finite"
        elif not parsed[i]:
            reason, msg = "non-numeric value", f"column {column!r}: {shown} is not a number"
        elif not finite[i]:
            reason, msg = "non-finite value", f"column {column!r}: {shown} is not finite"
        elif kind == "id":
            reason, msg = "bad id", f"column {column!r}: {shown} is not a non-negative integer id"
        elif kind == "probability":
            reason, msg = "bad probability", f"column {column!r}: {shown} is not in [0, 1]"
        else:
            reason = "implausible value"
            msg = f"column {column!r}: {shown} is outside the plausible range [{lo:g}, {hi:g}]"
        problems.append((i, msg, reason))
    return values, ok, problems


def report(raw: Raw, bad: BadLines, problems=()) -> None:
    """Reports the rows' problems ``(row, message, reason)`` (the first per row) together with
    the lines already dropped (``raw.pending``), in line order: the first raises unless
    skipping."""
    first: dict[int, tuple[str, str]] = {}
    for i, msg, reason in problems:
        first.setdefault(i, (msg, reason))
    events = [(*raw.where(i), msg, reason) for i, (msg, reason) in first.items()]
    events += raw.pending
    raw.pending = []
    order = {p: k for k, p in enumerate(raw.paths)}
    for path, line, msg, reason in sorted(events, key=lambda e: (order.get(e[0], 0), e[1])):
        bad.bad(path, line, msg, reason)


def check_columns(raw: Raw, kinds: dict[str, str], bad: BadLines, ranges=None, problems=()) -> Raw:
    """Checks and converts columns (name → kind, see :func:`check_numbers`; give them in the
    file's column order); ids become int64, the rest float64. Problems (these and the given
    ``(row, message, reason)`` ones, which come first within a row) are reported with
    :func:`report`; bad rows are dropped. ``ranges``: column → (lo, hi) plausible bounds."""
    ranges = ranges or {}
    problems = list(problems)
    ok = np.ones(raw.table.num_rows, bool)
    ok[[i for i, _, _ in problems]] = False
    converted = {}
    for column, kind in kinds.items():
        lo, hi = ranges.get(column, (None, None))
        values, good, probs = check_numbers(raw, column, kind=kind, lo=lo, hi=hi)
        converted[column] = values.astype(np.int64) if kind == "id" else values
        ok &= good
        problems += probs
    report(raw, bad, problems)
    for column, values in converted.items():
        raw.set(column, values)
    return raw if ok.all() else raw.take(ok)


# ---- splits --------------------------------------------------------------------------------------


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


def concat(parts: list[Raw]) -> Raw:
    """Rows of several files as one (each row keeps its own file and line)."""
    if len(parts) == 1:
        return parts[0]
    paths: list[str] = []
    file_of = []
    for p in parts:
        offset = len(paths)
        paths.extend(p.paths)
        file_of.append(
            (np.zeros(len(p.lines), np.int64) if p.file_of is None else p.file_of) + offset
        )
    table = pa.concat_tables([p.table for p in parts], promote_options="permissive")
    pending = [e for p in parts for e in p.pending]
    return Raw(
        table, np.concatenate([p.lines for p in parts]), paths, np.concatenate(file_of), pending
    )


def group_values(raw: Raw, column: str) -> np.ndarray:
    """A column's values as a numpy array usable as split groups."""
    return raw.table.column(column).to_numpy()


def train_val(raw: Raw, opts: Options, *, user_column: str | None, what: str) -> tuple[Raw, Raw]:
    """The seeded validation split of a training part (random or by user)."""
    groups = None
    if opts.val_split == "user":
        if user_column is None:
            raise ValueError(
                f"config.data.val_split='user' needs a user column, and {what} has none; "
                "use val_split='random'"
            )
        groups = group_values(raw, user_column)
    val, train = split_indices(raw.table.num_rows, (opts.val_fraction,), opts.seed, groups)
    return raw.take(train), raw.take(val)


def three_way(raw: Raw, opts: Options, *, user_column: str | None, what: str) -> dict[str, Raw]:
    """A seeded val / test / train split of one file (fractions val_fraction each)."""
    groups = None
    if opts.val_split == "user":
        if user_column is None:
            raise ValueError(f"config.data.val_split='user' needs a user column; {what} has none")
        groups = group_values(raw, user_column)
    f = opts.val_fraction
    val, test, train = split_indices(raw.table.num_rows, (f, f), opts.seed, groups)
    return {"train": raw.take(train), "val": raw.take(val), "test": raw.take(test)}


# ---- raw tables → SplitColumns ----------------------------------------------------------------


def finish(
    parts: dict[str, Raw], prep: pp.Preprocessing, opts: Options, stats: dict
) -> SplitColumns:
    """Fits ``prep`` (vocabularies, dense scaling) on the training split, applies it to every
    split, and gathers the statistics."""
    stats = dict(stats)
    parts = {s: parts[s] for s in SPLITS}
    prep.fit(parts["train"].table, min_count=opts.min_count, where=parts["train"].where)
    users = None
    if prep.user_column is not None:  # one numbering of the user groups over all splits
        users = pa.chunked_array(
            [pp.user_values(p.table, prep.user_column) for p in parts.values()]
        ).unique()
    splits, ids = {}, {}
    for s, raw in parts.items():
        splits[s], ids[s] = prep.apply(raw.table, users=users, where=raw.where)
    schema = prep.schema()
    for s, cols in splits.items():
        lab = cols["labels"]
        info = {"rows": len(lab)}
        info["label_rates"] = dict(
            zip(schema.tasks, (lab.mean(axis=0) if len(lab) else lab.sum(0)).tolist())
        )
        if len(schema.tasks) == 2 and schema.all_binary:
            info["second_task_without_first"] = int(((lab[:, 1] > 0) & (lab[:, 0] == 0)).sum())
        stats.setdefault("splits", {})[s] = info
    stats["ids"] = ids
    stats.update(prep.fit_stats())
    return SplitColumns(schema=schema, splits=splits, stats=stats, preprocessing=prep)


def aliccp_preprocessing(
    kind: str,
    fields: tuple[str, ...],
    *,
    dense: tuple[str, ...] = (),
    labels: tuple[str, str] = ("click", "purchase"),
    missing: int = 0,
) -> pp.Preprocessing:
    """The processed Ali-CCP formats (rechub, AITM, ESMM): integer-id fields (``missing`` =
    absent), tasks click and order, users by field 101; dense columns as given (their publishers
    scaled them)."""
    return pp.Preprocessing(
        kind=kind,
        categorical=[
            pp.CategoricalColumn(f, f, dtype="int64", group=FIELDS[f][1], missing=missing)
            for f in fields
        ],
        dense=[pp.DenseColumn(d, d, scaling="none") for d in dense],
        tasks=["click", "order"],
        label_columns=list(labels),
        task_types=["binary", "binary"],
        user_field="101",
        user_column="101",
    )
