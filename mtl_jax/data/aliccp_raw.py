"""Ali-CCP raw format: a vectorised streaming parser and a writer of raw files at any size.

The format (``shared/docs/aliccp-format.md``): ``sample_skeleton_{train,test}.csv`` has one
impression per line, ``sample_id,click,conversion,common_feature_index,feature_num,feature_list``;
``common_features_{train,test}.csv`` has one (user, context) group per line,
``common_feature_index,feature_num,feature_list``. A feature list is
``field\\x02id\\x03value`` entries joined by ``\\x01``. No header, ``\\n`` line ends.

Parsing is done a block of complete lines at a time with numpy, in pieces of ~256 KB so that the
temporaries stay in the CPU cache: one scan finds every structural byte (``\n , \x01 \x02
\x03``), the structure is checked on that short sequence alone, and every token of ≤ 8 bytes (all
real field ids, feature ids and weights) is read as one unaligned 8-byte word and converted with
a few SWAR (SIMD-within-a-register) integer operations: a digit test, three multiplies for the
value, a zero-byte test to find a decimal point. There is no per-line or per-entry Python except
for rare tokens (longer ones, ``1e-05``), which go through ``float``. Every line is validated:
column count, labels in {0, 1}, a 16-hex-digit key, well-formed entries, ``feature_num`` equal to
the number of entries (which catches most truncated lines), weights finite as float32. A bad line
is reported by :func:`parse_line`, the pure-Python reference parser, which names the exact
problem; ``tests/test_fuzz.py`` checks that both accept the same lines with the same values.

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
import math
import os
import re

import numpy as np

from mtl_jax.data.errors import BadLines, DataError
from mtl_jax.data.synthetic import DENSE, FIELDS

# ---- layout -----------------------------------------------------------------------------------

FIELD_NAMES: tuple[str, ...] = tuple(FIELDS)  # the 23 fields in torch-rechub's column order
NUM_FIELDS = len(FIELD_NAMES)
FIELD_INDEX = {f: i for i, f in enumerate(FIELD_NAMES)}
#: Multi-valued fields, kept as weighted bags besides their single id.
BAG_FIELDS: tuple[str, ...] = ("210", "853", "109_14", "110_14", "127_14", "150_14")
NUM_BAGS = len(BAG_FIELDS)
#: The field whose kept-entry weight is each dense column (``D109_14`` → ``109_14``).
DENSE_FIELDS: tuple[str, ...] = tuple(d[1:] for d in DENSE)
#: Behaviour bag → the item field of the same kind (the DIN target of a sequence built from it).
SEQUENCE_TARGETS = {"109_14": "206", "110_14": "207", "127_14": "216", "150_14": "210"}

SKELETON_COLUMNS = 6
COMMON_COLUMNS = 3
MAX_LINE_BYTES = 16 << 20  # a longer "line" means the file is not newline-separated text
DEFAULT_CHUNK_BYTES = 8 << 20

_BAG_SLOT = np.full(NUM_FIELDS, -1, np.int64)
for _b, _f in enumerate(BAG_FIELDS):
    _BAG_SLOT[FIELD_INDEX[_f]] = _b
_DIGIT = np.full(256, 255, np.uint8)
_DIGIT[48:58] = np.arange(10)
_HEX = _DIGIT.copy()
_HEX[97:103] = np.arange(10, 16)
_HEX[65:71] = np.arange(10, 16)
_FIELD_CHAR = np.zeros(256, bool)
_FIELD_CHAR[48:58] = True
_FIELD_CHAR[95] = True  # "_"
_MAX_FIELD_LEN = 8
_MAX_INT_DIGITS = 18  # < 2**63


def _field_code(name: bytes) -> int:
    """A field token's bytes packed little-endian into a uint64 (tokens are ≤ 8 bytes)."""
    return int.from_bytes(name.ljust(8, b"\0"), "little")


_KNOWN_CODES = np.array([_field_code(f.encode()) for f in FIELD_NAMES], np.uint64)

# ---- reference parser (pure Python): names the problem of a bad line --------------------------

_ID_RE = re.compile(rb"[0-9]{1,18}")
_FIELD_RE = re.compile(rb"[0-9_]{1,8}")
_KEY_RE = re.compile(rb"[0-9a-fA-F]{16}")
_FLOAT_RE = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


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

    The reference for the vectorised parser: both accept exactly the same lines and produce the
    same values. Returns ``{"key", "entries": [(field, id, value)], ...}`` plus ``sample_id``,
    ``click``, ``conversion`` for the skeleton. Raises :class:`LineProblem` for a bad line.
    """
    ncols = SKELETON_COLUMNS if kind == "skeleton" else COMMON_COLUMNS
    cols = line.split(b",")
    if len(cols) != ncols:
        raise LineProblem(
            "wrong column count",
            f"expected {ncols} comma-separated columns, found {len(cols)}",
        )
    out: dict = {}
    if kind == "skeleton":
        sid, click, conv, key, fnum, flist = cols
        if not _ID_RE.fullmatch(sid):
            raise LineProblem("bad sample_id", f"sample_id {_show(sid)} is not an integer")
        out["sample_id"] = int(sid)
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
    if not _ID_RE.fullmatch(fnum):
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
            if not _ID_RE.fullmatch(fid):
                raise LineProblem(
                    "bad feature id",
                    f"feature entry {i + 1}: feature id {_show(fid)} is not an integer",
                )
            v = _value(val)
            if v is None:
                raise LineProblem(
                    "bad feature value",
                    f"feature entry {i + 1}: value {_show(val)} is not a finite float32 number",
                )
            entries.append((field.decode(), int(fid), v))
    if int(fnum) != len(entries):
        raise LineProblem(
            "feature_num mismatch",
            f"feature_num is {int(fnum)} but the list has {len(entries)} entries "
            "(truncated or broken line?)",
        )
    out["entries"] = entries
    return out


def explain(line: bytes, kind: str) -> LineProblem:
    """The problem of a line the vectorised parser rejected."""
    try:
        parse_line(line, kind)
    except LineProblem as p:
        return p
    # Both parsers implement the same grammar (tests/test_fuzz.py checks it); reaching this
    # would be a bug, still reported rather than passed through.
    return LineProblem("malformed line", "malformed line (rejected by the block parser)")


# ---- hashing ----------------------------------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, vectorised (a bijection on uint64; wraps on overflow)."""
    x = np.asarray(x).astype(np.uint64) + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def unit_hash(values: np.ndarray, seed: int) -> np.ndarray:
    """A seeded hash of integers to [0, 1): the same value always lands in the same place."""
    s = mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], np.uint64))
    h = mix64(mix64(np.asarray(values).astype(np.uint64)) ^ s)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _perfect_hash(codes: np.ndarray) -> tuple[np.uint64, np.ndarray, np.ndarray]:
    """A multiplier whose top 6 bits of ``code * m`` separate the field codes, and its tables."""
    for k in range(1, 1 << 16):
        m = mix64(np.array([k], np.uint64))[0] | np.uint64(1)
        slots = (codes * m) >> np.uint64(58)
        if len(np.unique(slots)) == len(codes):
            index = np.full(64, -1, np.int64)
            code = np.zeros(64, np.uint64)
            index[slots] = np.arange(len(codes))
            code[slots] = codes
            return m, index, code
    raise RuntimeError("no perfect hash for the field ids")  # unreachable for 23 codes


_PH_MULT, _PH_INDEX, _PH_CODE = _perfect_hash(_KNOWN_CODES)

# ---- vectorised block parser ------------------------------------------------------------------

_PAD = 8  # spaces around a block: 8-byte reads never leave the buffer
_SUB_BYTES = 256 << 10  # parse in pieces that keep the temporaries in cache
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ZEROS8 = np.uint64(0x3030303030303030)  # "00000000"
_DOTS8 = np.uint64(0x2E2E2E2E2E2E2E2E)  # "........"
_ONE = np.uint64(int.from_bytes(b"1.0", "little"))
_HI8 = np.uint64(0x8080808080808080)
_ONES8 = np.uint64(0x0101010101010101)
_LO7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_ADD76 = np.uint64(0x7676767676767676)
_POW10 = 10.0 ** np.arange(8)
_scratch: bytearray | None = None  # this process's read buffer (see Buffer.read)


class Buffer:
    """Lines padded with spaces, readable 8 bytes at any offset as one uint64.

    Positions are offsets into the padded buffer: the data's byte ``i`` is at ``i + _PAD``.
    """

    def __init__(self, data: bytes):
        pad = b" " * _PAD
        self._set(pad + bytes(data) + pad)

    def _set(self, raw) -> None:
        self.raw = raw
        self.end = len(raw) - _PAD  # one past the last data byte
        self.b = np.frombuffer(raw, np.uint8)
        # Element i = bytes i..i+7 (little-endian): an unaligned, overlapping view.
        self.u64 = np.ndarray((len(raw) - 7,), np.uint64, buffer=raw, strides=(1,))

    @classmethod
    def read(cls, fd: int, offset: int, length: int, *, add_newline: bool = False) -> Buffer:
        """``length`` bytes at ``offset`` of an open file, read into this process's scratch
        buffer (valid until the next ``read``): no allocation or copy per block."""
        global _scratch
        need = length + 2 * _PAD + 1
        if _scratch is None or len(_scratch) < need:
            _scratch = bytearray(need + need // 4)
        mv = memoryview(_scratch)
        mv[:_PAD] = b" " * _PAD
        got = os.preadv(fd, [mv[_PAD : _PAD + length]], offset)
        if got != length:
            raise OSError(f"short read: {got} of {length} bytes at offset {offset}")
        if add_newline:
            mv[_PAD + length] = 10
            length += 1
        mv[_PAD + length : 2 * _PAD + length] = b" " * _PAD
        self = cls.__new__(cls)
        self._set(mv[: 2 * _PAD + length])
        return self

    def line(self, start: int, end: int) -> bytes:
        return bytes(self.raw[start:end])


def _shl(x, n: np.ndarray) -> np.ndarray:
    """``x << n`` on uint64 (numpy gives 0 for shifts of 64 or more)."""
    return np.left_shift(np.uint64(x), n.astype(np.uint64))


_L = np.arange(9, dtype=np.uint64)
#: [length 0..8] → mask of the low / high ``length`` bytes of a little-endian 8-byte word.
_LOW_MASK = ~_shl(_ALL, 8 * _L)
_TOP_MASK = ~(_shl(1, 8 * (8 - _L)) - np.uint64(1))
_TOP_MASK[0] = 0


def _clip8(length: np.ndarray) -> np.ndarray:
    return np.clip(length, 0, 8)


def _digit_lanes_ok(x: np.ndarray) -> np.ndarray:
    """True where every byte lane of ``x`` (ASCII minus '0', masked) is a digit 0..9.

    ``lane + 0x76`` reaches the high bit exactly for lanes >= 10; a carry out of a lane only
    happens from a lane that is already invalid, so the token-level answer is exact.
    """
    return ((x + _ADD76) | x) & _HI8 == 0


def _zero_lanes(y: np.ndarray) -> np.ndarray:
    """The high bit of every byte lane of ``y`` that is zero (exact, no false positives)."""
    return ~(((y & _LO7) + _LO7) | y | _LO7)


def _swar8(x: np.ndarray) -> np.ndarray:
    """Value of 8 digit lanes (lane 0 = most significant digit), three multiplies per token."""
    x = (x * np.uint64(10) + (x >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    x = (x * np.uint64(100) + (x >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    return (x * np.uint64(10000) + (x >> np.uint64(32))) & np.uint64(0xFFFFFFFF)


def _uints_long(buf: np.ndarray, start: np.ndarray, end: np.ndarray):
    """Integers of 9..18 digits (rare: the 8-byte path covers real ids): (int64, ok)."""
    length = end - start
    width = int(min(int(length.max()), _MAX_INT_DIGITS))
    idx = end[None, :] - width + np.arange(width, dtype=np.int64)[:, None]
    valid = idx >= start[None, :]
    d = _DIGIT[buf[np.maximum(idx, 0)]]
    ok = ~((d == 255) & valid).any(axis=0) & (length <= _MAX_INT_DIGITS)
    d[~valid | (d == 255)] = 0
    val = d[0].astype(np.int64)
    for k in range(1, width):
        val *= 10
        val += d[k]
    return val, ok


def parse_uints(buf: Buffer, start: np.ndarray, end: np.ndarray):
    """Non-negative decimal integers of 1..18 digits: (int64 values, ok mask).

    Tokens of ≤ 8 digits (every real id) are one unaligned 8-byte read, a digit test and three
    multiplies (SWAR); longer ones take a byte-matrix path. Positions are ≥ ``_PAD``.
    """
    length = end - start
    x = (buf.u64[end - 8] ^ _ZEROS8) & _TOP_MASK[_clip8(length)]
    ok = (length >= 1) & (length <= 8) & _digit_lanes_ok(x)
    val = _swar8(x).astype(np.int64)
    long = np.flatnonzero(length > 8)
    if len(long):
        val[long], ok[long] = _uints_long(buf.b, start[long], end[long])
    return val, ok


def parse_decimals(buf: Buffer, start: np.ndarray, end: np.ndarray):
    """Finite decimal numbers: (float64 values, ok mask).

    ``1.0`` (every categorical entry) is one comparison. Other plain decimals of ≤ 8 bytes
    (``0.69315``) are read as one 8-byte word: the dot's lane is found with a zero-byte test and
    removed by shifting the integer digits up one lane, the digits are converted as an integer
    and divided by a power of ten (exact operands, so the result is correctly rounded, as
    ``float``). Other tokens (exponents, signs, long or broken ones) go through the reference
    rule one at a time.
    """
    length = end - start
    w = buf.u64[end - 8]
    out = np.ones(len(start), np.float64)
    ok = (length == 3) & ((w >> np.uint64(40)) == _ONE)
    rest = np.flatnonzero(~ok)
    if not len(rest):
        return out, ok
    length, w = length[rest], w[rest]
    keep = _TOP_MASK[_clip8(length)]
    dots = _zero_lanes((w ^ _DOTS8) & keep) & keep & _HI8  # the high bit of each '.' lane
    ndots = np.bitwise_count(dots)
    one = ndots == 1
    bit = np.frexp(np.where(one, dots, 1).astype(np.float64))[1] - 1
    j = np.where(one, (bit - 7) // 8, 0).astype(np.uint64)  # lane of the dot
    x = (w ^ _ZEROS8) & keep
    lo = _shl(1, 8 * j) - np.uint64(1)  # lanes before the dot
    hi = ~((lo << np.uint64(8)) | np.uint64(0xFF))  # lanes after it
    x = np.where(one, ((x & lo) << np.uint64(8)) | (x & hi), x)
    fast = (length >= 1) & (length <= 8) & (ndots <= 1) & (length > ndots) & _digit_lanes_ok(x)
    frac = np.where(one, 7 - j.astype(np.int64), 0)
    out[rest] = _swar8(x).astype(np.float64) / _POW10[frac]
    ok[rest] = fast
    for i in rest[~fast].tolist():
        v = _value(buf.line(start[i], end[i]))
        if v is not None:
            out[i] = v
            ok[i] = True
    return out, ok


def _hex8(c: np.ndarray):
    """8 hex digits (either case) in a word → (uint64 value < 2**32, ok)."""
    # Nibble candidate: low 4 bits, plus 9 for letters (bit 6 set); exact only for valid chars,
    # so each lane is checked by re-encoding its nibble and comparing.
    nib = (c & np.uint64(0x0F0F0F0F0F0F0F0F)) + ((c >> np.uint64(6)) & _ONES8) * np.uint64(9)
    ge10 = (nib + _ADD76) & _HI8  # nibbles are ≤ 24: no carries
    le9 = ~ge10 & _HI8
    letter = ge10 & ~((nib + np.uint64(0x7070707070707070)) & _HI8)  # 10..15
    ok = (
        (_zero_lanes(c ^ (nib + _ZEROS8)) & le9)
        | (_zero_lanes(c ^ (nib + np.uint64(0x5757575757575757))) & letter)  # 'a' - 10
        | (_zero_lanes(c ^ (nib + np.uint64(0x3737373737373737))) & letter)  # 'A' - 10
    ) == _HI8
    x = ((nib << np.uint64(4)) | (nib >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    x = ((x << np.uint64(8)) | (x >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    x = ((x << np.uint64(16)) | (x >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return x, ok


def parse_keys(buf: Buffer, start: np.ndarray, end: np.ndarray):
    """16-hex-digit common-feature keys: (uint64 values, ok mask)."""
    last = len(buf.u64) - 1  # a short bad token near the end: the reads stay in the buffer
    hi, ok_hi = _hex8(buf.u64[np.minimum(start, last)])
    lo, ok_lo = _hex8(buf.u64[np.minimum(start + 8, last)])
    return (hi << np.uint64(32)) | lo, ((end - start) == 16) & ok_hi & ok_lo


def _labels(buf: Buffer, start: np.ndarray, end: np.ndarray):
    """A one-byte ``0``/``1`` label: (int8 values, ok mask)."""
    b = buf.b[start]
    ok = ((end - start) == 1) & ((b == 48) | (b == 49))
    return (b == 49).astype(np.int8), ok


def _field_ids(buf: Buffer, start: np.ndarray, end: np.ndarray):
    """Field tokens → (index into FIELD_NAMES or -1 for a well-formed unknown id, code, ok)."""
    length = end - start
    # The token's bytes are the low lanes of the word at its start.
    code = buf.u64[start] & _LOW_MASK[_clip8(length)]
    ok = (length >= 1) & (length <= _MAX_FIELD_LEN)
    slot = (code * _PH_MULT) >> np.uint64(58)
    known = (_PH_CODE[slot] == code) & ok
    field = np.where(known, _PH_INDEX[slot], -1)
    unk = np.flatnonzero(ok & ~known)
    if len(unk):  # rare: check the characters of unknown ids
        chars = np.ascontiguousarray(code[unk]).view(np.uint8).reshape(-1, 8)
        lanes = np.arange(8)[None, :] < length[unk, None]
        ok[unk] = (_FIELD_CHAR[chars] | ~lanes).all(axis=1)
    return field, code, ok


@dataclasses.dataclass
class Block:
    """Parsed lines.

    Attributes:
      n: number of lines.
      ok: [n] lines that parsed; the other per-line arrays are meaningful only for these.
      line_start, line_end: [n] byte span of each line in the data (without the newline).
      key: [n] uint64 common-feature key.
      sample_id, click, conversion: [n] (skeleton lines only).
      e_line, e_field, e_id, e_w: the feature entries of the ok lines in file order: line,
        field index into ``FIELD_NAMES`` (-1: a well-formed field id that is not an Ali-CCP field),
        raw feature id, weight.
      unknown_fields: unknown field token → number of entries (ignored, and reported).
    """

    n: int
    ok: np.ndarray
    line_start: np.ndarray
    line_end: np.ndarray
    key: np.ndarray
    e_line: np.ndarray
    e_field: np.ndarray
    e_id: np.ndarray
    e_w: np.ndarray
    unknown_fields: dict[str, int]
    sample_id: np.ndarray | None = None
    click: np.ndarray | None = None
    conversion: np.ndarray | None = None


def _last_newline(b: np.ndarray, lo: int, hi: int) -> int:
    """Position just after the last newline in ``b[lo:hi]``, or -1."""
    width = 1 << 12
    while True:
        w0 = max(lo, hi - width)
        nls = np.flatnonzero(b[w0:hi] == 10)
        if len(nls):
            return w0 + int(nls[-1]) + 1
        if w0 == lo:
            return -1
        width *= 8


def _parse_range(buf: Buffer, lo: int, hi: int, kind: str) -> tuple[Block, int] | None:
    """Parses the complete lines in ``[lo, hi)``; returns the block and where the next begins.

    Structure is checked on the sequence of structural bytes alone: every ``\x02`` must sit
    between a ``\x01`` (or the line's last comma) and a ``\x03``, every ``\x03`` between a
    ``\x02`` and a ``\x01`` or the newline, every ``\x01`` between a ``\x03`` and a ``\x02``, and
    a line has exactly ``ncols - 1`` commas. Then entry ``k`` is simply the tokens between the
    structural bytes around its ``\x02``. This is the same grammar as :func:`parse_line`.
    """
    cut = _last_newline(buf.b, lo, hi)
    if cut < 0:
        return None
    ncols = SKELETON_COLUMNS if kind == "skeleton" else COMMON_COLUMNS
    seg = buf.b[lo:cut]
    # One scan finds every structural byte: \x01 \x02 \x03 \n and ','.
    pos = np.flatnonzero((seg <= 10) | (seg == 44))
    val = seg[pos]
    pos += lo
    is_nl = val == 10
    nl = pos[is_nl]
    n = len(nl)
    line_of = np.cumsum(is_nl)  # line of every non-newline structural byte
    ls = np.empty(n, np.int64)
    ls[:1] = lo
    ls[1:] = nl[:-1] + 1

    # Columns: exactly ncols - 1 commas per line.
    i_cm = np.flatnonzero(val == 44)
    cm_line = line_of[i_cm]
    ok = np.bincount(cm_line, minlength=n) == ncols - 1
    oi = np.flatnonzero(ok)
    commas = pos[i_cm[ok[cm_line]]].reshape(-1, ncols - 1)
    col_start = np.full((ncols, n), lo, np.int64)
    col_end = np.full((ncols, n), lo, np.int64)
    col_start[0, oi] = ls[oi]
    col_start[1:, oi] = commas.T + 1
    col_end[:-1, oi] = commas.T
    col_end[-1, oi] = nl[oi]

    # Neighbours in the structural sequence (padded with a sentinel at both ends).
    m = len(val)
    vpad = np.full(m + 3, 255, np.uint8)
    vpad[1 : m + 1] = val
    ppad = np.full(m + 3, lo, np.int64)
    ppad[1 : m + 1] = pos
    i1 = np.flatnonzero(val == 1)
    ok[line_of[i1[(vpad[i1] != 3) | (vpad[i1 + 2] != 2)]]] = False
    i3 = np.flatnonzero(val == 3)
    after = vpad[i3 + 2]
    ok[line_of[i3[(vpad[i3] != 2) | ((after != 1) & (after != 10))]]] = False
    i2 = np.flatnonzero(val == 2)
    prev, nxt, nxt2 = vpad[i2], vpad[i2 + 2], vpad[i2 + 3]
    e_ok = ((prev == 1) | (prev == 44)) & (nxt == 3) & ((nxt2 == 1) | (nxt2 == 10))
    start, p2, p3, end = ppad[i2] + 1, pos[i2], ppad[i2 + 2], ppad[i2 + 3]
    el = line_of[i2]
    ne = np.bincount(el, minlength=n)
    # A line without entries must have an empty list.
    ok &= (ne > 0) | (col_start[-1] == col_end[-1])

    e_field, code, f_ok = _field_ids(buf, start, p2)
    e_id, id_ok = parse_uints(buf, p2 + 1, p3)
    e_w, w_ok = parse_decimals(buf, p3 + 1, end)
    e_ok &= f_ok & id_ok & w_ok
    ok[el[~e_ok]] = False

    # Leading columns.
    fnum, fnum_ok = parse_uints(buf, col_start[-2], col_end[-2])
    ok &= fnum_ok & (fnum == ne)
    kcol = 3 if kind == "skeleton" else 0
    key, key_ok = parse_keys(buf, col_start[kcol], col_end[kcol])
    ok &= key_ok
    extra = {}
    if kind == "skeleton":
        sid, sid_ok = parse_uints(buf, col_start[0], col_end[0])
        click, c_ok = _labels(buf, col_start[1], col_end[1])
        conv, v_ok = _labels(buf, col_start[2], col_end[2])
        ok &= sid_ok & c_ok & v_ok
        extra = {"sample_id": sid, "click": click, "conversion": conv}

    keep = ok[el]
    if not keep.all():
        el, e_field, e_id, e_w, code = (a[keep] for a in (el, e_field, e_id, e_w, code))
    unknown: dict[str, int] = {}
    unk = e_field < 0
    if unk.any():
        codes, counts = np.unique(code[unk], return_counts=True)
        for c, k in zip(codes.tolist(), counts.tolist()):
            unknown[int(c).to_bytes(8, "little").rstrip(b"\0").decode()] = k
    block = Block(
        n=n,
        ok=ok,
        line_start=ls - _PAD,
        line_end=nl - _PAD,
        key=key,
        e_line=el,
        e_field=e_field,
        e_id=e_id,
        e_w=e_w.astype(np.float32),
        unknown_fields=unknown,
        **extra,
    )
    return block, cut


def parse_block(data: bytes | Buffer, kind: str, *, sub_bytes: int = _SUB_BYTES) -> Block:
    """Parses complete lines (the data ends with ``\\n``) of a ``skeleton`` or ``common`` file.

    Works through the data in pieces of about ``sub_bytes`` (whole lines), so that the
    temporaries of each piece stay in the CPU cache, and concatenates the results.
    """
    buf = data if isinstance(data, Buffer) else Buffer(data)
    parts = []
    lo = _PAD
    while lo < buf.end:
        width = sub_bytes
        while True:
            hi = min(lo + width, buf.end)
            got = _parse_range(buf, lo, hi, kind)
            if got is not None or hi == buf.end:
                break
            width *= 4  # a line longer than the piece
        if got is None:  # cannot happen for data ending with a newline
            raise ValueError("parse_block: data must end with a newline")
        parts.append(got[0])
        lo = got[1]
    return _concat_blocks(parts, kind)


def _concat_blocks(parts: list[Block], kind: str) -> Block:
    if len(parts) == 1:
        return parts[0]
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
        line_start=cat("line_start"),
        line_end=cat("line_end"),
        key=cat("key"),
        e_line=np.concatenate([p.e_line + o for p, o in zip(parts, offsets)]),
        e_field=cat("e_field"),
        e_id=cat("e_id"),
        e_w=cat("e_w"),
        unknown_fields=unknown,
        **extra,
    )


def bad_line_problems(block: Block, buf: Buffer | bytes, kind: str, *, unterminated: bool = False):
    """``[(line index, LineProblem)]`` for every line the block parser rejected.

    With ``unterminated`` the block's last line had no newline in the file (it was added for
    parsing): that line is reported as truncated.
    """
    data = buf.raw[_PAD:] if isinstance(buf, Buffer) else buf
    out = []
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
      bags: bag slot (index into BAG_FIELDS) → (ids [n, Lb] int64 (-1 = empty), weights
        [n, Lb] float32, lengths [n] int32), highest weight first; only slots that occur.
      repeats: [F] extra entries of single-valued fields (dropped, counted).
      truncated: [NB] bag entries beyond Lb (dropped, counted).
    """

    raw: np.ndarray
    w: np.ndarray
    bags: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    repeats: np.ndarray
    truncated: np.ndarray


def _desc_weight_bits(w: np.ndarray) -> np.ndarray:
    """uint64 keys that sort float32 weights in descending order (IEEE bit trick)."""
    bits = w.astype(np.float32).view(np.uint32)
    asc = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    return (~asc).astype(np.uint64)


def _groups(key: np.ndarray, w: np.ndarray):
    """Sorts entries by (key, descending weight), stable; returns (order, starts, sizes, rank)."""
    combo = (key.astype(np.uint64) << np.uint64(32)) | _desc_weight_bits(w)
    order = np.argsort(combo, kind="stable")  # near-sorted input: timsort is almost linear
    ks = key[order]
    new = np.ones(len(ks), bool)
    np.not_equal(ks[1:], ks[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, len(ks)))
    rank = np.arange(len(ks)) - np.repeat(starts, sizes)
    return order, starts, sizes, rank


def reduce_entries(n: int, line, field, ids, w, max_bag_len: int) -> Reduced:
    """Per (row, field): the highest-weight entry (first on ties); bags of the bag fields."""
    F, Lb = NUM_FIELDS, max_bag_len
    raw = np.full((n, F), -1, np.int64)
    wout = np.zeros((n, F), np.float32)
    raw_f, w_f = raw.reshape(-1), wout.reshape(-1)
    repeats = np.zeros(F, np.int64)
    truncated = np.zeros(NUM_BAGS, np.int64)
    known = field >= 0
    if not known.all():
        line, field, ids, w = line[known], field[known], ids[known], w[known]
    slot = _BAG_SLOT[field]
    key = line.astype(np.int64) * F + field

    # Single-valued fields: normally one entry per (row, field), scattered directly; repeated
    # ones (rare) are sorted to keep the highest weight.
    single = np.flatnonzero(slot < 0)
    ks = key[single]
    count = np.bincount(ks, minlength=n * F)
    rep = count[ks] > 1
    if rep.any():
        r = single[rep]
        order, starts, sizes, _ = _groups(key[r], w[r])
        first = r[order[starts]]
        repeats += np.bincount(field[first], weights=sizes - 1, minlength=F).astype(np.int64)
        single = np.concatenate([single[~rep], first])
        ks = key[single]
    raw_f[ks] = ids[single]
    w_f[ks] = w[single]

    bags = {}
    for s in np.unique(slot[slot >= 0]).tolist():
        sel = np.flatnonzero(slot == s)
        f = FIELD_INDEX[BAG_FIELDS[s]]
        order, starts, sizes, rank = _groups(line[sel], w[sel])
        o = sel[order]
        g = o[starts]  # the kept entry of each (row, field)
        raw_f[line[g] * F + f] = ids[g]
        w_f[line[g] * F + f] = w[g]
        truncated[s] = int(np.maximum(sizes - Lb, 0).sum())
        if Lb:
            take = rank < Lb
            b_ids = np.full((n, Lb), -1, np.int64)
            b_w = np.zeros((n, Lb), np.float32)
            b_ids[line[o[take]], rank[take]] = ids[o[take]]
            b_w[line[o[take]], rank[take]] = w[o[take]]
            b_len = np.zeros(n, np.int32)
            b_len[line[g]] = np.minimum(sizes, Lb)
            bags[s] = (b_ids, b_w, b_len)
    return Reduced(raw=raw, w=wout, bags=bags, repeats=repeats, truncated=truncated)


# ---- common-features index ---------------------------------------------------------------------


class CommonIndex:
    """Key → byte offset of every line of a common-features file (sorted arrays, one pass).

    The skeleton is grouped by key, so the join reads each common line once per group with one
    ``pread``: the file is never held in memory (the index costs 32 bytes per line).
    """

    def __init__(self, path: str, bad: BadLines, *, chunk_bytes=DEFAULT_CHUNK_BYTES, progress=None):
        self.path = path
        keys, offsets, lengths, lines = [], [], [], []
        fd = os.open(path, os.O_RDONLY)
        try:
            first_line = 1
            for off, length, unterminated in plan_blocks(path, chunk_bytes):
                buf = Buffer.read(fd, off, length, add_newline=unterminated)
                if progress is not None:
                    progress.update(length)
                nl = np.flatnonzero(buf.b == 10)
                ls = np.empty(len(nl), np.int64)
                ls[:1] = _PAD
                ls[1:] = nl[:-1] + 1
                comma = buf.b[np.minimum(ls + 16, len(buf.b) - 1)] == 44
                key, ok = parse_keys(buf, ls, np.where(comma, ls + 16, ls))
                ok &= comma
                if unterminated:
                    ok[-1] = False
                for i in np.flatnonzero(~ok).tolist():
                    if unterminated and i == len(nl) - 1:
                        p = LineProblem(
                            "truncated last line",
                            "truncated last line (no newline at the end of the file)",
                        )
                    else:
                        p = explain(buf.line(ls[i], nl[i]), "common")
                    bad.bad(path, first_line + i, p.message, p.reason)
                keys.append(key[ok])
                offsets.append(off + ls[ok] - _PAD)
                lengths.append(nl[ok] + 1 - ls[ok])
                lines.append(first_line + np.flatnonzero(ok))
                first_line += len(nl)
        finally:
            os.close(fd)
        keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.offsets = np.concatenate(offsets)[order] if offsets else np.zeros(0, np.int64)
        self.lengths = np.concatenate(lengths)[order] if lengths else np.zeros(0, np.int64)
        self.lines = np.concatenate(lines)[order] if lines else np.zeros(0, np.int64)
        dup = np.flatnonzero(self.keys[1:] == self.keys[:-1]) + 1
        for i in dup.tolist():  # the later line of a duplicate pair (stable sort)
            bad.bad(
                path,
                int(self.lines[i]),
                f"common_feature_index {int(self.keys[i]):016x} repeats the key of line "
                f"{int(self.lines[i - 1])}",
                "duplicate common_feature_index",
            )
        if len(dup):
            keep = np.ones(len(self.keys), bool)
            keep[dup] = False
            self.keys, self.offsets, self.lengths, self.lines = (
                a[keep] for a in (self.keys, self.offsets, self.lengths, self.lines)
            )
        self._fd = None

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Index rows of ``keys`` (-1 where the key has no line)."""
        if not len(self.keys):
            return np.full(len(keys), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, pos, -1)

    def read(self, rows: np.ndarray) -> bytes:
        """The lines of index ``rows`` (in that order), each ending with ``\\n``."""
        if self._fd is None:  # opened lazily: a forked reader process opens its own
            self._fd = os.open(self.path, os.O_RDONLY)
        return b"".join(
            os.pread(self._fd, int(n), int(o))
            for o, n in zip(self.offsets[rows].tolist(), self.lengths[rows].tolist())
        )

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ---- writer ----------------------------------------------------------------------------------

#: Raw id ranges of the writer: field → (first raw id, ids). Disjoint, like the real global id
#: space (``aliccp-format.md`` §4).
_RAW_RANGES = {
    "101": (1, 400_000),
    "121": (3_438_658, 97),
    "122": (3_438_755, 13),
    "124": (3_438_768, 2),
    "125": (3_438_770, 7),
    "126": (3_438_777, 3),
    "127": (3_438_780, 3),
    "128": (3_438_783, 2),
    "129": (3_438_785, 4),
    "109_14": (1_000_000, 6_085),
    "110_14": (1_400_000, 116_740),
    "127_14": (3_490_000, 58_014),
    "150_14": (3_870_000, 33_785),
    "205": (4_900_000, 1_500_000),
    "206": (8_310_000, 8_580),
    "207": (8_700_000, 280_000),
    "210": (9_000_000, 96_257),
    "216": (9_150_000, 100_000),
    "301": (9_351_665, 3),
    "508": (9_355_000, 7_734),
    "509": (9_510_000, 180_000),
    "702": (9_700_000, 142_631),
    "853": (9_850_000, 74_316),
}
_PROFILE = ("121", "122", "124", "125", "126", "127", "128", "129")
_USER_BAGS = ("150_14", "127_14", "109_14", "110_14")  # the order of the PaddleRec excerpt
#: Mean bag lengths: they make a common line ~518 entries as in the real file (IDX-b).
_BAG_MEAN = {"150_14": 130.0, "127_14": 104.0, "109_14": 110.0, "110_14": 165.0}
_WEIGHTS = [f"{math.log(k):.5f}".rstrip("0") for k in range(2, 4098)]  # ln(count), 5 decimals
_WEIGHTS_S = np.array([w.encode() for w in _WEIGHTS])


def _zipf_rank(rng: np.random.Generator, n: int, size, exponent: float = 1.1) -> np.ndarray:
    """Ranks in [0, n) with P(rank) falling roughly like rank**-exponent (inverse CDF)."""
    u = rng.random(size)
    a = 1.0 - exponent
    r = ((n**a - 1.0) * u + 1.0) ** (1.0 / a) - 1.0
    return np.minimum(r.astype(np.int64), n - 1)


def _hash_field(values: np.ndarray, salt: int, n: int) -> np.ndarray:
    return (
        mix64(np.asarray(values, np.uint64) * np.uint64(1_000_003) + np.uint64(salt)) % n
    ).astype(np.int64)


def _raw(field: str, local: np.ndarray) -> np.ndarray:
    return _RAW_RANGES[field][0] + local


def _weight_index(rng: np.random.Generator, size) -> np.ndarray:
    return np.minimum(rng.geometric(0.3, size) - 1, len(_WEIGHTS) - 1)


def _join_lines(headers: list[bytes], counts: np.ndarray, fields, ids, vals) -> bytes:
    """``header + entries joined by \\x01 + \\n`` per line; entries are given flat, in order."""
    tok = np.strings.add(np.strings.add(fields, ids.astype("S20")), vals).tolist()
    out = []
    pos = 0
    for h, c in zip(headers, counts.tolist()):
        out.append(h)
        out.append(b"\x01".join(tok[pos : pos + c]))
        out.append(b"\n")
        pos += c
    return b"".join(out)


def _prefix(field: str) -> bytes:
    return field.encode() + b"\x02"


def _common_lines(users: np.ndarray, keys: list[bytes], seed: int) -> bytes:
    """One common-features line per group: the user's profile and behaviour bags."""
    headers, counts, fields, ids, vals = [], [], [], [], []
    for u, key in zip(users.tolist(), keys):
        rng = np.random.default_rng([seed, 1, u])
        f_list, id_list, v_list = [b"101\x02"], [_raw("101", np.array([u]))], [[b"\x031.0"]]
        if rng.random() >= 0.13:  # ~13% of users have no profile
            for f in _PROFILE:
                if (f == "126" and rng.random() < 0.5) or (f == "129" and rng.random() < 0.25):
                    continue
                f_list.append(_prefix(f))
                id_list.append(_raw(f, rng.integers(0, _RAW_RANGES[f][1], 1)))
                v_list.append([b"\x031.0"])
        for f in _USER_BAGS:
            k = int(rng.poisson(_BAG_MEAN[f]))
            local = np.unique(_zipf_rank(rng, _RAW_RANGES[f][1], k))
            rng.shuffle(local)
            f_list.extend([_prefix(f)] * len(local))
            id_list.append(_raw(f, local))
            v_list.append(np.strings.add(b"\x03", _WEIGHTS_S[_weight_index(rng, len(local))]))
        n = len(f_list)
        headers.append(key + b"," + str(n).encode() + b",")
        counts.append(n)
        fields.extend(f_list)
        ids.append(np.concatenate(id_list))
        vals.extend(np.concatenate([np.asarray(v, dtype="S12") for v in v_list]).tolist())
    return _join_lines(
        headers,
        np.array(counts),
        np.array(fields, dtype="S8"),
        np.concatenate(ids),
        np.array(vals, dtype="S12"),
    )


def _skeleton_lines(
    rng: np.random.Generator,
    sizes: np.ndarray,
    keys: list[bytes],
    first_sid: int,
    click_rate: float,
    cvr: float,
    anomaly_rate: float,
) -> tuple[bytes, dict]:
    """The impressions of a batch of groups: item-side features and labels."""
    n = int(sizes.sum())
    item = _zipf_rank(rng, _RAW_RANGES["205"][1], n)
    cat = _hash_field(item, 1, _RAW_RANGES["206"][1])
    shop = _hash_field(item, 2, _RAW_RANGES["207"][1])
    brand = _hash_field(item, 3, _RAW_RANGES["216"][1])
    has_brand = _hash_field(item, 4, 100) >= 29
    n_int = 1 + _hash_field(item, 5, 11)  # ~6 intention nodes per item
    pos = np.minimum(rng.geometric(0.5, n) - 1, 2)
    has = {f: rng.random(n) < p for f, p in (("508", 0.7), ("509", 0.22), ("702", 0.22))}
    n853 = np.where(rng.random(n) < 0.41, rng.integers(1, 7, n), 0)

    # Entries per line in the real order: 210 x k, 216, 301, 205, 206, 207, 508, 509, 702, 853 x m.
    per_line = n_int + has_brand + 4 + has["508"] + has["509"] + has["702"] + n853
    f_parts, id_parts, v_parts, order_parts = [], [], [], []

    def emit(field, rows, local, rank, weights=None):
        f_parts.append(np.full(len(rows), _prefix(field), dtype="S8"))
        id_parts.append(_raw(field, local))
        w = b"\x031.0" if weights is None else np.strings.add(b"\x03", _WEIGHTS_S[weights])
        v_parts.append(np.broadcast_to(np.asarray(w, dtype="S12"), len(rows)))
        order_parts.append(rows * 10_000 + rank)  # sorts entries into line, then slot order

    r210 = np.repeat(np.arange(n), n_int)
    j210 = np.arange(len(r210)) - np.repeat(np.cumsum(n_int) - n_int, n_int)
    emit("210", r210, _hash_field(item[r210] * 16 + j210, 6, _RAW_RANGES["210"][1]), j210)
    rb = np.flatnonzero(has_brand)
    emit("216", rb, brand[rb], 100)
    a = np.arange(n)
    emit("301", a, pos, 101)
    emit("205", a, item, 102)
    emit("206", a, cat, 103)
    emit("207", a, shop, 104)
    for j, (f, base) in enumerate((("508", cat), ("509", shop), ("702", brand))):
        r = np.flatnonzero(has[f])
        emit(
            f,
            r,
            _hash_field(base[r], 7 + j, _RAW_RANGES[f][1]),
            105 + j,
            _weight_index(rng, len(r)),
        )
    r853 = np.repeat(np.arange(n), n853)
    j853 = np.arange(len(r853)) - np.repeat(np.cumsum(n853) - n853, n853)
    emit(
        "853",
        r853,
        _hash_field(item[r853] * 16 + j853, 10, _RAW_RANGES["853"][1]),
        200 + j853,
        _weight_index(rng, len(r853)),
    )
    order = np.argsort(np.concatenate(order_parts), kind="stable")

    # Labels: more clicks at the top position and on items matching the user's categories.
    p = click_rate * np.array([1.6, 0.8, 0.5])[pos] * np.where(has["508"], 1.2, 0.55)
    click = rng.random(n) < np.minimum(p, 1.0)
    conv = click & (rng.random(n) < cvr)
    anomaly = rng.random(n) < anomaly_rate
    click[anomaly], conv[anomaly] = False, True
    group = np.repeat(np.arange(len(sizes)), sizes)
    headers = [
        b"%d,%d,%d,%s,%d," % (first_sid + i, c, v, keys[g], k)
        for i, (c, v, g, k) in enumerate(
            zip(click.tolist(), conv.tolist(), group.tolist(), per_line.tolist())
        )
    ]
    text = _join_lines(
        headers,
        per_line,
        np.concatenate(f_parts)[order],
        np.concatenate(id_parts)[order],
        np.concatenate(v_parts)[order],
    )
    stats = {
        "impressions": n,
        "clicks": int(click.sum()),
        "conversions": int((click & conv).sum()),
        "anomalies": int(anomaly.sum()),
    }
    return text, stats


def write_raw(
    out_dir: str,
    num_impressions: int,
    seed: int = 0,
    *,
    num_test: int | None = None,
    rows_per_group: float = 58.0,
    num_users: int | None = None,
    click_rate: float = 0.039,
    cvr: float = 0.0054,
    anomaly_rate: float = 1e-5,
    groups_per_batch: int = 64,
) -> dict:
    """Writes raw-format Ali-CCP files (train and test) of any size, streaming.

    Writes ``sample_skeleton_{train,test}.csv`` and ``common_features_{train,test}.csv`` with the
    documented layout: skeleton lines grouped by key (a geometric number of impressions per
    group, mean ``rows_per_group``), common lines in a shuffled order within each batch of
    groups (so a joiner must seek), real-like field ranges, missing rates, bag sizes (~518
    entries per common line) and ``ln(count)`` weights. Memory is bounded by one batch of
    ``groups_per_batch`` groups. Deterministic given the arguments.

    Args:
      out_dir: created if missing.
      num_impressions: train impressions (``num_test`` defaults to a quarter of it).
      seed: seeds everything.
      rows_per_group: mean impressions per common-feature key (real data: ~58).
      num_users: user population (default: ~1 user per 1.8 groups, as in the real data).
      click_rate, cvr: mean P(click) and P(conversion | click).
      anomaly_rate: share of impressions written as click=0, conversion=1.
      groups_per_batch: groups generated and written at a time.

    Returns:
      Per split: impressions, groups, clicks, conversions, anomalies and the two files' paths
      and sizes.
    """
    os.makedirs(out_dir, exist_ok=True)
    if num_test is None:
        num_test = num_impressions // 4
    if num_users is None:
        num_users = max(1, int(max(num_impressions, num_test) / rows_per_group / 1.8))
    out = {}
    for tag, (split, n_total) in enumerate((("train", num_impressions), ("test", num_test))):
        rng = np.random.default_rng([seed, 100 + tag])
        sk_path = os.path.join(out_dir, f"sample_skeleton_{split}.csv")
        cm_path = os.path.join(out_dir, f"common_features_{split}.csv")
        stats = {"impressions": 0, "groups": 0, "clicks": 0, "conversions": 0, "anomalies": 0}
        with open(sk_path, "wb") as sk, open(cm_path, "wb") as cm:
            while stats["impressions"] < n_total:
                sizes = rng.geometric(1.0 / rows_per_group, groups_per_batch)
                left = n_total - stats["impressions"]
                cum = np.cumsum(sizes)
                sizes = sizes[: int(np.searchsorted(cum, left)) + 1]
                sizes[-1] -= max(int(sizes.sum()) - left, 0)
                g0 = stats["groups"]
                ids = np.arange(g0, g0 + len(sizes), dtype=np.uint64)
                hashed = mix64(ids * np.uint64(4) + np.uint64(tag) + np.uint64(seed) * np.uint64(8))
                keys = [b"%016x" % k for k in hashed.tolist()]
                users = _zipf_rank(rng, num_users, len(sizes), exponent=0.6)
                text, s = _skeleton_lines(
                    rng, sizes, keys, stats["impressions"] + 1, click_rate, cvr, anomaly_rate
                )
                sk.write(text)
                perm = rng.permutation(len(sizes))
                cm.write(_common_lines(users[perm], [keys[i] for i in perm], seed))
                stats["groups"] += len(sizes)
                for k in ("impressions", "clicks", "conversions", "anomalies"):
                    stats[k] += s[k]
        stats["skeleton"] = {"path": sk_path, "bytes": os.path.getsize(sk_path)}
        stats["common"] = {"path": cm_path, "bytes": os.path.getsize(cm_path)}
        out[split] = stats
    return out
