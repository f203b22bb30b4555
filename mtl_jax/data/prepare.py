"""Raw Ali-CCP → memory-mappable shards, streaming in bounded memory.

CLI::

    python -m mtl_jax.data.prepare aliccp --raw-dir DIR --out DIR [--min-count 10]
        [--max-bag-len 20] [--seq-field 127_14] [--source-field FIELD] [--val-split random|user]
        [--val-fraction 0.1] [--seed 0] [--skip-bad] [--workers N] [--chunk-mb 4]
        [--no-progress] [--overwrite]

``DIR`` holds ``sample_skeleton_{train,test}.csv`` and ``common_features_{train,test}.csv``.
The output is read with ``config.data.kind = "prepared"`` (``configs/aliccp.py``).

How it works
------------
Files are cut into blocks of whole lines (``--chunk-mb``); ``--workers`` processes parse and
reduce blocks (``readers.aliccp_raw``: Arrow's CSV reader and compute kernels) while the main
process consumes their results in file order.

1. For each split file pair, every line of ``common_features_*.csv`` is parsed once and reduced
   (per field the kept entry, per bag field the ``--max-bag-len`` heaviest entries) into the
   *common table* ``common_<split>/``: one row per common-feature key. A sorted key → row index
   (16 bytes per key) stays in memory.
2. Each block of ``sample_skeleton_*.csv`` is parsed and reduced, each impression finds its
   key's row, and the main process maps raw ids to provisional ids (per field, first seen),
   joins the impression to its common row (the impression's own entries win for a field on both
   sides), assigns it to train / val (a seeded hash of the skeleton line number, or of the user
   id 101 with ``--val-split user``) or test, appends it to the split's columns and counts the
   ids of the training rows.
3. Vocabularies: per field, ids with ≥ ``--min-count`` training occurrences (counted per
   impression; bag fields count every kept bag entry, the common bags once per row of their key)
   get final ids 1..K by descending count (ties by raw id); rare and unseen ids become 0. Every
   column is rewritten in place with the final ids, the dense columns MinMax-scaled with training
   statistics (clipped to [0, 1]), and with ``--source-field`` the source ids filled in.
4. ``metadata.json`` is written last: schema, row counts, label rates, vocabulary sizes,
   missing / rare / unseen counts per field and split, dropped rows (click=0 & conversion=1),
   skipped bad lines per reason, source files and sizes, timing.

Columns per split (see ``schema.py`` for the batch layout): ``cat`` [N, 23] int32 (fields in
torch-rechub's order), ``dense`` [N, 8] float32 (the weight of the kept entry of
109_14/110_14/127_14/150_14/508/509/702/853), ``labels`` [N, 2] (click, order = conversion),
``source`` [N], ``user`` [N] (1.. by raw user id 101, not thresholded: the GAUC groups),
``sample_id`` [N] int64, ``common_row`` [N] int32 (the row of the impression's key in the common
table), and per multi-valued field (210, 853, 109_14, 110_14, 127_14, 150_14) the logical
columns ``bag_<field>_ids`` [N, Lb] int32 and ``bag_<field>_w`` [N, Lb] float32: the ``Lb``
highest-weight entries, heaviest first (0 / 0.0 padding; a rare id inside a bag becomes 0 in
place). The single id of a field in ``cat`` is its highest-weight entry, the first on ties (see
``aliccp_raw``).

Storage of the bags (``shards.py``, format 2): the user's behaviour bags 109_14 / 110_14 /
127_14 / 150_14 are identical for the ~58 impressions of a common-feature key, so they are stored
once per key in ``common_<split>/`` and joined through ``common_row`` when a batch is read (an
impression with its own entries of such a field gets a row of its own in the table). The item-side
bags 210 / 853 hold ~6 and ~1.4 entries per impression, so they are stored as variable-length
rows (``ragged_bag_<field>_{ids,w,ends}``). The shards take about 0.6× the raw input.

The DIN behaviour sequence is the ``--seq-field`` bag: ``seq_item`` / ``seq_days`` are aliases
of ``bag_<seq>_ids`` / ``bag_<seq>_w`` (Ali-CCP has no timestamps; the log-count weights take the
role of recency), ``seq_loc`` is all zeros (not stored).

Which bag: 127_14 (the user's brands) by default. DIN attends the candidate against the history,
so the bag needs an item field of the same kind to be the target: 127_14 ↔ 216 (brand),
109_14 ↔ 206 (category), 110_14 ↔ 207 (shop), 150_14 ↔ 210 (intention). Brands are specific
enough to carry interest (58K ids vs 6K categories) without the sparsity of shops (117K ids, most
seen a few times), and the item side has one brand per item (210 has ~6 intention nodes). Raw
ids are disjoint between fields (a brand has one id in 127_14 and another in 216; the cross field
702 exists for that reason), so sharing the 216 table would give sequence ids that never occur
as targets: the sequence uses the 127_14 table (``SequenceFeature(table="127_14",
target="216")``) and DIN's attention MLP over [q, k, q − k, q · k] learns how brands relate.

Sources (``--source-field FIELD``): each value in the field's vocabulary (the ids kept by
``--min-count``, in vocabulary order: descending training count, ties by raw id) is one data
source, so source ``s`` is the value with id ``s + 1``; if any row's value is missing, rare or
unseen, those rows form one more source, the last. ``metadata["source_field"]`` lists every
source with its raw id and rows per split, and the schema's ``num_sources`` is their number. Use
it e.g. with the position field 301 to train a multi-source model across positions.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import shutil
import sys
import time

import numpy as np
from absl import logging

from mtl_jax import cli
from mtl_jax.data import shards, workers
from mtl_jax.data.errors import BadLines
from mtl_jax.data.hashing import unit_hash
from mtl_jax.data.idmap import IdMap
from mtl_jax.data.readers import aliccp_raw as ar
from mtl_jax.data.schema import CategoricalFeature, Schema, SequenceFeature
from mtl_jax.data.synthetic import DENSE, FIELDS, TASKS

SPLIT_FILES = {
    "train": ("sample_skeleton_train.csv", "common_features_train.csv"),
    "test": ("sample_skeleton_test.csv", "common_features_test.csv"),
}
#: The common table of each file pair, and of each split.
TABLES = {"train": "common_train", "test": "common_test"}
SPLIT_TABLE = {"train": "common_train", "val": "common_train", "test": "common_test"}
VAL_SPLITS = ("random", "user")
SEQ_FIELDS = tuple(ar.SEQUENCE_TARGETS)
_DENSE_INDEX = np.array([ar.FIELD_INDEX[f] for f in ar.DENSE_FIELDS])
_COMMON_SLOTS = tuple(ar.BAG_FIELDS.index(f) for f in ar.COMMON_BAGS)
_SKELETON_SLOTS = tuple(ar.BAG_FIELDS.index(f) for f in ar.SKELETON_BAGS)
_REMAP_ROWS = 1 << 16
_REMAP_TASK_ROWS = 1 << 20
_CLASSES = ("missing", "kept", "rare", "unseen")


@dataclasses.dataclass(frozen=True)
class AliccpOptions:
    """Options of ``prepare aliccp`` (the CLI flags of the same names)."""

    raw_dir: str
    out: str
    min_count: int = 10
    max_bag_len: int = 20
    seq_field: str | None = "127_14"
    source_field: str | None = None
    val_split: str = "random"
    val_fraction: float = 0.1
    seed: int = 0
    skip_bad: bool = False
    workers: int = 1
    chunk_bytes: int = 4 << 20
    progress: bool = True
    overwrite: bool = False

    def check(self) -> None:
        if self.min_count < 1:
            raise ValueError(f"--min-count must be >= 1, got {self.min_count}")
        if not 0 <= self.max_bag_len <= 1000:
            raise ValueError(f"--max-bag-len must be in [0, 1000], got {self.max_bag_len}")
        if self.seq_field is not None and self.seq_field not in SEQ_FIELDS:
            raise ValueError(
                f"--seq-field must be one of {SEQ_FIELDS} or none, got {self.seq_field!r}"
            )
        if self.seq_field is not None and self.max_bag_len == 0:
            raise ValueError("--seq-field needs --max-bag-len > 0 (the sequence is a bag)")
        if self.source_field is not None and self.source_field not in ar.FIELD_INDEX:
            raise ValueError(
                f"--source-field must be one of the Ali-CCP fields {list(ar.FIELD_NAMES)}, got "
                f"{self.source_field!r}"
            )
        if self.val_split not in VAL_SPLITS:
            raise ValueError(f"--val-split must be one of {VAL_SPLITS}, got {self.val_split!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.chunk_bytes < 1024:
            raise ValueError(f"--chunk-mb is too small ({self.chunk_bytes} bytes)")


def _encode(raw: np.ndarray, idmap: IdMap) -> np.ndarray:
    """Provisional ids (int32) of raw ids (int64); -1 (absent) → 0."""
    out = np.zeros(raw.shape, np.int32)
    present = raw >= 0
    if present.all():
        return idmap.encode(raw)
    if present.any():
        out[present] = idmap.encode(raw[present])
    return out


def _encode_fields(raw: np.ndarray, idmaps: list[IdMap]) -> np.ndarray:
    """[n, F] raw ids → provisional ids, field by field (fields absent from every row skipped:
    a skeleton line has no user fields, a common line no item fields)."""
    out = np.zeros(raw.shape, np.int32)
    present = (raw >= 0).any(axis=0) if len(raw) else np.zeros(raw.shape[1], bool)
    for f in np.flatnonzero(present).tolist():
        out[:, f] = _encode(raw[:, f], idmaps[f])
    return out


def _read(fd: int, offset: int, length: int, unterminated: bool) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise OSError(f"short read: {len(data)} of {length} bytes at offset {offset}")
    return data + b"\n" if unterminated else data


def _line_problems(blk: ar.Block, data: bytes, kind: str, unterminated: bool) -> list:
    if unterminated:
        blk.ok[-1] = False
    return [
        (i, p.reason, p.message)
        for i, p in ar.bad_line_problems(blk, data, kind, unterminated=unterminated)
    ]


_CTX: dict = {}  # set before the workers start (inherited by forked workers)


def _fd(path: str) -> int:
    fds = _CTX.setdefault("fds", {})
    if path not in fds:
        fds[path] = os.open(path, os.O_RDONLY)
    return fds[path]


def _close_fds() -> None:
    for fd in _CTX.pop("fds", {}).values():
        os.close(fd)


# ---- phase C: the common-features file → the common table (worker side) -------------------


@dataclasses.dataclass
class CommonResult:
    """One common-features block: the reduced entries of its good lines."""

    n_lines: int
    nbytes: int
    problems: list  # (line index, reason, message) of bad lines
    bad_keys: np.ndarray  # keys of bad lines whose key itself is readable
    lines: np.ndarray  # good line indices
    keys: np.ndarray  # their keys
    red: ar.Reduced
    unknown_fields: dict


def _readable_key(line: bytes) -> int | None:
    key = line.split(b",", 1)[0]
    return int(key, 16) if ar._KEY_RE.fullmatch(key) else None


def read_common_block(task: tuple[int, int, bool]) -> CommonResult:
    """Parses and reduces one block of a common-features file."""
    offset, length, unterminated = task
    data = _read(_fd(_CTX["common"]), offset, length, unterminated)
    blk = ar.parse_block(data, "common")
    problems = _line_problems(blk, data, "common", unterminated)
    if problems:
        ar.with_spans(blk, data)
    bad_keys = [_readable_key(data[blk.line_start[i] : blk.line_end[i]]) for i, _, _ in problems]
    good = np.flatnonzero(blk.ok)
    line_map = np.full(blk.n, -1, np.int64)
    line_map[good] = np.arange(len(good))
    e = line_map[blk.e_line] >= 0
    red = ar.reduce_entries(
        len(good),
        line_map[blk.e_line[e]],
        blk.e_field[e],
        blk.e_id[e],
        blk.e_w[e],
        _CTX["max_bag_len"],
    )
    return CommonResult(
        n_lines=blk.n,
        nbytes=length,
        problems=problems,
        bad_keys=np.array([k for k in bad_keys if k is not None], np.uint64),
        lines=good,
        keys=blk.key[good],
        red=red,
        unknown_fields=blk.unknown_fields,
    )


# ---- phase S: the skeleton file (worker side) ----------------------------------------------


@dataclasses.dataclass
class BlockResult:
    """What a worker returns for one skeleton block (line indices are block-relative)."""

    n_lines: int
    nbytes: int
    problems: list  # (line index, reason, message) of bad skeleton lines
    missing: list  # (line index, key) whose key has no common line
    common_bad: list  # (line index, key) whose common line is bad
    anomalies: int  # click=0 & conversion=1 rows (dropped)
    rows: np.ndarray  # kept line indices
    sample_id: np.ndarray
    labels: np.ndarray  # [R, 2] float32
    sk: ar.Reduced  # the kept rows' own entries
    crow: np.ndarray  # [R] row of the common table
    keys: np.ndarray  # [R] common-feature key
    cm_cat: np.ndarray  # [R, F] provisional ids of the common row's kept entries
    cm_w: np.ndarray  # [R, 8] weights of the common row's kept entries of the dense fields
    cm_bags: dict  # skeleton slot → (ids [R, Lb], w) of the common row, where rows lack own
    unknown_fields: dict


def _table(column: str) -> np.ndarray:
    """A column of the common table being joined, mapped for one block only."""
    return np.load(os.path.join(_CTX["table_dir"], f"{column}.npy"), mmap_mode="r")


def read_block(task: tuple[int, int, bool]) -> BlockResult:
    """Parses and reduces one skeleton block; finds each impression's common row."""
    offset, length, unterminated = task
    lb = _CTX["max_bag_len"]
    data = _read(_fd(_CTX["skeleton"]), offset, length, unterminated)
    blk = ar.parse_block(data, "skeleton")
    problems = _line_problems(blk, data, "skeleton", unterminated)
    ok = blk.ok
    anomaly = ok & (blk.click == 0) & (blk.conversion == 1)
    cand = np.flatnonzero(ok & ~anomaly)
    keys = blk.key[cand]
    index_keys, index_rows = _CTX["index_keys"], _CTX["index_rows"]
    pos = np.minimum(np.searchsorted(index_keys, keys), max(len(index_keys) - 1, 0))
    found = index_keys[pos] == keys if len(index_keys) else np.zeros(len(keys), bool)
    missing, common_bad = [], []
    for j in np.flatnonzero(~found).tolist():
        k = int(keys[j])
        is_bad = np.isin(np.uint64(k), _CTX["bad_keys"])
        (common_bad if is_bad else missing).append((int(cand[j]), k))
    rows = cand[found]
    crow = index_rows[pos[found]]
    uc, inv = np.unique(crow, return_inverse=True)
    cm_cat = np.asarray(_table("cat")[uc])[inv]
    cm_w = np.asarray(_table("dense_w")[uc])[inv]
    row_map = np.full(blk.n, -1, np.int64)
    row_map[rows] = np.arange(len(rows))
    e = row_map[blk.e_line] >= 0
    sk = ar.reduce_entries(
        len(rows), row_map[blk.e_line[e]], blk.e_field[e], blk.e_id[e], blk.e_w[e], lb
    )
    cm_bags = {}
    for s in _CTX["common_skeleton_slots"]:  # item-side bags in common lines (rare)
        own = sk.bags.get(s)
        need = np.ones(len(rows), bool) if own is None else own[2] == 0
        if not need.any():
            continue
        f = ar.BAG_FIELDS[s]
        ids = np.asarray(_table(f"bag_{f}_ids")[uc])[inv]
        if not ids.any():
            continue
        w = np.asarray(_table(f"bag_{f}_w")[uc])[inv]
        ids[~need] = 0
        w[~need] = 0.0
        cm_bags[s] = (ids, w)
    labels = np.stack([blk.click[rows], blk.conversion[rows]], axis=1).astype(np.float32)
    return BlockResult(
        n_lines=blk.n,
        nbytes=length,
        problems=problems,
        missing=missing,
        common_bad=common_bad,
        anomalies=int(anomaly.sum()),
        rows=rows,
        sample_id=blk.sample_id[rows],
        labels=labels,
        sk=sk,
        crow=crow,
        keys=keys[found],
        cm_cat=cm_cat,
        cm_w=cm_w,
        cm_bags=cm_bags,
        unknown_fields=dict(blk.unknown_fields),
    )


# ---- the job: state shared by the phases ------------------------------------------------------


def _grow(a: np.ndarray, size: int) -> np.ndarray:
    if len(a) >= size:
        return a
    out = np.zeros(max(size, 2 * len(a)), a.dtype)
    out[: len(a)] = a
    return out


def _add_bincount(acc: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``acc`` (grown as needed) plus the occurrences of each id in ``ids``."""
    bc = np.bincount(ids)
    acc = _grow(acc, len(bc))
    acc[: len(bc)] += bc
    return acc


class _RunReport:
    """What a run finds besides the columns: bad lines, per-file statistics and the entries the
    reduction left out (``metadata["dropped"]`` and ``metadata["files"]``)."""

    def __init__(self, skip_bad: bool):
        self.bad = BadLines(skip_bad)
        self.files: dict[str, dict] = {}
        self.unknown = collections.Counter()
        self.repeats = np.zeros(ar.NUM_FIELDS, np.int64)
        self.truncated = np.zeros(ar.NUM_BAGS, np.int64)

    def add_reduced(self, red: ar.Reduced, unknown_fields: dict) -> None:
        self.unknown.update(unknown_fields)
        self.repeats += red.repeats
        self.truncated += red.truncated

    def dropped(self) -> dict:
        return {
            "click0_conversion1": {
                k: v["dropped_click0_conversion1"]
                for k, v in self.files.items()
                if "dropped_click0_conversion1" in v
            },
            "bad_lines": self.bad.to_dict(),
            "unknown_field_entries": dict(self.unknown),
            "repeated_single_field_entries": dict(zip(ar.FIELD_NAMES, self.repeats.tolist())),
            "bag_entries_beyond_max_bag_len": dict(zip(ar.BAG_FIELDS, self.truncated.tolist())),
        }


@dataclasses.dataclass
class _FinalIds:
    """Pass 2's mapping of every field's provisional ids (entry 0: missing)."""

    final: list[np.ndarray]  # provisional → final id (0: missing, rare or unseen)
    classes: list[np.ndarray]  # provisional id → 0 missing, 1 kept, 2 rare, 3 unseen in training
    vocab: dict  # metadata["vocabulary"]


class _Vocabulary:
    """Per field: raw id → provisional id (first seen, ``IdMap``) and the training count of each
    provisional id; ``finalize`` turns them into the final ids."""

    def __init__(self):
        self.idmaps = [IdMap() for _ in ar.FIELD_NAMES]
        self.counts = [np.zeros(1, np.int64) for _ in ar.FIELD_NAMES]

    def encode(self, raw: np.ndarray, field: str) -> np.ndarray:
        """Provisional ids of one field's raw ids (-1, absent → 0)."""
        return _encode(raw, self.idmaps[ar.FIELD_INDEX[field]])

    def encode_fields(self, raw: np.ndarray) -> np.ndarray:
        """Provisional ids of [n, F] raw ids."""
        return _encode_fields(raw, self.idmaps)

    def user_raw_ids(self, cat: np.ndarray) -> np.ndarray:
        """The raw user id 101 of rows of provisional ids (-1: absent)."""
        user = np.full(len(cat), -1, np.int64)
        has = cat[:, 0] > 0
        user[has] = self.idmaps[0].raw[cat[has, 0] - 1]
        return user

    def count(self, f: int, ids: np.ndarray, weights=None) -> None:
        size = self.idmaps[f].size + 1
        c = self.counts[f] = _grow(self.counts[f], size)
        bc = np.bincount(ids.ravel(), weights=weights, minlength=size)
        c[: len(bc)] += bc.astype(np.int64) if weights is not None else bc

    def count_training(self, cat: np.ndarray, bags: dict, with_bags: bool) -> None:
        """Counts the ids of training rows: the single ids, or the bag entries of bag fields."""
        for f, (ids, _, _) in bags.items():
            self.count(ar.FIELD_INDEX[f], ids)
        for f, name in enumerate(ar.FIELD_NAMES):
            if not (with_bags and name in ar.BAG_FIELDS):
                self.count(f, cat[:, f])

    def finalize(self, min_count: int, vocab_dir: str) -> _FinalIds:
        """Final ids 1..K by descending count (ties by raw id) of the ids with ≥ ``min_count``
        training occurrences; writes each field's raw ids in final-id order to ``vocab_dir``."""
        os.makedirs(vocab_dir, exist_ok=True)
        out = _FinalIds([], [], {})
        for f, name in enumerate(ar.FIELD_NAMES):
            m = self.idmaps[f]
            c = np.zeros(m.size + 1, np.int64)
            n = min(len(self.counts[f]), m.size + 1)
            c[:n] = self.counts[f][:n]
            kept = np.flatnonzero(c[1:] >= min_count) + 1
            kept = kept[np.lexsort((m.raw[kept - 1], -c[kept]))]
            final = np.zeros(m.size + 1, np.int32)
            final[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
            out.final.append(final)
            np.save(os.path.join(vocab_dir, f"{name}.npy"), m.raw[kept - 1])
            out.vocab[name] = {
                "size": len(kept) + 1,
                "distinct_in_train": int((c[1:] > 0).sum()),
                "rare_ids": int(((c[1:] > 0) & (c[1:] < min_count)).sum()),
            }
            cls = np.where(c >= min_count, 1, np.where(c > 0, 2, 3)).astype(np.uint8)
            cls[0] = 0
            out.classes.append(cls)
        return out

    def user_ids(self) -> np.ndarray:
        """Provisional → final user id: 1.. in ascending raw id order (provisional ids depend on
        the block size), not thresholded."""
        user_raw = self.idmaps[0].raw
        user_map = np.zeros(len(user_raw) + 1, np.int32)
        user_map[np.argsort(user_raw, kind="stable") + 1] = np.arange(
            1, len(user_raw) + 1, dtype=np.int32
        )
        return user_map


class _SplitTotals:
    """Per split: label sums, rows per common-table row and per source-field id; the training
    range of the dense columns."""

    def __init__(self):
        self.label_sums = {s: np.zeros(2, np.int64) for s in shards.SPLITS}
        self.refcounts = {s: np.zeros(0, np.int64) for s in shards.SPLITS}
        self.source_counts = {s: np.zeros(1, np.int64) for s in shards.SPLITS}
        self.dense_min = np.full(len(DENSE), np.inf)
        self.dense_max = np.full(len(DENSE), -np.inf)

    def add(self, split: str, block: dict, source_field: int | None) -> None:
        self.label_sums[split] += block["labels"].sum(axis=0).astype(np.int64)
        self.refcounts[split] = _add_bincount(self.refcounts[split], block["common_row"])
        if source_field is not None:
            sf = block["cat"][:, source_field]
            self.source_counts[split] = _add_bincount(self.source_counts[split], sf)
        if split == "train":
            np.minimum(self.dense_min, block["dense"].min(axis=0), out=self.dense_min)
            np.maximum(self.dense_max, block["dense"].max(axis=0), out=self.dense_max)

    def dense_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Training min and max of each dense column (0 for a column without values)."""
        lo = np.where(np.isfinite(self.dense_min), self.dense_min, 0.0)
        hi = np.where(np.isfinite(self.dense_max), self.dense_max, 0.0)
        return lo, hi


_SPLIT_COLUMNS = {
    "cat": (np.int32, (ar.NUM_FIELDS,)),
    "dense": (np.float32, (len(DENSE),)),
    "labels": (np.float32, (len(TASKS),)),
    "source": (np.int32, ()),
    "user": (np.int32, ()),
    "sample_id": (np.int64, ()),
    "common_row": (np.int32, ()),
}


class _SplitWriters:
    """The writers of every split's columns and of its ragged item-side bags."""

    def __init__(self, opts: AliccpOptions):
        self.writers = {
            s: shards.SplitWriter(os.path.join(opts.out, s), _SPLIT_COLUMNS) for s in shards.SPLITS
        }
        self.ragged = {
            s: {
                f: (
                    shards.RaggedWriter(
                        os.path.join(opts.out, s), f"ragged_bag_{f}_ids",
                        f"ragged_bag_{f}_ends", np.int32,
                    ),
                    shards.ColumnWriter(
                        os.path.join(opts.out, s, f"ragged_bag_{f}_w.npy"), np.float32
                    ),
                )
                for f in (ar.SKELETON_BAGS if opts.max_bag_len else ())
            }
            for s in shards.SPLITS
        }  # fmt: skip

    def append(self, split: str, block: dict, bags: dict) -> None:
        """Appends rows: ``block`` the columns, ``bags`` field → (ids, w, lengths) ragged."""
        self.writers[split].append(block)
        for f, (ids, w, n) in bags.items():
            ids_writer, w_writer = self.ragged[split][f]
            ids_writer.append(n, ids)
            w_writer.append(w)

    def close(self) -> dict[str, int]:
        """Closes every writer; returns the rows per split."""
        rows = {s: w.close() for s, w in self.writers.items()}
        for per in self.ragged.values():
            for ids_writer, w_writer in per.values():
                ids_writer.close()
                w_writer.close()
        return rows


class _Job:
    """The state one ``prepare aliccp`` run builds up over its phases."""

    def __init__(self, opts: AliccpOptions):
        self.opts = opts
        self.report = _RunReport(opts.skip_bad)
        self.vocab = _Vocabulary()
        self.totals = _SplitTotals()
        self.columns = _SplitWriters(opts)
        self.table_rows: dict[str, int] = {}  # rows of each common table


# ---- phase C: the common-features file → the common table (main side) -----------------------


@dataclasses.dataclass
class _CommonIndex:
    """What phase S needs of a common table: its sorted keys → rows, the keys of bad common
    lines, and the item-side bags that occur in common lines."""

    keys: np.ndarray
    rows: np.ndarray
    bad_keys: np.ndarray
    skeleton_slots: list[int]


def _common_columns(lb: int) -> dict:
    spec = {"cat": (np.int32, (ar.NUM_FIELDS,)), "dense_w": (np.float32, (len(DENSE),))}
    for f in ar.BAG_FIELDS if lb else ():
        spec[f"bag_{f}_ids"] = (np.int32, (lb,))
        spec[f"bag_{f}_w"] = (np.float32, (lb,))
    return spec


def _common_rows(res: CommonResult, vocab: _Vocabulary, lb: int, slots: set) -> dict:
    """The common-table rows of one block (provisional ids); adds to ``slots`` the item-side bags
    the block's common lines hold."""
    n = len(res.keys)
    block = {"cat": vocab.encode_fields(res.red.raw), "dense_w": res.red.w[:, _DENSE_INDEX]}
    for s, f in enumerate(ar.BAG_FIELDS if lb else ()):
        b = res.red.bags.get(s)
        if b is None:
            block[f"bag_{f}_ids"] = np.zeros((n, lb), np.int32)
            block[f"bag_{f}_w"] = np.zeros((n, lb), np.float32)
            continue
        if s in _SKELETON_SLOTS and len(b[0]):
            slots.add(s)
        block[f"bag_{f}_ids"], block[f"bag_{f}_w"] = ar.padded((vocab.encode(b[0], f), *b[1:]), lb)
    return block


def _key_index(path: str, keys: list, lines: list, bad: BadLines) -> tuple[np.ndarray, ...]:
    """Sorted keys and their table rows; a repeated key is a bad line (the first line wins)."""
    keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    lines = np.concatenate(lines) if lines else np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")
    keys, rows, lines = keys[order], order.astype(np.int64), lines[order]
    dup = np.flatnonzero(keys[1:] == keys[:-1]) + 1
    for i in dup[np.argsort(lines[dup], kind="stable")].tolist():  # in line order
        first = i - 1
        while first > 0 and keys[first - 1] == keys[i]:
            first -= 1
        bad.bad(
            path,
            int(lines[i]),
            f"common_feature_index {int(keys[i]):016x} repeats the key of line {int(lines[first])}",
            "duplicate common_feature_index",
        )
    keep = np.ones(len(keys), bool)
    keep[dup] = False
    return keys[keep], rows[keep]


def _read_common_table(job: _Job, split: str, bar) -> _CommonIndex:
    """Phase C: writes the common table of a split's file pair; returns its index."""
    opts, lb = job.opts, job.opts.max_bag_len
    path = os.path.join(opts.raw_dir, SPLIT_FILES[split][1])
    writer = shards.SplitWriter(os.path.join(opts.out, TABLES[split]), _common_columns(lb))
    keys, lines, bad_keys, slots = [], [], [], set()
    stats = {"lines": 0, "rows": 0}
    first_line = 1
    _CTX.clear()
    _CTX.update(common=path, max_bag_len=lb)
    try:
        tasks = ar.plan_blocks(path, opts.chunk_bytes)
        for res in workers.ordered_map(
            read_common_block, tasks, opts.workers, shared_bytes=4 * opts.chunk_bytes + (1 << 20)
        ):
            for i, reason, msg in res.problems:
                job.report.bad.bad(path, first_line + i, msg, reason)
            job.report.add_reduced(res.red, res.unknown_fields)
            writer.append(_common_rows(res, job.vocab, lb, slots))
            keys.append(res.keys.copy())
            lines.append(first_line + res.lines)
            bad_keys.append(res.bad_keys.copy())
            first_line += res.n_lines
            stats["lines"] += res.n_lines
            stats["rows"] += len(res.keys)
            bar.update(res.nbytes)
    finally:
        writer.close()
        _close_fds()
        _CTX.clear()
    index_keys, index_rows = _key_index(path, keys, lines, job.report.bad)
    job.table_rows[TABLES[split]] = stats["rows"]
    stats["keys"] = len(index_keys)
    job.report.files[SPLIT_FILES[split][1]] = stats
    return _CommonIndex(
        keys=index_keys,
        rows=index_rows,
        bad_keys=np.unique(np.concatenate(bad_keys)) if bad_keys else np.zeros(0, np.uint64),
        skeleton_slots=sorted(slots),
    )


# ---- phase S: the skeleton file → the splits (main side) --------------------------------------


def _split_bag_rows(bag: tuple, idx: np.ndarray | None) -> tuple:
    """The entries (ids, w, lengths) of rows ``idx`` (None: all) of a ragged bag."""
    ids, w, n = bag
    if idx is None:
        return bag
    chosen = np.zeros(len(n), bool)
    chosen[idx] = True
    m = np.repeat(chosen, n)
    return ids[m], w[m], n[idx]


class _SkeletonJoin:
    """Phase S for one split file pair: joins every impression to its common row, assigns it to
    a split and appends it there. An impression with its own entries of a common bag gets a
    common-table row of its own (an *override*, appended to the table at the end)."""

    def __init__(self, job: _Job, split: str, index: _CommonIndex):
        self.job, self.opts, self.split, self.index = job, job.opts, split, index
        sk_name, cm_name = SPLIT_FILES[split]
        self.sk_name = sk_name
        self.sk_path = os.path.join(self.opts.raw_dir, sk_name)
        self.cm_path = os.path.join(self.opts.raw_dir, cm_name)
        self.table = TABLES[split]
        self.table_dir = os.path.join(self.opts.out, self.table)
        self.overrides: list[dict] = []
        self.next_table_row = job.table_rows[self.table]
        self.stats = {"lines": 0, "rows": 0, "dropped_click0_conversion1": 0, "missing_common": 0}
        f = self.opts.source_field
        self.source_field = None if f is None else ar.FIELD_INDEX[f]

    def run(self, bar) -> None:
        opts, index = self.opts, self.index
        _CTX.clear()
        _CTX.update(
            skeleton=self.sk_path, index_keys=index.keys, index_rows=index.rows,
            bad_keys=index.bad_keys, max_bag_len=opts.max_bag_len, table_dir=self.table_dir,
            common_skeleton_slots=index.skeleton_slots,
        )  # fmt: skip
        first_line = 1
        try:
            tasks = ar.plan_blocks(self.sk_path, opts.chunk_bytes)
            for res in workers.ordered_map(
                read_block, tasks, opts.workers, shared_bytes=8 * opts.chunk_bytes + (1 << 20)
            ):
                self._report(res, first_line)
                self._consume(res, first_line)
                first_line += res.n_lines
                self.stats["lines"] += res.n_lines
                self.stats["rows"] += len(res.rows)
                self.stats["dropped_click0_conversion1"] += res.anomalies
                bar.update(res.nbytes)
        finally:
            _close_fds()
            _CTX.clear()
        self._write_overrides()
        self.job.table_rows[self.table] = self.next_table_row
        # The table's single ids, weights and item-side bags served the join only.
        names = ["cat", "dense_w"]
        names += [f"bag_{f}_{k}" for f in ar.SKELETON_BAGS for k in ("ids", "w")]
        for name in names:
            p = os.path.join(self.table_dir, f"{name}.npy")
            if os.path.exists(p):
                os.remove(p)
        self.job.report.files[self.sk_name] = self.stats

    def _report(self, res: BlockResult, first_line: int) -> None:
        """Problems of a block in line order: raise the first, or count them all."""
        sk_path, cm_path, report = self.sk_path, self.cm_path, self.job.report
        events = [(i, 0, reason, msg) for i, reason, msg in res.problems]
        events += [
            (
                i,
                1,
                "common_feature_index not found",
                f"common_feature_index {key:016x} has no line in {cm_path}",
            )
            for i, key in res.missing
        ]
        events += [(i, 2, "", f"{key:016x}") for i, key in res.common_bad]
        events.sort(key=lambda e: e[0])
        for i, kind, reason, msg in events:
            line = first_line + i
            if kind == 2:  # the impression is fine; its common line was bad (already counted)
                report.bad.add(
                    "impression of a bad common_features line",
                    1,
                    f"{sk_path}:{line}: the common_features line of its key {msg} in {cm_path} "
                    "is bad",
                )
            else:
                if kind == 1:
                    self.stats["missing_common"] += 1
                report.bad.bad(sk_path, line, msg, reason)
        report.add_reduced(res.sk, res.unknown_fields)

    def _consume(self, res: BlockResult, first_line: int) -> None:
        """Joins a block's rows and appends each to its split."""
        if len(res.rows) == 0:
            return
        sk_cat = self.job.vocab.encode_fields(res.sk.raw)
        own = sk_cat > 0
        cat = np.where(own, sk_cat, res.cm_cat)
        dense = np.where(own[:, _DENSE_INDEX], res.sk.w[:, _DENSE_INDEX], res.cm_w)
        bags = self._item_bags(res)
        crow = self._common_rows(res)
        for s, idx in self._assign(res, cat, first_line).items():
            if idx is not None and not len(idx):
                continue

            def rows(a, idx=idx):
                return a if idx is None else a[idx]

            c = rows(cat)
            block = {
                "cat": c,
                "dense": rows(dense),
                "labels": rows(res.labels),
                "source": np.zeros(len(c), np.int32),
                "user": c[:, 0],
                "sample_id": rows(res.sample_id),
                "common_row": rows(crow).astype(np.int32),
            }
            split_bags = {f: _split_bag_rows(bag, idx) for f, bag in bags.items()}
            self.job.columns.append(s, block, split_bags)
            self.job.totals.add(s, block, self.source_field)
            if s == "train":
                self.job.vocab.count_training(c, split_bags, bool(self.opts.max_bag_len))

    def _item_bags(self, res: BlockResult) -> dict:
        """Skeleton bag field → (provisional ids, w, lengths [R]) of the block's rows: their own
        entries, or their common line's where they have none (rare)."""
        lb, R = self.opts.max_bag_len, len(res.rows)
        bags = {}
        for s in _SKELETON_SLOTS if lb else ():
            f = ar.BAG_FIELDS[s]
            own = res.sk.bags.get(s, (np.zeros(0, np.int64), np.zeros(0, np.float32), None))
            n = np.zeros(R, np.int32) if own[2] is None else own[2]
            ids, w = self.job.vocab.encode(own[0], f), own[1]
            if s in res.cm_bags:
                p_ids, p_w = ar.padded((ids, w, n), lb)
                use = n == 0
                p_ids[use], p_w[use] = res.cm_bags[s][0][use], res.cm_bags[s][1][use]
                n = (p_ids > 0).sum(axis=1).astype(np.int32)  # entries are left-packed
                keep = np.arange(lb)[None, :] < n[:, None]
                ids, w = p_ids[keep], p_w[keep]
            bags[f] = (ids, w, n)
        return bags

    def _common_rows(self, res: BlockResult) -> np.ndarray:
        """Each row's common-table row: its key's, or an override where it has own entries of
        a common bag."""
        crow = res.crow.copy()
        for s in _COMMON_SLOTS if self.opts.max_bag_len else ():
            own_bag = res.sk.bags.get(s)
            if own_bag is None:
                continue
            for r in np.flatnonzero(own_bag[2] > 0).tolist():
                crow[r] = self._override(crow[r], r, res)
        return crow

    def _assign(self, res: BlockResult, cat: np.ndarray, first_line: int) -> dict:
        """Split → the block's row indices in it (None: all rows)."""
        opts = self.opts
        if self.split == "test":
            return {"test": None}
        if opts.val_split == "random":
            h = unit_hash(first_line + res.rows, opts.seed)
        else:
            user = self.job.vocab.user_raw_ids(cat)
            ident = np.where(
                user >= 0,
                user.astype(np.uint64) << np.uint64(1),
                (res.keys << np.uint64(1)) | np.uint64(1),
            )
            h = unit_hash(ident, opts.seed)
        is_val = h < opts.val_fraction
        return {"train": np.flatnonzero(~is_val), "val": np.flatnonzero(is_val)}

    def _override(self, crow: int, r: int, res: BlockResult) -> int:
        """A new table row: the key's common bags with this impression's own ones instead."""
        lb = self.opts.max_bag_len
        row = {}
        for s in _COMMON_SLOTS:
            f = ar.BAG_FIELDS[s]
            own = res.sk.bags.get(s)
            if own is not None and own[2][r] > 0:
                off, k = int(own[2][:r].sum()), int(own[2][r])
                ids = np.zeros(lb, np.int32)
                w = np.zeros(lb, np.float32)
                ids[:k] = self.job.vocab.encode(own[0][off : off + k], f)
                w[:k] = own[1][off : off + k]
            else:
                ids, w = self._table_row(f, crow)
            row[f"bag_{f}_ids"] = np.array(ids, np.int32).reshape(lb)  # copies: res is reused
            row[f"bag_{f}_w"] = np.array(w, np.float32).reshape(lb)
        self.overrides.append(row)
        self.next_table_row += 1
        return self.next_table_row - 1

    def _table_row(self, f: str, crow: int):
        base = self.next_table_row - len(self.overrides)  # the first override row
        if crow >= base:
            row = self.overrides[crow - base]
            return row[f"bag_{f}_ids"], row[f"bag_{f}_w"]
        ids = np.load(os.path.join(self.table_dir, f"bag_{f}_ids.npy"), mmap_mode="r")[crow]
        w = np.load(os.path.join(self.table_dir, f"bag_{f}_w.npy"), mmap_mode="r")[crow]
        return np.array(ids), np.array(w)

    def _write_overrides(self) -> None:
        if not self.overrides:
            return
        for name in self.overrides[0]:
            w = shards.ColumnWriter.reopen(os.path.join(self.table_dir, f"{name}.npy"))
            w.append(np.stack([row[name] for row in self.overrides]))
            w.close()
        self.overrides = []


# ---- pass 2: vocabularies, then every column remapped in place (main side) --------------------


def _count_common_bags(job: _Job) -> None:
    """Counts the common bags' entries once per training row of their key."""
    lb, out = job.opts.max_bag_len, job.opts.out
    train_table = TABLES["train"]
    k = job.table_rows[train_table]
    rc = np.pad(job.totals.refcounts["train"], (0, k))[:k]
    for f in ar.COMMON_BAGS:
        for a, ids in _table_chunks(out, train_table, f"bag_{f}_ids"):
            w = np.repeat(rc[a : a + len(ids)].astype(np.float64), lb)
            job.vocab.count(ar.FIELD_INDEX[f], ids, weights=w)


def _source_listing(job: _Job, finals: list[np.ndarray]) -> dict:
    """Source ids of the ``--source-field`` values (see the module docstring)."""
    f = ar.FIELD_INDEX[job.opts.source_field]
    final = finals[f]
    kept = int(final.max())
    per_split = {}
    other = False
    for s, c in job.totals.source_counts.items():
        c = np.pad(c, (0, max(0, len(final) - len(c))))[: len(final)]
        per_split[s] = np.bincount(final, weights=c, minlength=kept + 1).astype(np.int64)
        other |= bool(per_split[s][0])
    num = kept + int(other)
    of_final_id = np.concatenate([[kept], np.arange(kept)]).astype(np.int32)
    raw = job.vocab.idmaps[f].raw
    kept_prov = np.flatnonzero(final)  # provisional ids in vocabulary order
    kept_prov = kept_prov[np.argsort(final[kept_prov])]
    listing = [
        {
            "source": i,
            "raw_id": int(raw[p - 1]),
            "rows": {s: int(per_split[s][i + 1]) for s in per_split},
        }
        for i, p in enumerate(kept_prov.tolist())
    ]
    if other:
        listing.append(
            {
                "source": kept,
                "raw_id": None,
                "values": "missing, rare or unseen",
                "rows": {s: int(per_split[s][0]) for s in per_split},
            }
        )
    return {"field": job.opts.source_field, "num_sources": num, "sources": listing,
            "of_final_id": of_final_id}  # fmt: skip


def _remap_tasks(job: _Job, rows: dict[str, int]) -> list[tuple]:
    """The ``remap`` tasks: parts of every split, ragged bag column and common-bag column."""
    out, step = job.opts.out, _REMAP_TASK_ROWS
    tasks = [
        ("rows", s, a, min(rows[s], a + step))
        for s in shards.SPLITS
        for a in range(0, rows[s], step)
    ]
    if not job.opts.max_bag_len:
        return tasks
    for s in shards.SPLITS:
        for f in ar.SKELETON_BAGS:
            n = shards.column_spec(os.path.join(out, s))[f"ragged_bag_{f}_ids"]["shape"][0]
            tasks += [
                ("flat", s, f"ragged_bag_{f}_ids", f, a, min(n, a + 16 * step))
                for a in range(0, n, 16 * step)
            ]
    for t in TABLES.values():
        for f in ar.COMMON_BAGS:
            tasks.append(("table", t, f"bag_{f}_ids", f, 0, job.table_rows[t]))
    return tasks


def _remap_all(job: _Job, rows: dict, ids: _FinalIds, dense_range: tuple, sources) -> dict:
    """Runs ``remap`` over everything written; returns per split the [F + NB, 4] id classes."""
    opts = job.opts
    # One table over all fields (field f's provisional id p is entry offsets[f] + p), so a
    # block of rows is remapped with one gather instead of one per field.
    offsets = np.cumsum([0] + [len(f) for f in ids.final[:-1]]).astype(np.int32)
    field_of = np.repeat(np.arange(ar.NUM_FIELDS, dtype=np.int32), [len(f) for f in ids.final])
    _CTX.clear()
    _CTX.update(
        out=opts.out, final=np.concatenate(ids.final), offsets=offsets,
        cls=np.concatenate(ids.classes), code=np.concatenate(ids.classes) + 4 * field_of,
        user_map=job.vocab.user_ids(), scale=_dense_scaling(*dense_range),
        max_bag_len=opts.max_bag_len,
        source_of=None if sources is None else sources["of_final_id"],
        source_field=None if opts.source_field is None else ar.FIELD_INDEX[opts.source_field],
        # A common-table row counts once per row of each split that joins it.
        refcounts={
            s: np.pad(rc, (0, max(0, job.table_rows[SPLIT_TABLE[s]] - len(rc))))
            for s, rc in job.totals.refcounts.items()
        },
    )  # fmt: skip
    tasks = _remap_tasks(job, rows)
    counts = {s: np.zeros((ar.NUM_FIELDS + ar.NUM_BAGS, 4), np.int64) for s in shards.SPLITS}
    try:
        for task, c in zip(tasks, workers.ordered_map(remap, tasks, opts.workers)):
            if task[0] == "rows":
                counts[task[1]] += c
                continue
            b = ar.NUM_FIELDS + ar.BAG_FIELDS.index(task[3])
            per_split = c if task[0] == "table" else {task[1]: c}
            for s, cs in per_split.items():
                counts[s][b] += cs
    finally:
        _CTX.clear()
    return counts


def _id_stats(c: np.ndarray, lb: int) -> dict:
    """``metadata["ids"]`` of one split from its [F + NB, 4] id classes."""
    out = {
        "fields": {
            name: {k: int(v) for k, v in zip(_CLASSES, c[f]) if k != "kept"}
            for f, name in enumerate(ar.FIELD_NAMES)
        }
    }
    if lb:
        out["bags"] = {
            name: {
                "entries": int(c[ar.NUM_FIELDS + b, 1:].sum()),
                "rare": int(c[ar.NUM_FIELDS + b, 2]),
                "unseen": int(c[ar.NUM_FIELDS + b, 3]),
            }
            for b, name in enumerate(ar.BAG_FIELDS)
        }
    return out


def _split_info(path: str, n: int, label_sums: np.ndarray) -> dict:
    """``metadata["splits"]`` of one split."""
    clicks, orders = (int(x) for x in label_sums)
    return {
        "rows": n,
        "columns": shards.column_spec(path),
        "clicks": clicks,
        "conversions": orders,
        "click_rate": clicks / n if n else 0.0,
        "conversion_rate": orders / n if n else 0.0,
        "cvr": orders / clicks if clicks else 0.0,
    }


def _finish(job: _Job) -> dict:
    """Pass 2: the vocabularies, then every column rewritten with the final ids; returns the
    metadata parts it determined."""
    opts = job.opts
    rows = job.columns.close()
    if opts.max_bag_len:  # the common bags count once per training row of their key
        _count_common_bags(job)
    ids = job.vocab.finalize(opts.min_count, os.path.join(opts.out, "vocab"))
    dense_range = job.totals.dense_range()
    sources = _source_listing(job, ids.final) if opts.source_field is not None else None
    counts = _remap_all(job, rows, ids, dense_range, sources)
    return {
        "splits": {
            s: _split_info(os.path.join(opts.out, s), rows[s], job.totals.label_sums[s])
            for s in shards.SPLITS
        },
        "tables": {
            t: {"rows": job.table_rows[t], "columns": shards.column_spec(os.path.join(opts.out, t))}
            for t in TABLES.values()
        },
        "vocab": ids.vocab,
        "ids": {s: _id_stats(counts[s], opts.max_bag_len) for s in shards.SPLITS},
        "dense": dense_range,
        "sources": sources,
    }


def _table_chunks(out: str, table: str, column: str, rows: int = 1 << 16):
    """(first row, ids) chunks of a common-table column, each mapped on its own."""
    path = os.path.join(out, table, f"{column}.npy")
    n = np.load(path, mmap_mode="r").shape[0]
    for a in range(0, n, rows):
        yield a, np.array(shards.open_rows(path, a, min(n, a + rows), mode="r"))


def _dense_scaling(lo: np.ndarray, hi: np.ndarray) -> dict:
    """MinMax parameters of the dense columns. In float32 as the columns are (the result is
    exact to the float32 rounding), or in float64 where ``hi - lo`` overflows float32 (weights
    are finite float32 numbers, so their float64 span is finite): no NaN or inf from finite
    input."""
    lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
    with np.errstate(over="ignore"):
        span32 = hi32 - lo32
    wide = ~np.isfinite(span32)
    span32 = np.where(hi32 > lo32, span32, np.float32(1.0)).astype(np.float32)
    span64 = np.where(hi > lo, hi - lo, 1.0)
    return {"lo32": lo32, "span32": span32, "lo64": lo, "span64": span64, "wide": wide}


def _scale(dense: np.ndarray, sc: dict) -> None:
    """MinMax-scales [R, 8] float32 dense columns in place (see ``_dense_scaling``)."""
    if sc["wide"].any():
        d64 = (dense.astype(np.float64) - sc["lo64"]) / sc["span64"]
        wide = sc["wide"]
        dense[:, wide] = np.clip(d64[:, wide], 0.0, 1.0)
        narrow = ~wide
        d = dense[:, narrow]
        d = np.clip((d - sc["lo32"][narrow]) / sc["span32"][narrow], 0.0, 1.0)
        dense[:, narrow] = d
        return
    with np.errstate(over="ignore"):  # inf / span → clipped to 1; never inf - inf
        np.subtract(dense, sc["lo32"], out=dense)
        np.divide(dense, sc["span32"], out=dense)
    np.clip(dense, 0.0, 1.0, out=dense)


def remap(task: tuple) -> np.ndarray:
    """Pass 2 on part of a split or table, in place: provisional → final ids, raw → scaled dense,
    provisional → final user ids, source ids. Returns the id classes it saw: [F + NB, 4] counts of
    (missing, kept, rare, unseen) for rows, [4] for a flat bag column, and {split: [4]} for a
    common bag (each table row weighted by the split's rows that join it).

    Each chunk of rows is mapped on its own (``shards.open_rows``), so the resident memory stays
    at one chunk whatever the size of the split. Ids go through the all-fields tables of
    ``_remap_all`` (one gather per column and chunk) and are written straight into the map.
    """
    x = _CTX
    F = ar.NUM_FIELDS
    if task[0] == "rows":
        _, split, a, b = task
        counts = np.zeros((F + ar.NUM_BAGS, 4), np.int64)

        def cols(name, lo, hi):
            return shards.open_rows(os.path.join(x["out"], split, f"{name}.npy"), lo, hi)

        for lo in range(a, b, _REMAP_ROWS):
            hi = min(b, lo + _REMAP_ROWS)
            cat = cols("cat", lo, hi)
            idx = cat + x["offsets"]  # [R, F] positions in the all-fields tables
            counts[:F] += np.bincount(x["code"][idx].ravel(), minlength=4 * F).reshape(F, 4)
            np.take(x["final"], idx, out=cat, mode="clip")
            user = cols("user", lo, hi)
            np.take(x["user_map"], np.array(user), out=user, mode="clip")
            dense = cols("dense", lo, hi)
            _scale(dense, x["scale"])
            if x["source_of"] is not None:  # final id of the source field → source id
                source = cols("source", lo, hi)
                source[:] = x["source_of"][cat[:, x["source_field"]]]
                del source
            del cat, user, dense  # unmapped: dirty pages go to the page cache, not kept resident
        return counts
    kind, where, column, field, a, b = task
    f = ar.FIELD_INDEX[field]
    path = os.path.join(x["out"], where, f"{column}.npy")
    users = [s for s, t in SPLIT_TABLE.items() if t == where] if kind == "table" else []
    out = np.zeros(4, np.int64) if kind == "flat" else {s: np.zeros(4, np.int64) for s in users}
    step = _REMAP_ROWS * (16 if kind == "flat" else 1)
    for lo in range(a, b, step):
        hi = min(b, lo + step)
        ids = shards.open_rows(path, lo, hi)
        idx = ids + x["offsets"][f]
        cls = x["cls"][idx]
        if kind == "flat":
            out += np.bincount(cls.ravel(), minlength=4)
        else:  # [rows, Lb]: per row class counts, weighted by the rows joining it
            r = np.repeat(np.arange(hi - lo), cls.shape[1])
            per_row = np.bincount(r * 4 + cls.ravel(), minlength=4 * (hi - lo)).reshape(-1, 4)
            for s in users:
                out[s] += x["refcounts"][s][lo:hi] @ per_row
        np.take(x["final"], idx, out=ids, mode="clip")
        del ids
    return out


def aliccp_schema(vocab_sizes: dict[str, int], opts: AliccpOptions, num_sources: int) -> Schema:
    seq = None
    if opts.seq_field is not None:
        seq = SequenceFeature(
            name="behaviour",
            table=opts.seq_field,
            target=ar.SEQUENCE_TARGETS[opts.seq_field],
            max_len=opts.max_bag_len,
            num_locations=1,
        )
    return Schema(
        categorical=tuple(
            CategoricalFeature(name, vocab_sizes[name], group=group)
            for name, (_, group) in FIELDS.items()
        ),
        dense=DENSE,
        sequence=seq,
        tasks=TASKS,
        user_field="101",
        num_sources=num_sources,
    )


def _prepare_out_dir(opts: AliccpOptions) -> None:
    out = opts.out
    if os.path.exists(out) and os.listdir(out):
        if not opts.overwrite:
            raise FileExistsError(f"--out {out} is not empty; pass --overwrite to replace it")
        for name in (*shards.SPLITS, *TABLES.values(), "vocab"):
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        for name in (shards.METADATA, shards.METADATA + ".tmp"):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    os.makedirs(out, exist_ok=True)


def _layout(opts: AliccpOptions) -> dict:
    """The metadata entries that say how the logical columns are stored (``shards.py``)."""
    lb = opts.max_bag_len
    out: dict = {
        "aliases": (
            {"seq_item": f"bag_{opts.seq_field}_ids", "seq_days": f"bag_{opts.seq_field}_w"}
            if opts.seq_field
            else {}
        ),
        "zeros": {"seq_loc": {"dtype": "<i4", "shape": [lb]}} if opts.seq_field else {},
    }
    if lb:
        out["joins"] = {
            s: {
                "index": "common_row",
                "table": SPLIT_TABLE[s],
                "columns": [f"bag_{f}_{k}" for f in ar.COMMON_BAGS for k in ("ids", "w")],
            }
            for s in shards.SPLITS
        }
        out["ragged"] = {
            f"bag_{f}_{k}": {
                "values": f"ragged_bag_{f}_{k}",
                "ends": f"ragged_bag_{f}_ends",
                "width": lb,
            }
            for f in ar.SKELETON_BAGS
            for k in ("ids", "w")
        }
    return out


def prepare_aliccp(opts: AliccpOptions) -> dict:
    """Runs the whole preprocessing; returns the metadata it wrote (see the module docstring)."""
    opts.check()
    files = []
    for split, names in SPLIT_FILES.items():
        for name in names:
            path = os.path.join(opts.raw_dir, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"--raw-dir {opts.raw_dir}: missing {name} (expected the four Ali-CCP files "
                    f"{[n for ns in SPLIT_FILES.values() for n in ns]})"
                )
            files.append((split, path))
    _prepare_out_dir(opts)
    from tqdm.auto import tqdm

    total = sum(os.path.getsize(p) for _, p in files)
    t0 = time.perf_counter()
    job = _Job(opts)
    try:
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="prepare aliccp",
            disable=not opts.progress,
            mininterval=1.0,
        ) as bar:
            for split in SPLIT_FILES:
                index = _read_common_table(job, split, bar)
                _SkeletonJoin(job, split, index).run(bar)
    except BaseException:
        job.columns.close()  # the directory stays without metadata.json: never complete
        raise
    t1 = time.perf_counter()
    res = _finish(job)
    seconds = time.perf_counter() - t0
    vocab_sizes = {k: v["size"] for k, v in res["vocab"].items()}
    src = res["sources"]
    schema = aliccp_schema(vocab_sizes, opts, 1 if src is None else src["num_sources"])
    meta = {
        "format": shards.FORMAT,
        "dataset": "aliccp",
        "schema": schema.to_dict(),
        "splits": res["splits"],
        "tables": res["tables"],
        **_layout(opts),
        "vocabulary": res["vocab"],
        "ids": res["ids"],
        "dense": {
            "columns": list(DENSE),
            "train_min": res["dense"][0].tolist(),
            "train_max": res["dense"][1].tolist(),
        },
        "dropped": job.report.dropped(),
        "files": job.report.files,
        "sources": [
            {"split": s, "path": os.path.abspath(p), "bytes": os.path.getsize(p)} for s, p in files
        ],
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("out",)},
        "kept_entry": "highest weight, first on ties",
        "timing": {
            "seconds": seconds,
            "pass1_seconds": t1 - t0,
            "input_bytes": total,
            "mb_per_s": total / 1e6 / seconds,
        },
    }
    if src is not None:
        meta["source_field"] = {k: v for k, v in src.items() if k != "of_final_id"}
    shards.write_metadata(opts.out, meta)
    if opts.skip_bad:  # what was skipped, per reason, with the first example of each
        log = logging.warning if job.report.bad.total else logging.info
        log("%s", job.report.bad.summary())
    return meta


def summary(meta: dict) -> str:
    """A human-readable end-of-run report."""
    t = meta["timing"]
    lines = [
        f"prepared {meta['dataset']}: {t['input_bytes'] / 1e6:.1f} MB in {t['seconds']:.1f} s "
        f"({t['mb_per_s']:.1f} MB/s)"
    ]
    for s, info in meta["splits"].items():
        lines.append(
            f"  {s:5s} {info['rows']:>12,} rows  click {info['click_rate']:.4%}  "
            f"conversion {info['conversion_rate']:.4%}  cvr {info['cvr']:.4%}"
        )
    d = meta["dropped"]
    lines.append(f"  dropped click=0 & conversion=1: {d['click0_conversion1']}")
    lines.append(
        f"  bad lines skipped: {d['bad_lines']['skipped_lines']} {d['bad_lines']['by_reason']}"
    )
    if d["unknown_field_entries"]:
        lines.append(f"  entries of unknown fields (ignored): {d['unknown_field_entries']}")
    for s, st in meta["ids"].items():
        rare = sum(v["rare"] for v in st["fields"].values())
        unseen = sum(v["unseen"] for v in st["fields"].values())
        lines.append(f"  {s:5s} single ids → 0: rare {rare:,}, unseen {unseen:,}")
    sizes = {k: v["size"] for k, v in meta["vocabulary"].items()}
    lines.append(f"  vocabulary sizes (incl. 0): {sizes}")
    if "source_field" in meta:
        sf = meta["source_field"]
        lines.append(f"  sources: field {sf['field']}, {sf['num_sources']} sources")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mtl_jax.data.prepare", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="dataset", required=True)
    a = sub.add_parser("aliccp", help="raw Ali-CCP (sample_skeleton_* + common_features_*)")
    a.add_argument("--raw-dir", required=True, help="directory of the four raw csv files")
    a.add_argument("--out", required=True, help="output directory (train/ val/ test/ vocab/)")
    a.add_argument("--min-count", type=int, default=10, help="min training count to keep an id")
    a.add_argument("--max-bag-len", type=int, default=20, help="entries kept per bag (0: none)")
    a.add_argument(
        "--seq-field",
        default="127_14",
        help=f"behaviour bag that becomes the DIN sequence: one of {SEQ_FIELDS} or none",
    )
    a.add_argument(
        "--source-field",
        default=None,
        help="categorical field whose values are the data sources (e.g. 301, the position)",
    )
    a.add_argument("--val-split", default="random", choices=VAL_SPLITS)
    a.add_argument("--val-fraction", type=float, default=0.1)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--skip-bad", action="store_true", help="skip and count bad lines")
    a.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="reader processes (1: read in this process)",
    )
    a.add_argument("--chunk-mb", type=float, default=4.0, help="block size in MB")
    a.add_argument("--no-progress", action="store_true")
    a.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    cli.add_traceback_flag(a)
    args = p.parse_args(argv)
    opts = AliccpOptions(
        raw_dir=args.raw_dir,
        out=args.out,
        min_count=args.min_count,
        max_bag_len=args.max_bag_len,
        seq_field=None if args.seq_field.lower() == "none" else args.seq_field,
        source_field=args.source_field,
        val_split=args.val_split,
        val_fraction=args.val_fraction,
        seed=args.seed,
        skip_bad=args.skip_bad,
        workers=args.workers,
        chunk_bytes=int(args.chunk_mb * (1 << 20)),
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    meta = prepare_aliccp(opts)  # bad input raises; cli.run prints it as one line, status 2
    print(summary(meta))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
