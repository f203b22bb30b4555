"""Memory-mappable column shards: one ``.npy`` per column per split, plus ``metadata.json``.

Layout of a prepared directory::

    metadata.json            schema, row counts, vocabularies, statistics, sources (see prepare.py)
    train/cat.npy            int32 [N, F]   (any column of the batch layout, one file each)
    train/labels.npy ...
    val/...  test/...
    common_train/...         tables shared by many rows (one row per Ali-CCP common-feature key)
    vocab/<field>.npy        raw id of each kept id (row i = id i + 1), for mapping new data

Two kinds of logical column are not one ``.npy`` of [N, ...] (format 2; ``metadata.json`` names
them, and :func:`open_split` returns an array-like object for each that reads only the rows asked
for):

* ``metadata["joins"][split]`` = ``{"index": COLUMN, "table": DIRECTORY, "columns": [...]}``:
  each named column is a row of the table's column of the same name, the row given by the
  split's int32 ``index`` column (:class:`Gathered`). Ali-CCP's behaviour bags are the same for
  the ~58 impressions of a common-feature key, so they are stored once per key.
* ``metadata["ragged"][name]`` = ``{"values": FILE, "ends": FILE, "width": L}``: variable-length
  rows (the values of all rows back to back, and each row's end offset), read as [N, L] padded
  with zeros (:class:`Ragged`). Item-side bags hold ~6 of up to 20 entries.

Columns are plain ``.npy`` files, opened with ``np.load(..., mmap_mode="r")``: a training run
pages in only the rows its batches read, so a dataset larger than memory trains as fast as the
disk reads. Writers stream: :class:`SplitWriter` appends row blocks and fixes the ``.npy`` header
(reserved at a fixed size) when it closes, so no column is ever held in memory whole.

``metadata["aliases"]`` maps a batch key to another column of the same split (e.g. ``seq_item``
is the ``bag_127_14_ids`` column) and ``metadata["zeros"]`` names all-zero columns that are not
stored (e.g. ``seq_loc`` when the data has no locations); :func:`open_shards` resolves both.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

FORMAT = "mtl_jax.shards/2"
#: Formats this module reads (format 1 has neither joins nor ragged columns).
FORMATS = ("mtl_jax.shards/1", FORMAT)
METADATA = "metadata.json"
SPLITS = ("train", "val", "test")
#: Every ``.npy`` header written here has this size, so it can be rewritten in place.
_HEADER_BYTES = 128
_MAGIC = b"\x93NUMPY\x01\x00"


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version-1.0 ``.npy`` header of exactly ``_HEADER_BYTES`` bytes."""
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    body_len = _HEADER_BYTES - len(_MAGIC) - 2
    if len(text) + 1 > body_len:
        raise ValueError(f"npy header too long for shape {shape}")
    body = text.ljust(body_len - 1) + "\n"
    return _MAGIC + struct.pack("<H", body_len) + body.encode("latin1")


class ColumnWriter:
    """Appends rows of one column to a ``.npy`` file; the header is fixed on :meth:`close`."""

    def __init__(self, path: str, dtype, inner_shape: tuple[int, ...] = ()):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.inner = tuple(int(s) for s in inner_shape)
        self.rows = 0
        self._f = open(path, "wb")
        self._f.write(_npy_header(self.dtype, (0, *self.inner)))

    @classmethod
    def reopen(cls, path: str) -> ColumnWriter:
        """A writer that appends to an existing ``.npy`` written by this class."""
        arr = np.load(path, mmap_mode="r")
        if arr.offset != _HEADER_BYTES:
            raise ValueError(f"{path}: not written by ColumnWriter (header {arr.offset} bytes)")
        self = cls.__new__(cls)
        self.path, self.dtype, self.inner, self.rows = path, arr.dtype, arr.shape[1:], arr.shape[0]
        del arr
        self._f = open(path, "r+b")
        self._f.seek(0, os.SEEK_END)
        return self

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if values.shape[1:] != self.inner:
            raise ValueError(
                f"{self.path}: appending shape {values.shape}, rows must have shape {self.inner}"
            )
        if values.size:
            self._f.write(memoryview(values).cast("B"))
        self.rows += values.shape[0]

    def close(self) -> int:
        if self._f is not None:
            self._f.seek(0)
            self._f.write(_npy_header(self.dtype, (self.rows, *self.inner)))
            self._f.close()
            self._f = None
        return self.rows


class RaggedWriter:
    """Appends variable-length rows: ``<name>.npy`` values back to back, ``<ends>.npy`` int64
    end offsets (one per row)."""

    def __init__(self, directory: str, values: str, ends: str, dtype):
        self.values = ColumnWriter(os.path.join(directory, f"{values}.npy"), dtype)
        self.ends = ColumnWriter(os.path.join(directory, f"{ends}.npy"), np.int64)
        self.total = 0

    def append(self, lengths: np.ndarray, values: np.ndarray) -> None:
        """Rows of ``lengths[i]`` values each; ``values`` holds them in row order."""
        ends = self.total + np.cumsum(lengths, dtype=np.int64)
        self.total = int(ends[-1]) if len(ends) else self.total
        if self.total != self.values.rows + len(values):
            raise ValueError(f"{self.values.path}: lengths sum to {ends[-1]}, got {len(values)}")
        self.values.append(values)
        self.ends.append(ends)

    def close(self) -> int:
        self.values.close()
        return self.ends.close()


class SplitWriter:
    """Streams row blocks of several aligned columns into ``directory/<column>.npy``.

    Args:
      directory: created if missing.
      spec: column name → (dtype, shape of one row).
    """

    def __init__(self, directory: str, spec: dict[str, tuple]):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.columns = {
            name: ColumnWriter(os.path.join(directory, f"{name}.npy"), dtype, inner)
            for name, (dtype, inner) in spec.items()
        }

    def append(self, block: dict[str, np.ndarray]) -> None:
        if set(block) != set(self.columns):
            raise ValueError(
                f"block columns {sorted(block)} differ from the split's {sorted(self.columns)}"
            )
        for name, w in self.columns.items():
            w.append(block[name])

    def close(self) -> int:
        rows = {name: w.close() for name, w in self.columns.items()}
        if len(set(rows.values())) > 1:
            raise ValueError(f"{self.directory}: columns have different lengths {rows}")
        return next(iter(rows.values()), 0)


def write_split(directory: str, columns: dict[str, np.ndarray]) -> int:
    """Writes in-memory columns of one split (all the same length) as ``.npy`` files."""
    spec = {k: (v.dtype, v.shape[1:]) for k, v in columns.items()}
    w = SplitWriter(directory, spec)
    w.append(columns)
    return w.close()


def column_spec(directory: str) -> dict[str, dict]:
    """Column name → {"dtype", "shape"} of every ``.npy`` file in a split directory."""
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".npy"):
            arr = np.load(os.path.join(directory, name), mmap_mode="r")
            out[name[:-4]] = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
    return out


def write_metadata(root: str, metadata: dict) -> None:
    """Writes ``metadata.json`` atomically (a reader never sees a half-written file)."""
    meta = dict(metadata)
    meta.setdefault("format", FORMAT)
    tmp = os.path.join(root, METADATA + ".tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2, default=_json_default)
        f.write("\n")
    os.replace(tmp, os.path.join(root, METADATA))


def _json_default(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_metadata(root: str) -> dict:
    path = os.path.join(root, METADATA)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{root}: no {METADATA}; this is not a directory written by "
            "`python -m mtl_jax.data.prepare` (or it was interrupted before the end)"
        )
    with open(path) as f:
        meta = json.load(f)
    if meta.get("format") not in FORMATS:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected one of {FORMATS}")
    return meta


class Gathered:
    """A column stored once per key: row ``r`` is ``table[index[r]]`` (read-only, array-like).

    Indexing with rows (an int, a slice or an integer array) reads only those rows, so a batch
    reader gathers what its batch needs; ``np.asarray`` materialises the whole column.
    """

    def __init__(self, table: np.ndarray, index: np.ndarray):
        self.table, self.index = table, index
        self.dtype = table.dtype
        self.shape = (len(index), *table.shape[1:])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        if isinstance(rows, tuple):
            return self[rows[0]][(slice(None), *rows[1:])]
        return np.take(self.table, np.asarray(self.index[rows], np.int64), axis=0)

    def __array__(self, dtype=None, copy=None):
        out = self[slice(None)]
        return out if dtype is None else out.astype(dtype)


class Ragged:
    """Variable-length rows read as [N, width], padded with zeros (read-only, array-like)."""

    def __init__(self, values: np.ndarray, ends: np.ndarray, width: int):
        self.values, self.ends, self.width = values, ends, int(width)
        self.dtype = values.dtype
        self.shape = (len(ends), self.width)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        if isinstance(rows, tuple):
            return self[rows[0]][(slice(None), *rows[1:])]
        scalar = np.ndim(rows) == 0 and not isinstance(rows, slice)
        r = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows)
        r = np.atleast_1d(r).astype(np.int64)
        r = np.where(r < 0, r + len(self), r)
        end = np.asarray(self.ends[r])
        start = np.where(r > 0, np.asarray(self.ends[np.maximum(r - 1, 0)]), 0)
        n = np.minimum(end - start, self.width)
        out = np.zeros((len(r), self.width), self.dtype)
        if n.any():
            row = np.repeat(np.arange(len(r)), n)
            col = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            out[row, col] = self.values[np.repeat(start, n) + col]
        return out[0] if scalar else out

    def __array__(self, dtype=None, copy=None):
        out = self[slice(None)]
        return out if dtype is None else out.astype(dtype)


def open_split(
    root: str, split: str, meta: dict, columns=None, mode: str = "r"
) -> dict[str, np.ndarray]:
    """The columns of one split, memory-mapped; aliases and zero columns resolved.

    Args:
      root: prepared directory.
      split: ``train``, ``val`` or ``test``.
      meta: its metadata.
      columns: names to open (default: every stored, aliased and zero column).
      mode: ``np.load`` mmap mode (``"r"`` to read, ``"r+"`` to rewrite in place).
    """
    info = meta["splits"][split]
    n = int(info["rows"])
    stored = info["columns"]
    aliases = meta.get("aliases", {})
    zeros = meta.get("zeros", {})
    ragged = meta.get("ragged", {})
    join = meta.get("joins", {}).get(split)
    joined = join["columns"] if join else []
    hidden = {v for r in ragged.values() for v in (r["values"], r["ends"])}
    logical = [c for c in stored if c not in hidden] + list(ragged) + joined
    names = list(columns) if columns is not None else [*logical, *aliases, *zeros]

    def load(directory: str, name: str, spec: dict, rows: int | None) -> np.ndarray:
        path = os.path.join(root, directory, f"{name}.npy")
        arr = np.load(path, mmap_mode=mode)
        expect = tuple(spec["shape"]) if rows is None else (rows, *spec["shape"][1:])
        if arr.shape != expect or arr.dtype != np.dtype(spec["dtype"]):
            raise ValueError(
                f"{path}: shape {arr.shape} dtype {arr.dtype}, metadata says {expect} "
                f"{spec['dtype']}; the directory is inconsistent (re-run prepare)"
            )
        return arr

    out = {}
    for name in names:
        if name in zeros:
            z = zeros[name]
            shape = (n, *z["shape"])
            out[name] = np.broadcast_to(np.zeros((), np.dtype(z["dtype"])), shape)
            continue
        source = aliases.get(name, name)
        if source in joined:
            table = meta["tables"][join["table"]]
            out[name] = Gathered(
                load(join["table"], source, table["columns"][source], None),
                load(split, join["index"], stored[join["index"]], n),
            )
        elif source in ragged:
            r = ragged[source]
            out[name] = Ragged(
                load(split, r["values"], stored[r["values"]], None),
                load(split, r["ends"], stored[r["ends"]], n),
                r["width"],
            )
        elif source in stored and source not in hidden:
            out[name] = load(split, source, stored[source], n)
        else:
            raise KeyError(
                f"{root}/{split}: no column {name!r}; columns are "
                f"{sorted([*logical, *aliases, *zeros])}"
            )
    return out


def open_rows(path: str, start: int, stop: int, mode: str = "r+") -> np.memmap:
    """Rows ``[start, stop)`` of a ``.npy`` column as their own memory map.

    Mapping only the rows at hand keeps a pass over a large column from accumulating resident
    pages of the whole file: each window is unmapped when it is dropped.
    """
    whole = np.load(path, mmap_mode="r")
    inner = whole.shape[1:]
    row_bytes = whole.dtype.itemsize * int(np.prod(inner, dtype=np.int64))
    offset, dtype = whole.offset, whole.dtype
    del whole
    return np.memmap(
        path,
        dtype=dtype,
        mode=mode,
        offset=offset + start * row_bytes,
        shape=(stop - start, *inner),
    )


def open_shards(root: str, columns=None) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(metadata, {split: columns}) of a prepared directory, every column memory-mapped."""
    meta = read_metadata(root)
    return meta, {s: open_split(root, s, meta, columns) for s in meta["splits"]}
