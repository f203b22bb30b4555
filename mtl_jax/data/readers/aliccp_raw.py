"""Ali-CCP raw format: a streaming block parser on Arrow's CSV reader, and per-row reduction.

The format (``shared/docs/aliccp-format.md``): ``sample_skeleton_{train,test}.csv`` has one
impression per line, ``sample_id,click,conversion,common_feature_index,feature_num,feature_list``;
``common_features_{train,test}.csv`` has one (user, context) group per line,
``common_feature_index,feature_num,feature_list``. A feature list is
``field\\x02id\\x03value`` entries joined by ``\\x01``. No header, ``\\n`` line ends (``\\r\\n``
is accepted too).

How a block of lines is parsed (:func:`parse_block`): ``\\x01`` becomes a newline and ``\\x02`` a
``\\x03`` (one ``bytes.translate``), so every feature entry is a row ``field\\x03id\\x03value`` of a
three-column CSV, and Arrow's CSV reader splits and converts all of them in C++ (``id`` to uint64,
``value`` to float64) in one pass. The first row of each line also carries the line's leading
columns before its first field (``1,0,0,bacff91692951881,9,210``): those rows are found by length
(a field id has at most 8 bytes), split on commas with ``pyarrow.compute`` and converted there;
field ids become indices with ``pyarrow.compute.index_in``. A second ``translate`` keeps only
the ``\\x02``/``\\x03`` separators, newlines and any byte the grammar does not allow: that short
signature proves the structure (every entry is ``field\\x02id\\x03value`` in that order, no stray
byte, the number of entries per line) without a per-entry check in Python.

The fast path accepts a block only when every line is valid (column counts, labels in {0, 1}, a
16-hex-digit key, integer ids below 10^18, weights finite as float32, ``feature_num`` equal to the
number of entries, which catches most truncated lines). Otherwise the block is halved until the
pieces parse, and pieces of a few lines go line by line through :func:`parse_line`, the pure-Python
reference, which names the exact problem of a bad line and parses the odd valid one the fast path
does not take (an empty feature list). ``tests/test_fuzz.py`` checks that the block parser accepts
exactly the lines the reference accepts, with the same values.

Per (row, field), the kept entry is the one with the highest weight, the first on ties. For the
plain categorical fields every weight is 1.0, so that is the first entry (for 210: the first
intention node); for the behaviour bags ``*_14`` and the cross field 853 it is the user's strongest
behaviour, and its weight is the dense feature of the field (``D127_14`` etc., as torch-rechub).
The multi-valued fields are also kept as bags of at most ``max_bag_len`` (id, weight) entries in
descending weight: the weights are log-scaled behaviour counts and the raw order is arbitrary (no
timestamps), so the heaviest entries are the most informative ones a fixed budget can hold.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mtl_jax.data.errors import DataError
from mtl_jax.data.synthetic import DENSE, FIELDS

# ---- layout -----------------------------------------------------------------------------------

FIELD_NAMES: tuple[str, ...] = tuple(FIELDS)  # the 23 fields in torch-rechub's column order
NUM_FIELDS = len(FIELD_NAMES)
FIELD_INDEX = {f: i for i, f in enumerate(FIELD_NAMES)}
#: Multi-valued fields, kept as weighted bags besides their single id.
BAG_FIELDS: tuple[str, ...] = ("210", "853", "109_14", "110_14", "127_14", "150_14")
NUM_BAGS = len(BAG_FIELDS)
#: Bags that live in the impression's own features (``S`` in the format's field table) and those
#: of the user's common features (``C``): prepare stores the first per row, the second once per
#: common-feature key.
SKELETON_BAGS: tuple[str, ...] = ("210", "853")
COMMON_BAGS: tuple[str, ...] = ("109_14", "110_14", "127_14", "150_14")
#: The field whose kept-entry weight is each dense column (``D109_14`` → ``109_14``).
DENSE_FIELDS: tuple[str, ...] = tuple(d[1:] for d in DENSE)
#: Behaviour bag → the item field of the same kind (the DIN target of a sequence built from it).
SEQUENCE_TARGETS = {"109_14": "206", "110_14": "207", "127_14": "216", "150_14": "210"}

SKELETON_COLUMNS = 6
COMMON_COLUMNS = 3
MAX_LINE_BYTES = 16 << 20  # a longer "line" means the file is not newline-separated text
DEFAULT_CHUNK_BYTES = 8 << 20
#: Ids (sample ids, feature ids, feature_num) are decimal integers below this.
MAX_ID = 10**18
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAX_FIELD_LEN = 8

_BAG_SLOT = np.full(NUM_FIELDS, -1, np.int64)
for _b, _f in enumerate(BAG_FIELDS):
    _BAG_SLOT[FIELD_INDEX[_f]] = _b

# ---- reference parser (pure Python): names the problem of a bad line --------------------------

_ID_RE = re.compile(rb"[0-9]+")
_FIELD_RE = re.compile(rb"[0-9_]{1,8}")
_KEY_RE = re.compile(rb"[0-9a-fA-F]{16}")
_FLOAT_RE = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _id(tok: bytes) -> int | None:
    """The value of a decimal integer token below ``MAX_ID``, else None."""
    if not _ID_RE.fullmatch(tok):
        return None
    v = int(tok)
    return v if v < MAX_ID else None


class LineProblem(Exception):
    """Why one line is bad: ``reason`` (short, for the skip counts) and ``message``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _show(b: bytes, limit: int = 40) -> str:
    text = repr(b[:limit])[1:]
    return text + ("..." if len(b) > limit else "")


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _value(tok: bytes) -> float | None:
    """``float(tok)`` for a decimal that is finite as float32, else None (no nan/inf/spaces)."""
    if not _FLOAT_RE.fullmatch(tok):
        return None
    v = float(tok)
    return v if abs(v) <= _FLOAT32_MAX else None


def parse_line(line: bytes, kind: str) -> dict:
    """Parses one line (without its newline) of a ``skeleton`` or ``common`` file.

    The reference for the block parser: both accept exactly the same lines and produce the
    same values. Returns ``{"key", "entries": [(field, id, value)], ...}`` plus ``sample_id``,
    ``click``, ``conversion`` for the skeleton. Raises :class:`LineProblem` for a bad line.
    """
    ncols = SKELETON_COLUMNS if kind == "skeleton" else COMMON_COLUMNS
    if line.endswith(b"\r"):  # a CRLF line end
        line = line[:-1]
    cols = line.split(b",")
    if len(cols) != ncols:
        raise LineProblem(
            "wrong column count",
            f"expected {ncols} comma-separated columns, found {len(cols)}",
        )
    out: dict = {}
    if kind == "skeleton":
        sid, click, conv, key, fnum, flist = cols
        out["sample_id"] = _id(sid)
        if out["sample_id"] is None:
            raise LineProblem(
                "bad sample_id", f"sample_id {_show(sid)} is not an integer below 10^18"
            )
        for name, tok in (("click", click), ("conversion", conv)):
            if tok in (b"0", b"1"):
                out[name] = int(tok)
            elif _value(tok) is None:
                raise LineProblem("non-numeric label", f"{name} label {_show(tok)} is not a number")
            else:
                raise LineProblem("label not 0/1", f"{name} label {_show(tok)} is not 0 or 1")
    else:
        key, fnum, flist = cols
    if not _KEY_RE.fullmatch(key):
        raise LineProblem(
            "bad common_feature_index",
            f"common_feature_index {_show(key)} is not 16 hex digits",
        )
    out["key"] = int(key, 16)
    num = _id(fnum)
    if num is None:
        raise LineProblem("bad feature_num", f"feature_num {_show(fnum)} is not an integer")
    entries = []
    if flist:
        for i, e in enumerate(flist.split(b"\x01")):
            field, s2, rest = e.partition(b"\x02")
            fid, s3, val = rest.partition(b"\x03")
            if not s2 or not s3 or b"\x02" in rest or b"\x03" in val:
                raise LineProblem(
                    "broken separators",
                    f"feature entry {i + 1} {_show(e)} is not field\\x02id\\x03value",
                )
            if not _FIELD_RE.fullmatch(field):
                raise LineProblem(
                    "bad field id", f"feature entry {i + 1}: field id {_show(field)} is malformed"
                )
            fid_v = _id(fid)
            if fid_v is None:
                raise LineProblem(
                    "bad feature id",
                    f"feature entry {i + 1}: feature id {_show(fid)} is not an integer below 10^18",
                )
            v = _value(val)
            if v is None:
                raise LineProblem(
                    "bad feature value",
                    f"feature entry {i + 1}: value {_show(val)} is not a finite float32 number",
                )
            entries.append((field.decode(), fid_v, v))
    if num != len(entries):
        raise LineProblem(
            "feature_num mismatch",
            f"feature_num is {num} but the list has {len(entries)} entries "
            "(truncated or broken line?)",
        )
    out["entries"] = entries
    return out


def explain(line: bytes, kind: str) -> LineProblem:
    """The problem of a line the block parser rejected."""
    try:
        parse_line(line, kind)
    except LineProblem as p:
        return p
    # Both parsers implement the same grammar (tests/test_fuzz.py checks it); reaching this
    # would be a bug, still reported rather than passed through.
    return LineProblem("malformed line", "malformed line (rejected by the block parser)")


# ---- block parser -----------------------------------------------------------------------------

#: Every byte a valid line may hold besides the separators ``\x02`` and ``\x03``.
_ALLOWED = b"0123456789abcdefABCDEF_.+-,\x01"
#: ``translate`` deletes these, leaving the signature: ``\x02``, ``\x03``, newlines, stray bytes.
_SIG_DELETE = _ALLOWED
#: Entries become CSV rows ``field\x03id\x03value``.
_TO_ROWS = bytes.maketrans(b"\x01\x02", b"\n\x03")
_FIELD_VALUES = pa.array(FIELD_NAMES, pa.string())
_HEX = np.full(256, 255, np.uint8)
_HEX[48:58] = np.arange(10)
_HEX[97:103] = np.arange(10, 16)
_HEX[65:71] = np.arange(10, 16)
_REFERENCE_LINES = 4  # pieces of a block with a bad line this short go line by line
_READ = pacsv.ReadOptions(column_names=["head", "id", "value"], use_threads=False)
_PARSE = pacsv.ParseOptions(
    delimiter="\x03", quote_char=False, escape_char=False, double_quote=False,
    newlines_in_values=False, ignore_empty_lines=False,
)  # fmt: skip
_CONVERT = pacsv.ConvertOptions(
    column_types={"head": pa.string(), "id": pa.uint64(), "value": pa.float64()},
    null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False,
)  # fmt: skip


@dataclasses.dataclass
class Block:
    """Parsed lines.

    Attributes:
      n: number of lines.
      ok: [n] lines that parsed; the other per-line arrays are meaningful only for these.
      key: [n] uint64 common-feature key.
      sample_id, click, conversion: [n] (skeleton lines only).
      e_line, e_field, e_id, e_w: the feature entries of the ok lines in file order: line,
        field index into ``FIELD_NAMES`` (-1: a well-formed field id that is not an Ali-CCP field),
        raw feature id, weight.
      unknown_fields: unknown field token → number of entries (ignored, and reported).
      line_start, line_end: [n] byte span of each line in the data (without the newline); only
        when some line is bad (None otherwise).
    """

    n: int
    ok: np.ndarray
    key: np.ndarray
    e_line: np.ndarray
    e_field: np.ndarray
    e_id: np.ndarray
    e_w: np.ndarray
    unknown_fields: dict[str, int]
    sample_id: np.ndarray | None = None
    click: np.ndarray | None = None
    conversion: np.ndarray | None = None
    line_start: np.ndarray | None = None
    line_end: np.ndarray | None = None


_patterns: dict[int, bytes] = {}


def _signature_ok(sig: bytes) -> np.ndarray | None:
    """Entries per line from a signature, or None if it is not ``((\\x02\\x03)+\\n)*``."""
    s = np.frombuffer(sig, np.uint8)
    nl = np.flatnonzero(s == 10)
    if not len(nl) or nl[-1] != len(s) - 1:
        return None
    per_line = np.diff(nl, prepend=-1) - 1  # separator bytes of each line
    if (per_line % 2).any():
        return None
    pairs = per_line // 2
    body = sig.replace(b"\n", b"")
    total = len(body) // 2
    pattern = _patterns.get(total)
    if pattern is None:
        pattern = b"\x02\x03" * total
        if total < (1 << 22):
            _patterns.clear()
            _patterns[total] = pattern
    return pairs if body == pattern else None


def _fixed_width(arr: pa.Array, width: int) -> np.ndarray:
    """The bytes of a string array whose every value has ``width`` bytes, as [n, width]."""
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8)
    return data[offsets[0] : offsets[0] + width * len(arr)].reshape(len(arr), width)


def _decimal(arr: pa.Array) -> np.ndarray | None:
    """Decimal-integer strings below ``MAX_ID`` → int64, or None if any is not one."""
    if not pc.all(pc.ascii_is_decimal(arr)).as_py():
        return None
    try:
        v = pc.cast(arr, pa.uint64()).to_numpy()
    except pa.ArrowInvalid:  # beyond uint64
        return None
    return v.astype(np.int64) if (v < MAX_ID).all() else None


def _fields(tokens: pa.Array, unknown: dict[str, int], skip=None) -> np.ndarray | None:
    """Field tokens → index into FIELD_NAMES (-1 for a well-formed unknown id), or None.

    Rows where ``skip`` is set are not field tokens (their result is meaningless).
    """
    idx = pc.index_in(tokens, value_set=_FIELD_VALUES).fill_null(-1).to_numpy()
    miss = idx < 0
    if skip is not None:
        miss[skip] = False
    if miss.any():  # rare: check and count the unknown field ids
        names, counts = np.unique(
            np.asarray(tokens.filter(pa.array(miss)).to_pylist(), dtype=object), return_counts=True
        )
        for name, c in zip(names.tolist(), counts.tolist()):
            if not _FIELD_RE.fullmatch(name.encode()):
                return None
            unknown[name] = unknown.get(name, 0) + int(c)
    return idx.astype(np.int64)


def _parse_fast(data: bytes, kind: str) -> Block | None:
    """All lines of ``data`` (ending with a newline) through Arrow; None if any is not valid."""
    sig = data.translate(None, _SIG_DELETE)
    if b"\r" in sig:  # CRLF line ends (a lone \r is a stray byte)
        data = data.replace(b"\r\n", b"\n")
        sig = data.translate(None, _SIG_DELETE)
    pairs = _signature_ok(sig)
    if pairs is None or not pairs.all():  # empty feature lists take the reference path
        return None
    n = len(pairs)
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data.translate(_TO_ROWS)),
            read_options=_READ,
            parse_options=_PARSE,
            convert_options=_CONVERT,
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    starts = np.cumsum(pairs) - pairs
    if table.num_rows != int(pairs.sum()):
        return None
    head = table.column("head").combine_chunks()
    # The first row of each line starts with the line's leading columns; no other row may be
    # longer than a field id.
    long_rows = np.flatnonzero(pc.binary_length(head).to_numpy() > _MAX_FIELD_LEN)
    if len(long_rows) != n or (long_rows != starts).any():
        return None
    ncols = SKELETON_COLUMNS if kind == "skeleton" else COMMON_COLUMNS
    parts = pc.split_pattern(head.take(pa.array(starts)), ",")
    if (pc.list_value_length(parts).to_numpy() != ncols).any():
        return None
    flat = parts.flatten()
    cols = [flat.take(pa.array(np.arange(i, n * ncols, ncols))) for i in range(ncols)]
    ids = table.column("id").combine_chunks().to_numpy()
    w64 = table.column("value").combine_chunks().to_numpy()
    if len(ids) and (ids.max() >= MAX_ID or not (np.abs(w64) <= _FLOAT32_MAX).all()):
        return None
    key_col, fnum_col = (cols[3], cols[4]) if kind == "skeleton" else (cols[0], cols[1])
    fnum = _decimal(fnum_col)
    if fnum is None or (fnum != pairs).any():
        return None
    if (pc.binary_length(key_col).to_numpy() != 16).any():
        return None
    nib = _HEX[_fixed_width(key_col, 16)]
    if (nib == 255).any():
        return None
    key = np.zeros(n, np.uint64)
    for j in range(16):
        key = (key << np.uint64(4)) | nib[:, j].astype(np.uint64)
    extra = {}
    if kind == "skeleton":
        sid = _decimal(cols[0])
        if sid is None:
            return None
        labels = []
        for c in (cols[1], cols[2]):
            one = pc.equal(c, "1").to_numpy(zero_copy_only=False)
            if not (one | pc.equal(c, "0").to_numpy(zero_copy_only=False)).all():
                return None
            labels.append(one.astype(np.int8))
        extra = {"sample_id": sid, "click": labels[0], "conversion": labels[1]}
    unknown: dict[str, int] = {}
    field = _fields(head, unknown, starts)  # the first row of each line is set below
    first = _fields(cols[-1], unknown)
    if field is None or first is None:
        return None
    field[starts] = first
    return Block(
        n=n,
        ok=np.ones(n, bool),
        key=key,
        e_line=np.repeat(np.arange(n, dtype=np.int64), pairs),
        e_field=field,
        e_id=ids.astype(np.int64),
        e_w=w64.astype(np.float32),
        unknown_fields=unknown,
        **extra,
    )


def _from_reference(line: bytes, kind: str) -> Block:
    """One line through :func:`parse_line` (ok or not) as a one-line block."""
    try:
        ref = parse_line(line, kind)
    except LineProblem:
        ref = None
    unknown: dict[str, int] = {}
    entries = []
    if ref is not None:
        for f, i, v in ref["entries"]:
            if f not in FIELD_INDEX:
                unknown[f] = unknown.get(f, 0) + 1
            entries.append((FIELD_INDEX.get(f, -1), i, v))
    e = np.array(entries, np.float64).reshape(-1, 3)
    extra = {}
    if kind == "skeleton":
        get = (lambda k: ref[k]) if ref is not None else (lambda k: 0)
        extra = {
            "sample_id": np.array([get("sample_id")], np.int64),
            "click": np.array([get("click")], np.int8),
            "conversion": np.array([get("conversion")], np.int8),
        }
    return Block(
        n=1,
        ok=np.array([ref is not None]),
        key=np.array([ref["key"] if ref is not None else 0], np.uint64),
        e_line=np.zeros(len(entries), np.int64),
        e_field=e[:, 0].astype(np.int64),
        e_id=np.array([x[1] for x in entries], np.int64),
        e_w=np.array([x[2] for x in entries], np.float64).astype(np.float32),
        unknown_fields=unknown,
        **extra,
    )


def parse_block(data: bytes, kind: str) -> Block:
    """Parses complete lines (the data ends with ``\\n``) of a ``skeleton`` or ``common`` file.

    Every line is either valid (``ok``) or rejected; :func:`bad_line_problems` says why.
    """
    if not data:
        return _empty_block(kind)
    blk = _parse_fast(data, kind)
    if blk is not None:
        return blk
    # Some line is bad: halve until the pieces parse, down to single lines for the reference.
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    parts: list[Block] = []

    def parse(a: int, z: int) -> None:
        if z - a <= _REFERENCE_LINES:
            parts.extend(_from_reference(data[starts[i] : ends[i]], kind) for i in range(a, z))
            return
        piece = _parse_fast(data[starts[a] : ends[z - 1] + 1], kind)
        if piece is not None:
            parts.append(piece)
            return
        mid = (a + z) // 2
        parse(a, mid)
        parse(mid, z)

    mid = len(ends) // 2
    parse(0, mid)
    parse(mid, len(ends))
    blk = concat_blocks(parts, kind)
    blk.line_start, blk.line_end = starts, ends
    return blk


def _empty_block(kind: str) -> Block:
    z = np.zeros(0, np.int64)
    extra = {}
    if kind == "skeleton":
        extra = {"sample_id": z, "click": z.astype(np.int8), "conversion": z.astype(np.int8)}
    return Block(
        n=0, ok=np.zeros(0, bool), key=z.astype(np.uint64), e_line=z, e_field=z, e_id=z,
        e_w=z.astype(np.float32), unknown_fields={}, **extra,
    )  # fmt: skip


def concat_blocks(parts: list[Block], kind: str) -> Block:
    """Consecutive blocks as one (line indices shifted; spans dropped)."""
    if len(parts) == 1:
        return dataclasses.replace(parts[0], line_start=None, line_end=None)
    offsets = np.cumsum([0] + [p.n for p in parts[:-1]])
    unknown: dict[str, int] = {}
    for p in parts:
        for k, v in p.unknown_fields.items():
            unknown[k] = unknown.get(k, 0) + v

    def cat(name):
        return np.concatenate([getattr(p, name) for p in parts])

    extra = {}
    if kind == "skeleton":
        extra = {k: cat(k) for k in ("sample_id", "click", "conversion")}
    return Block(
        n=int(sum(p.n for p in parts)),
        ok=cat("ok"),
        key=cat("key"),
        e_line=np.concatenate([p.e_line + o for p, o in zip(parts, offsets)]),
        e_field=cat("e_field"),
        e_id=cat("e_id"),
        e_w=cat("e_w"),
        unknown_fields=unknown,
        **extra,
    )


def with_spans(block: Block, data: bytes) -> Block:
    """Sets the block's line spans (the fast path leaves them out) from its data."""
    if block.line_start is None:
        ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        block.line_start = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        block.line_end = ends
    return block


def bad_line_problems(block: Block, data: bytes, kind: str, *, unterminated: bool = False):
    """``[(line index, LineProblem)]`` for every line the block parser rejected.

    With ``unterminated`` the block's last line had no newline in the file (it was added for
    parsing): that line is reported as truncated.
    """
    out = []
    if not block.ok.all():
        with_spans(block, data)
    for i in np.flatnonzero(~block.ok).tolist():
        if unterminated and i == block.n - 1:
            p = LineProblem(
                "truncated last line", "truncated last line (no newline at the end of the file)"
            )
        else:
            p = explain(bytes(data[block.line_start[i] : block.line_end[i]]), kind)
        out.append((i, p))
    return out


# ---- streaming -------------------------------------------------------------------------------


def check_text_start(path: str, head: bytes) -> None:
    """Whole-file problems that no skipping can fix: an empty file or binary data."""
    if not head:
        raise DataError(path, 1, "empty file (no lines)")
    z = head.find(b"\0")
    if z >= 0:
        line = head.count(b"\n", 0, z) + 1
        raise DataError(path, line, f"not a text file: NUL byte at offset {z}")


def _count_lines(f, end: int) -> int:
    """Newlines in the first ``end`` bytes (for an error message only)."""
    f.seek(0)
    n, left = 0, end
    while left > 0:
        chunk = f.read(min(left, 1 << 24))
        if not chunk:
            break
        n += chunk.count(b"\n")
        left -= len(chunk)
    return n


def plan_blocks(path: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """Yields ``(offset, length, unterminated)`` of blocks of whole lines of about ``chunk_bytes``.

    Reads only a small window around each block boundary, so a reader process can fetch and parse
    the block itself. ``unterminated`` marks a last block whose final line has no newline.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        check_text_start(path, f.read(1 << 16))
        off = 0
        while off < size:
            target = off + chunk_bytes
            if target >= size:
                f.seek(size - 1)
                yield off, size - off, f.read(1) != b"\n"
                return
            cut = -1
            look = target
            while cut < 0 and look > off:  # the last newline before the target
                w0 = max(off, look - (1 << 16))
                f.seek(w0)
                i = f.read(look - w0).rfind(b"\n")
                cut = w0 + i if i >= 0 else -1
                look = w0
            if cut < 0:  # a line longer than the block: the next newline after it
                f.seek(target)
                rest = f.read(MAX_LINE_BYTES)
                i = rest.find(b"\n")
                if i < 0:
                    if target + len(rest) >= size:
                        yield off, size - off, True
                        return
                    raise DataError(
                        path,
                        _count_lines(f, off) + 1,
                        f"line longer than {MAX_LINE_BYTES} bytes (not a newline-separated text "
                        "file?)",
                    )
                cut = target + i
            yield off, cut + 1 - off, False
            off = cut + 1


# ---- per-row reduction ------------------------------------------------------------------------


@dataclasses.dataclass
class Reduced:
    """Per row: the kept entry of every field and the bags of the multi-valued fields.

    Attributes:
      raw: [n, F] int64 raw id of the kept entry, -1 where the field is absent.
      w: [n, F] float32 weight of the kept entry (0 where absent).
      bags: bag slot (index into BAG_FIELDS) → (ids [E] int64, weights [E] float32, lengths [n]
        int32): each row's at most ``max_bag_len`` entries, highest weight first (file order on
        ties), rows back to back; only slots that occur.
      repeats: [F] extra entries of single-valued fields (dropped, counted).
      truncated: [NB] bag entries beyond Lb (dropped, counted).
    """

    raw: np.ndarray
    w: np.ndarray
    bags: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    repeats: np.ndarray
    truncated: np.ndarray


def padded(bag: tuple[np.ndarray, np.ndarray, np.ndarray], width: int, fill=0):
    """A ragged bag ``(ids, weights, lengths)`` as ([n, width] ids, [n, width] weights)."""
    ids, w, lengths = bag
    n = len(lengths)
    out_ids = np.full((n, width), fill, ids.dtype)
    out_w = np.zeros((n, width), w.dtype)
    if len(ids):
        row = np.repeat(np.arange(n), lengths)
        col = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out_ids[row, col] = ids
        out_w[row, col] = w
    return out_ids, out_w


def _desc_order_key(line: np.ndarray, w: np.ndarray) -> np.ndarray:
    """uint64 keys that sort by line, then float32 weight descending (IEEE bit trick)."""
    bits = w.astype(np.float32).view(np.uint32)
    if (bits >> np.uint32(31)).any():  # negative weights: flip them so the order holds
        bits = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    else:
        bits = bits | np.uint32(0x80000000)
    return (line.astype(np.uint64) << np.uint64(32)) | (~bits).astype(np.uint64)


def _sorted_groups(line: np.ndarray, w: np.ndarray):
    """Entries ordered by (line, weight descending), stable: (order or None when the entries
    already are, sorted lines, group starts, group sizes, rank within the group)."""
    key = _desc_order_key(line, w)
    order = None
    if len(key) > 1 and (key[1:] < key[:-1]).any():
        order = np.argsort(key, kind="stable")
        line = line[order]
    new = np.empty(len(line), bool)
    new[:1] = True
    np.not_equal(line[1:], line[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    sizes = np.diff(starts, append=len(line))
    rank = np.arange(len(line)) - np.repeat(starts, sizes)
    return order, line, starts, sizes, rank


def reduce_entries(n: int, line, field, ids, w, max_bag_len: int) -> Reduced:
    """Per (row, field): the highest-weight entry (first on ties); bags of the bag fields."""
    F, Lb = NUM_FIELDS, max_bag_len
    raw = np.full(n * F, -1, np.int64)
    wout = np.zeros(n * F, np.float32)
    repeats = np.zeros(F, np.int64)
    truncated = np.zeros(NUM_BAGS, np.int64)
    known = field >= 0
    if not known.all():
        line, field, ids, w = line[known], field[known], ids[known], w[known]
    slot = _BAG_SLOT[field]
    is_bag = slot >= 0

    # Single-valued fields: normally one entry per (row, field), scattered directly; repeated
    # ones (rare) are sorted to keep the highest weight.
    single = np.flatnonzero(~is_bag)
    ks = line[single] * F + field[single]
    count = np.bincount(ks, minlength=n * F)
    if count.max(initial=0) > 1:
        rep = count[ks] > 1
        r = single[rep]
        order, _, starts, sizes, _ = _sorted_groups(line[r] * F + field[r], w[r])
        first = r[starts] if order is None else r[order[starts]]
        repeats += np.bincount(field[first], weights=sizes - 1, minlength=F).astype(np.int64)
        single = np.concatenate([single[~rep], first])
        ks = line[single] * F + field[single]
    raw[ks] = ids[single]
    wout[ks] = w[single]

    bags = {}
    present = np.bincount(slot[is_bag], minlength=NUM_BAGS)
    for s in np.flatnonzero(present).tolist():
        sel = np.flatnonzero(slot == s)
        f = FIELD_INDEX[BAG_FIELDS[s]]
        order, lines, starts, sizes, rank = _sorted_groups(line[sel], w[sel])
        if order is not None:
            sel = sel[order]
        g = sel[starts]  # the kept entry of each (row, field)
        raw[lines[starts] * F + f] = ids[g]
        wout[lines[starts] * F + f] = w[g]
        truncated[s] = int(np.maximum(sizes - Lb, 0).sum())
        if Lb:
            take = sel[rank < Lb] if truncated[s] else sel
            b_len = np.zeros(n, np.int32)
            b_len[lines[starts]] = np.minimum(sizes, Lb)
            bags[s] = (ids[take], w[take], b_len)
    return Reduced(
        raw=raw.reshape(n, F), w=wout.reshape(n, F), bags=bags, repeats=repeats,
        truncated=truncated,
    )  # fmt: skip
