"""Memory-mappable column shards: one ``.npy`` per column per split, plus ``metadata.json``.

Layout of a prepared directory::

    metadata.json            schema, row counts, vocabularies, statistics, sources (see prepare.py)
    train/cat.npy            int32 [N, F]   (any column of the batch layout, one file each)
    train/labels.npy ...
    val/...  test/...
    vocab/<field>.npy        raw id of each kept id (row i = id i + 1), for mapping new data

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

FORMAT = "mtl_jax.shards/1"
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

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if values.shape[1:] != self.inner:
            raise ValueError(
                f"{self.path}: appending shape {values.shape}, rows must have shape {self.inner}"
            )
        self._f.write(memoryview(values).cast("B"))
        self.rows += values.shape[0]

    def close(self) -> int:
        if self._f is not None:
            self._f.seek(0)
            self._f.write(_npy_header(self.dtype, (self.rows, *self.inner)))
            self._f.close()
            self._f = None
        return self.rows


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
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


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
    names = list(columns) if columns is not None else [*stored, *aliases, *zeros]
    out = {}
    for name in names:
        if name in zeros:
            z = zeros[name]
            shape = (n, *z["shape"])
            out[name] = np.broadcast_to(np.zeros((), np.dtype(z["dtype"])), shape)
            continue
        source = aliases.get(name, name)
        if source not in stored:
            raise KeyError(
                f"{root}/{split}: no column {name!r}; columns are "
                f"{sorted([*stored, *aliases, *zeros])}"
            )
        path = os.path.join(root, split, f"{source}.npy")
        arr = np.load(path, mmap_mode=mode)
        expect = (n, *stored[source]["shape"][1:])
        if arr.shape != expect or arr.dtype != np.dtype(stored[source]["dtype"]):
            raise ValueError(
                f"{path}: shape {arr.shape} dtype {arr.dtype}, metadata says {expect} "
                f"{stored[source]['dtype']}; the directory is inconsistent (re-run prepare)"
            )
        out[name] = arr
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
