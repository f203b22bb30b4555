"""Raw Ali-CCP → memory-mappable shards, streaming in bounded memory.

CLI::

    python -m mtl_jax.data.prepare aliccp --raw-dir DIR --out DIR [--min-count 10]
        [--max-bag-len 20] [--seq-field 127_14] [--val-split random|user] [--val-fraction 0.1]
        [--seed 0] [--skip-bad] [--workers N] [--chunk-mb 4] [--no-progress] [--overwrite]

``DIR`` holds ``sample_skeleton_{train,test}.csv`` and ``common_features_{train,test}.csv``.
The output is read with ``config.data.kind = "prepared"`` (``configs/aliccp.py``).

How it works
------------
1. For each split file pair, one pass over ``common_features_*.csv`` builds a sorted index
   (key → byte offset, :class:`aliccp_raw.CommonIndex`). The file is not loaded.
2. The skeleton is cut into blocks of whole lines (``--chunk-mb``). Each block is parsed and
   reduced by a worker (``--workers`` processes; 1 = in this process): the block's impressions,
   and the common lines of its distinct keys read with one ``pread`` each — the skeleton is grouped
   by key, so each common line is read about once.
3. In order, the main process maps raw ids to provisional ids (per field, first seen), joins
   every impression to its common row (the impression's own entries win for a field on both
   sides), assigns it to train / val (a seeded hash of the skeleton line number, or of the user
   id 101 with ``--val-split user``) or test, appends it to the column shards and counts the ids
   of the training rows.
4. Vocabularies: per field, ids with ≥ ``--min-count`` training occurrences (counted per
   impression; bag fields count every kept bag entry) get final ids 1..K by descending count
   (ties by raw id); rare and unseen ids become 0. The shards are rewritten in place with the
   final ids and the dense columns MinMax-scaled with training statistics (clipped to [0, 1]).
5. ``metadata.json`` is written last: schema, row counts, label rates, vocabulary sizes,
   missing / rare / unseen counts per field and split, dropped rows (click=0 & conversion=1),
   skipped bad lines per reason, source files and sizes, timing.

Columns per split (see ``schema.py`` for the batch layout): ``cat`` [N, 23] int32 (fields in
torch-rechub's order), ``dense`` [N, 8] float32 (the weight of the kept entry of
109_14/110_14/127_14/150_14/508/509/702/853), ``labels`` [N, 2] (click, order = conversion),
``source`` [N], ``user`` [N] (1.. by raw user id 101, not thresholded: the GAUC groups),
``sample_id`` [N] int64, and per multi-valued field (210, 853, 109_14, 110_14, 127_14, 150_14)
``bag_<field>_ids`` [N, Lb] int32 and ``bag_<field>_w`` [N, Lb] float32: the ``Lb`` highest-weight
entries, heaviest first (0 / 0.0 padding; a rare id inside a bag becomes 0 in place). The
single id of a field in ``cat`` is its highest-weight entry, the first on ties (see
``aliccp_raw``). The DIN behaviour sequence is the ``--seq-field`` bag: ``seq_item`` /
``seq_days`` are aliases of ``bag_<seq>_ids`` / ``bag_<seq>_w`` (Ali-CCP has no timestamps; the
log-count weights take the role of recency), ``seq_loc`` is all zeros (not stored).

Which bag: 127_14 (the user's brands) by default. DIN attends the candidate against the history,
so the bag needs an item field of the same kind to be the target: 127_14 ↔ 216 (brand),
109_14 ↔ 206 (category), 110_14 ↔ 207 (shop), 150_14 ↔ 210 (intention). Brands are specific
enough to carry interest (58K ids vs 6K categories) without the sparsity of shops (117K ids, most
seen a few times), and the item side has one brand per item (210 has ~6 intention nodes). Raw
ids are disjoint between fields (a brand has one id in 127_14 and another in 216; the cross field
702 exists for that reason), so sharing the 216 table would give sequence ids that never occur
as targets: the sequence uses the 127_14 table (``SequenceFeature(table="127_14",
target="216")``) and DIN's attention MLP over [q, k, q − k, q · k] learns how brands relate.
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

from mtl_jax import cli
from mtl_jax.data import aliccp_raw as ar
from mtl_jax.data import shards, workers
from mtl_jax.data.errors import BadLines
from mtl_jax.data.schema import CategoricalFeature, Schema, SequenceFeature
from mtl_jax.data.synthetic import DENSE, FIELDS, TASKS

SPLIT_FILES = {
    "train": ("sample_skeleton_train.csv", "common_features_train.csv"),
    "test": ("sample_skeleton_test.csv", "common_features_test.csv"),
}
VAL_SPLITS = ("random", "user")
SEQ_FIELDS = tuple(ar.SEQUENCE_TARGETS)
_DENSE_INDEX = np.array([ar.FIELD_INDEX[f] for f in ar.DENSE_FIELDS])
_REMAP_ROWS = 1 << 16
_REMAP_TASK_ROWS = 1 << 20


@dataclasses.dataclass(frozen=True)
class AliccpOptions:
    """Options of ``prepare aliccp`` (the CLI flags of the same names)."""

    raw_dir: str
    out: str
    min_count: int = 10
    max_bag_len: int = 20
    seq_field: str | None = "127_14"
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
        if self.val_split not in VAL_SPLITS:
            raise ValueError(f"--val-split must be one of {VAL_SPLITS}, got {self.val_split!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.chunk_bytes < 1024:
            raise ValueError(f"--chunk-mb is too small ({self.chunk_bytes} bytes)")


# ---- provisional ids ---------------------------------------------------------------------------


class IdMap:
    """Raw feature id → provisional id 1, 2, ... of one field (0 stays "absent").

    Ids are looked up in a dense table over the field's id span while it stays under
    ``TABLE_LIMIT`` entries (each real Ali-CCP field spans at most a few million ids of the global
    id space), else in a sorted array. New ids of a block are numbered in ascending raw order.
    """

    TABLE_LIMIT = 1 << 24

    def __init__(self):
        self.size = 0
        self._raw = np.zeros(1024, np.int64)  # raw id of provisional id i + 1
        self.lo = 0
        self.table: np.ndarray | None = None
        self.keys: np.ndarray | None = None  # sorted mode: raw ids and their provisional ids
        self.vals: np.ndarray | None = None

    @property
    def raw(self) -> np.ndarray:
        return self._raw[: self.size]

    def _append(self, new_raw: np.ndarray) -> np.ndarray:
        ids = np.arange(self.size + 1, self.size + 1 + len(new_raw), dtype=np.int32)
        if self.size + len(new_raw) > len(self._raw):
            grown = np.zeros(max(2 * len(self._raw), self.size + len(new_raw)), np.int64)
            grown[: self.size] = self._raw[: self.size]
            self._raw = grown
        self._raw[self.size : self.size + len(new_raw)] = new_raw
        self.size += len(new_raw)
        return ids

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Provisional ids (int32, ≥ 1) of ``raw`` (int64, ≥ 0), assigning new ones."""
        if raw.size == 0:
            return np.zeros(raw.shape, np.int32)
        if self.keys is None and self._fit_table(int(raw.min()), int(raw.max())):
            idx = raw - self.lo
            prov = self.table[idx]
            new = prov == 0
            if new.any():
                u = np.unique(raw[new])
                self.table[u - self.lo] = self._append(u)
                prov = self.table[idx]
            return prov
        return self._encode_sorted(raw)

    def _fit_table(self, lo: int, hi: int) -> bool:
        """Makes the table cover [lo, hi]; False (and sorted mode) when the span is too wide."""
        if self.table is not None and lo >= self.lo and hi < self.lo + len(self.table):
            return True
        new_lo = lo if self.table is None else min(lo, self.lo)
        new_hi = hi if self.table is None else max(hi, self.lo + len(self.table) - 1)
        span = new_hi - new_lo + 1
        if span > self.TABLE_LIMIT:
            self._to_sorted()
            return False
        slack = min(span // 4, self.TABLE_LIMIT - span)  # room to grow without re-copying
        start = max(0, new_lo - slack // 2)
        table = np.zeros(span + slack, np.int32)
        if self.table is not None:
            table[self.lo - start : self.lo - start + len(self.table)] = self.table
        self.lo, self.table = start, table
        return True

    def _to_sorted(self) -> None:
        if self.table is not None:
            nz = np.flatnonzero(self.table)
            self.keys, self.vals = nz.astype(np.int64) + self.lo, self.table[nz]
            self.table = None
        else:
            self.keys, self.vals = np.zeros(0, np.int64), np.zeros(0, np.int32)

    def _encode_sorted(self, raw: np.ndarray) -> np.ndarray:
        u, inv = np.unique(raw, return_inverse=True)
        pos = np.searchsorted(self.keys, u)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == u[found]
        prov_u = np.empty(len(u), np.int32)
        prov_u[found] = self.vals[pos[found]]
        new = u[~found]
        if len(new):
            ids = self._append(new)
            prov_u[~found] = ids
            at = np.searchsorted(self.keys, new)
            self.keys = np.insert(self.keys, at, new)
            self.vals = np.insert(self.vals, at, ids)
        return prov_u[inv.reshape(raw.shape)]


@dataclasses.dataclass
class Encoded:
    """``aliccp_raw.Reduced`` with provisional ids: cat [n, F] int32 (0 absent), w [n, F],
    bags slot → (ids [n, Lb] int32 (0 empty), weights, lengths)."""

    cat: np.ndarray
    w: np.ndarray
    bags: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]


def encode(red: ar.Reduced, idmaps: list[IdMap]) -> Encoded:
    cat = np.zeros(red.raw.shape, np.int32)
    for f in range(ar.NUM_FIELDS):
        col = red.raw[:, f]
        present = col >= 0
        if present.all():
            cat[:, f] = idmaps[f].encode(col)
        elif present.any():
            cat[present, f] = idmaps[f].encode(col[present])
    bags = {}
    for s, (ids, w, length) in red.bags.items():
        out = np.zeros(ids.shape, np.int32)
        m = ids >= 0
        out[m] = idmaps[ar.FIELD_INDEX[ar.BAG_FIELDS[s]]].encode(ids[m])
        bags[s] = (out, w, length)
    return Encoded(cat=cat, w=red.w, bags=bags)


# ---- per-block work (a worker process, or this one) -------------------------------------------


@dataclasses.dataclass
class BlockResult:
    """What a reader returns for one skeleton block (line indices are block-relative)."""

    n_lines: int
    nbytes: int
    problems: list  # (line index, reason, message) of bad skeleton lines
    missing: list  # (line index, key) whose key has no common line
    common_bad: list  # (line index, common line number, reason, message)
    anomalies: int  # click=0 & conversion=1 rows (dropped)
    rows: np.ndarray  # kept line indices
    sample_id: np.ndarray
    labels: np.ndarray  # [R, 2] float32
    sk: ar.Reduced  # the kept rows' own entries
    cm: ar.Reduced  # the block's common rows
    cidx: np.ndarray  # kept row → common row
    keys: np.ndarray  # kept row → key
    unknown_fields: dict


_CTX: dict = {}  # set before the readers start (inherited by forked workers)


def read_block(task: tuple[int, int, bool]) -> BlockResult:
    """Parses and reduces one skeleton block and the common lines it refers to."""
    offset, length, unterminated = task
    path, index, lb = _CTX["skeleton"], _CTX["index"], _CTX["max_bag_len"]
    if _CTX.get("fd") is None:
        _CTX["fd"] = os.open(path, os.O_RDONLY)
    buf = ar.Buffer.read(_CTX["fd"], offset, length, add_newline=unterminated)
    blk = ar.parse_block(buf, "skeleton")
    if unterminated:
        blk.ok[-1] = False
    problems = [
        (i, p.reason, p.message)
        for i, p in ar.bad_line_problems(blk, buf, "skeleton", unterminated=unterminated)
    ]
    ok = blk.ok
    anomaly = ok & (blk.click == 0) & (blk.conversion == 1)
    cand = np.flatnonzero(ok & ~anomaly)
    keys = blk.key[cand]
    uk, inv = np.unique(keys, return_inverse=True)
    irow = index.find(uk)
    missing = [(int(cand[j]), int(keys[j])) for j in np.flatnonzero(irow[inv] < 0).tolist()]

    found = np.flatnonzero(irow >= 0)
    cdata = index.read(irow[found]) if len(found) else b""
    cblk = ar.parse_block(cdata, "common") if len(found) else None
    good_c = np.zeros(len(uk), bool)
    common_bad = []
    if cblk is not None:
        good_c[found] = cblk.ok
        for i, p in ar.bad_line_problems(cblk, cdata, "common"):
            line_no = int(index.lines[irow[found[i]]])
            for j in np.flatnonzero(inv == found[i]).tolist():
                common_bad.append((int(cand[j]), line_no, p.reason, p.message))
    keep = good_c[inv]
    rows = cand[keep]
    crow_of_uk = np.full(len(uk), -1, np.int64)  # uk → row of the reduced common table
    good_found = found[cblk.ok] if cblk is not None else found
    crow_of_uk[good_found] = np.arange(len(good_found))
    if cblk is not None:
        line_map = np.full(cblk.n, -1, np.int64)
        line_map[cblk.ok] = np.arange(len(good_found))
        e = line_map[cblk.e_line] >= 0
        cm = ar.reduce_entries(
            len(good_found),
            line_map[cblk.e_line[e]],
            cblk.e_field[e],
            cblk.e_id[e],
            cblk.e_w[e],
            lb,
        )
    else:
        cm = ar.reduce_entries(0, *(np.zeros(0, np.int64),) * 3, np.zeros(0, np.float32), lb)

    row_map = np.full(blk.n, -1, np.int64)
    row_map[rows] = np.arange(len(rows))
    e = row_map[blk.e_line] >= 0
    sk = ar.reduce_entries(
        len(rows), row_map[blk.e_line[e]], blk.e_field[e], blk.e_id[e], blk.e_w[e], lb
    )
    unknown = collections.Counter(blk.unknown_fields)
    if cblk is not None:
        unknown.update(cblk.unknown_fields)
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
        cm=cm,
        cidx=crow_of_uk[inv[keep]],
        keys=keys[keep],
        unknown_fields=dict(unknown),
    )


# ---- the job ----------------------------------------------------------------------------------


class _Job:
    def __init__(self, opts: AliccpOptions):
        self.o = opts
        self.bad = BadLines(opts.skip_bad)
        self.idmaps = [IdMap() for _ in ar.FIELD_NAMES]
        self.counts = [np.zeros(1, np.int64) for _ in ar.FIELD_NAMES]
        self.dense_min = np.full(len(DENSE), np.inf)
        self.dense_max = np.full(len(DENSE), -np.inf)
        self.label_sums = {s: np.zeros(2, np.int64) for s in shards.SPLITS}
        self.file_stats: dict[str, dict] = {}
        self.unknown = collections.Counter()
        self.repeats = np.zeros(ar.NUM_FIELDS, np.int64)
        self.truncated = np.zeros(ar.NUM_BAGS, np.int64)
        self.bad_common_lines: set[tuple[str, int]] = set()
        lb = opts.max_bag_len
        spec = {
            "cat": (np.int32, (ar.NUM_FIELDS,)),
            "dense": (np.float32, (len(DENSE),)),
            "labels": (np.float32, (len(TASKS),)),
            "source": (np.int32, ()),
            "user": (np.int32, ()),
            "sample_id": (np.int64, ()),
        }
        if lb:
            for f in ar.BAG_FIELDS:
                spec[f"bag_{f}_ids"] = (np.int32, (lb,))
                spec[f"bag_{f}_w"] = (np.float32, (lb,))
        self.writers = {
            s: shards.SplitWriter(os.path.join(opts.out, s), spec) for s in shards.SPLITS
        }

    # -- pass 1 -----------------------------------------------------------------------------
    def run_file(self, split: str, bar) -> None:
        sk_name, cm_name = SPLIT_FILES[split]
        sk_path = os.path.join(self.o.raw_dir, sk_name)
        cm_path = os.path.join(self.o.raw_dir, cm_name)
        stats = {"lines": 0, "rows": 0, "dropped_click0_conversion1": 0, "missing_common": 0}
        index = ar.CommonIndex(cm_path, self.bad, progress=bar)
        stats["common_lines_indexed"] = len(index)
        _CTX.clear()
        _CTX.update(skeleton=sk_path, index=index, max_bag_len=self.o.max_bag_len)
        first_line = 1
        try:
            tasks = ar.plan_blocks(sk_path, self.o.chunk_bytes)
            for res in workers.ordered_map(
                read_block, tasks, self.o.workers, shared_bytes=8 * self.o.chunk_bytes + (1 << 20)
            ):
                self._report(res, first_line, sk_path, cm_path, stats)
                self._consume(res, split, first_line)
                first_line += res.n_lines
                stats["lines"] += res.n_lines
                stats["rows"] += len(res.rows)
                stats["dropped_click0_conversion1"] += res.anomalies
                bar.update(res.nbytes)
        finally:
            if _CTX.get("fd") is not None:
                os.close(_CTX["fd"])
            _CTX.clear()
            index.close()
        self.file_stats[sk_name] = stats

    def _report(self, res: BlockResult, first_line: int, sk_path, cm_path, stats) -> None:
        """Problems of a block in line order: raise the first, or count them all."""
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
        events += [(i, 2, (ln, reason), msg) for i, ln, reason, msg in res.common_bad]
        events.sort(key=lambda e: e[0])
        for i, kind, reason, msg in events:
            line = first_line + i
            if kind == 2:  # the impression is fine; its common line is bad
                ln, why = reason
                if (cm_path, ln) not in self.bad_common_lines:
                    self.bad_common_lines.add((cm_path, ln))
                    self.bad.bad(cm_path, ln, msg, why)
                self.bad.add(
                    "impression of a bad common_features line",
                    1,
                    f"{sk_path}:{line}: its common_features line {cm_path}:{ln} is bad",
                )
            else:
                if kind == 1:
                    stats["missing_common"] += 1
                self.bad.bad(sk_path, line, msg, reason)
        self.unknown.update(res.unknown_fields)
        self.repeats += res.sk.repeats + res.cm.repeats
        self.truncated += res.sk.truncated + res.cm.truncated

    def _consume(self, res: BlockResult, split: str, first_line: int) -> None:
        R = len(res.rows)
        if R == 0:
            return
        sk = encode(res.sk, self.idmaps)
        cm = encode(res.cm, self.idmaps)
        if split == "test":
            parts = {"test": None}
        else:
            if self.o.val_split == "random":
                h = ar.unit_hash(first_line + res.rows, self.o.seed)
            else:
                user = np.where(res.sk.raw[:, 0] >= 0, res.sk.raw[:, 0], res.cm.raw[res.cidx, 0])
                ident = np.where(
                    user >= 0,
                    user.astype(np.uint64) << np.uint64(1),
                    (res.keys << np.uint64(1)) | np.uint64(1),
                )
                h = ar.unit_hash(ident, self.o.seed)
            is_val = h < self.o.val_fraction
            parts = {"train": np.flatnonzero(~is_val), "val": np.flatnonzero(is_val)}
        for s, idx in parts.items():
            if idx is not None and not len(idx):
                continue
            block = self._assemble(sk, cm, res, idx)
            self.writers[s].append(block)
            self.label_sums[s] += block["labels"].sum(axis=0).astype(np.int64)
            if s == "train":
                self._count(block)
                d = block["dense"]
                np.minimum(self.dense_min, d.min(axis=0), out=self.dense_min)
                np.maximum(self.dense_max, d.max(axis=0), out=self.dense_max)

    def _assemble(self, sk: Encoded, cm: Encoded, res: BlockResult, idx) -> dict:
        """Columns of the rows ``idx`` (None: all) of a block: own entries over common ones."""

        def rows(a):
            return a if idx is None else a[idx]

        cidx = rows(res.cidx)
        sk_cat = rows(sk.cat)
        own = sk_cat > 0
        cat = np.where(own, sk_cat, cm.cat[cidx])
        di = _DENSE_INDEX
        dense = np.where(own[:, di], rows(sk.w[:, di]), cm.w[:, di][cidx])
        R = len(cat)
        block = {
            "cat": cat,
            "dense": dense,
            "labels": rows(res.labels),
            "source": np.zeros(R, np.int32),
            "user": cat[:, 0],
            "sample_id": rows(res.sample_id),
        }
        lb = self.o.max_bag_len
        if lb:
            for s, f in enumerate(ar.BAG_FIELDS):
                a, b = sk.bags.get(s), cm.bags.get(s)
                if a is not None and b is not None:
                    has = (rows(a[2]) > 0)[:, None]
                    ids = np.where(has, rows(a[0]), b[0][cidx])
                    w = np.where(has, rows(a[1]), b[1][cidx])
                elif b is not None:
                    ids, w = b[0][cidx], b[1][cidx]
                elif a is not None:
                    ids, w = rows(a[0]), rows(a[1])
                else:
                    ids, w = np.zeros((R, lb), np.int32), np.zeros((R, lb), np.float32)
                block[f"bag_{f}_ids"] = ids
                block[f"bag_{f}_w"] = w
        return block

    def _count(self, block: dict) -> None:
        lb = self.o.max_bag_len
        for f, name in enumerate(ar.FIELD_NAMES):
            if lb and name in ar.BAG_FIELDS:
                ids = block[f"bag_{name}_ids"].ravel()
            else:
                ids = block["cat"][:, f]
            size = self.idmaps[f].size + 1
            c = self.counts[f]
            if len(c) < size:
                grown = np.zeros(max(size, 2 * len(c)), np.int64)
                grown[: len(c)] = c
                self.counts[f] = c = grown
            bc = np.bincount(ids, minlength=size)
            c[: len(bc)] += bc

    def abort(self) -> None:
        for w in self.writers.values():
            w.close()

    # -- pass 2 -----------------------------------------------------------------------------
    def finish(self) -> dict:
        rows = {s: w.close() for s, w in self.writers.items()}
        o = self.o
        os.makedirs(os.path.join(o.out, "vocab"), exist_ok=True)
        finals, vocab = [], {}
        for f, name in enumerate(ar.FIELD_NAMES):
            m = self.idmaps[f]
            c = np.zeros(m.size + 1, np.int64)
            n = min(len(self.counts[f]), m.size + 1)
            c[:n] = self.counts[f][:n]
            self.counts[f] = c
            kept = np.flatnonzero(c[1:] >= o.min_count) + 1
            kept = kept[np.lexsort((m.raw[kept - 1], -c[kept]))]
            final = np.zeros(m.size + 1, np.int32)
            final[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
            finals.append(final)
            np.save(os.path.join(o.out, "vocab", f"{name}.npy"), m.raw[kept - 1])
            vocab[name] = {
                "size": len(kept) + 1,
                "distinct_in_train": int((c[1:] > 0).sum()),
                "rare_ids": int(((c[1:] > 0) & (c[1:] < o.min_count)).sum()),
            }
        lo = np.where(np.isfinite(self.dense_min), self.dense_min, 0.0)
        hi = np.where(np.isfinite(self.dense_max), self.dense_max, 0.0)
        span = np.where(hi > lo, hi - lo, 1.0)
        # Users: 1.. in ascending raw id order (provisional ids depend on the block size).
        user_raw = self.idmaps[0].raw
        user_map = np.zeros(len(user_raw) + 1, np.int32)
        user_map[np.argsort(user_raw, kind="stable") + 1] = np.arange(
            1, len(user_raw) + 1, dtype=np.int32
        )
        # Class of every provisional id: 0 missing (id 0), 1 kept, 2 rare, 3 unseen in training.
        classes = []
        for c in self.counts:
            cls = np.where(c >= o.min_count, 1, np.where(c > 0, 2, 3)).astype(np.uint8)
            cls[0] = 0
            classes.append(cls)
        probe = {
            s: {"rows": rows[s], "columns": shards.column_spec(os.path.join(o.out, s))}
            for s in shards.SPLITS
        }
        _CTX.clear()
        # One table over all fields (field f's provisional id p is entry offsets[f] + p), so a
        # block of rows is remapped with one gather instead of one per field.
        offsets = np.cumsum([0] + [len(f) for f in finals[:-1]]).astype(np.int32)
        field_of = np.repeat(np.arange(ar.NUM_FIELDS, dtype=np.int32), [len(f) for f in finals])
        _CTX.update(
            out=o.out, final=np.concatenate(finals), offsets=offsets,
            cls=np.concatenate(classes), code=np.concatenate(classes) + 4 * field_of,
            user_map=user_map, lo=lo.astype(np.float32), span=span.astype(np.float32),
            max_bag_len=o.max_bag_len,
        )  # fmt: skip
        tasks = [
            (s, a, min(rows[s], a + _REMAP_TASK_ROWS))
            for s in shards.SPLITS
            for a in range(0, rows[s], _REMAP_TASK_ROWS)
        ]
        counts = {s: np.zeros((ar.NUM_FIELDS + ar.NUM_BAGS, 4), np.int64) for s in shards.SPLITS}
        try:
            for (s, _, _), c in zip(tasks, workers.ordered_map(remap_rows, tasks, o.workers)):
                counts[s] += c
        finally:
            _CTX.clear()
        names = ("missing", "kept", "rare", "unseen")
        meta_splits, id_stats = {}, {}
        for s in shards.SPLITS:
            c = counts[s]
            id_stats[s] = {
                "fields": {
                    name: {k: int(v) for k, v in zip(names, c[f]) if k != "kept"}
                    for f, name in enumerate(ar.FIELD_NAMES)
                }
            }
            if o.max_bag_len:
                id_stats[s]["bags"] = {
                    name: {
                        "entries": int(c[ar.NUM_FIELDS + b, 1:].sum()),
                        "rare": int(c[ar.NUM_FIELDS + b, 2]),
                        "unseen": int(c[ar.NUM_FIELDS + b, 3]),
                    }
                    for b, name in enumerate(ar.BAG_FIELDS)
                }
            clicks, orders = (int(x) for x in self.label_sums[s])
            n = rows[s]
            meta_splits[s] = {
                "rows": n,
                "columns": probe[s]["columns"],
                "clicks": clicks,
                "conversions": orders,
                "click_rate": clicks / n if n else 0.0,
                "conversion_rate": orders / n if n else 0.0,
                "cvr": orders / clicks if clicks else 0.0,
            }
        return {"splits": meta_splits, "vocab": vocab, "ids": id_stats, "dense": (lo, hi)}


def remap_rows(task: tuple[str, int, int]) -> np.ndarray:
    """Pass 2 on rows [a, b) of a split, in place: provisional → final ids, raw → scaled dense,
    provisional → final user ids. Returns [F + NB, 4] counts of (missing, kept, rare, unseen).

    Each chunk of rows is mapped on its own (``shards.open_rows``), so the resident memory stays
    at one chunk whatever the size of the split. Ids go through the all-fields tables of
    ``finish`` (one gather per column and chunk) and are written straight into the map.
    """
    split, a, b = task
    x = _CTX
    F = ar.NUM_FIELDS
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
        np.subtract(dense, x["lo"], out=dense)
        np.divide(dense, x["span"], out=dense)
        np.clip(dense, 0.0, 1.0, out=dense)
        for s, name in enumerate(ar.BAG_FIELDS if x["max_bag_len"] else ()):
            ids = cols(f"bag_{name}_ids", lo, hi)
            idx = ids + x["offsets"][ar.FIELD_INDEX[name]]
            counts[F + s] += np.bincount(x["cls"][idx].ravel(), minlength=4)
            np.take(x["final"], idx, out=ids, mode="clip")
        del cat, user, dense  # unmapped: dirty pages go back to the page cache, not kept resident
    return counts


def aliccp_schema(vocab_sizes: dict[str, int], opts: AliccpOptions) -> Schema:
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
    )


def _prepare_out_dir(opts: AliccpOptions) -> None:
    out = opts.out
    if os.path.exists(out) and os.listdir(out):
        if not opts.overwrite:
            raise FileExistsError(f"--out {out} is not empty; pass --overwrite to replace it")
        for name in (*shards.SPLITS, "vocab"):
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        for name in (shards.METADATA, shards.METADATA + ".tmp"):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    os.makedirs(out, exist_ok=True)


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
                job.run_file(split, bar)
    except BaseException:
        job.abort()  # the directory stays without metadata.json: never mistaken for complete
        raise
    t1 = time.perf_counter()
    res = job.finish()
    seconds = time.perf_counter() - t0
    vocab_sizes = {k: v["size"] for k, v in res["vocab"].items()}
    schema = aliccp_schema(vocab_sizes, opts)
    lb = opts.max_bag_len
    meta = {
        "format": shards.FORMAT,
        "dataset": "aliccp",
        "schema": schema.to_dict(),
        "splits": res["splits"],
        "aliases": (
            {"seq_item": f"bag_{opts.seq_field}_ids", "seq_days": f"bag_{opts.seq_field}_w"}
            if opts.seq_field
            else {}
        ),
        "zeros": {"seq_loc": {"dtype": "<i4", "shape": [lb]}} if opts.seq_field else {},
        "vocabulary": res["vocab"],
        "ids": res["ids"],
        "dense": {
            "columns": list(DENSE),
            "train_min": res["dense"][0].tolist(),
            "train_max": res["dense"][1].tolist(),
        },
        "dropped": {
            "click0_conversion1": {
                k: v["dropped_click0_conversion1"] for k, v in job.file_stats.items()
            },
            "bad_lines": job.bad.to_dict(),
            "unknown_field_entries": dict(job.unknown),
            "repeated_single_field_entries": dict(zip(ar.FIELD_NAMES, job.repeats.tolist())),
            "bag_entries_beyond_max_bag_len": dict(zip(ar.BAG_FIELDS, job.truncated.tolist())),
        },
        "files": job.file_stats,
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
    shards.write_metadata(opts.out, meta)
    if opts.progress:
        print(summary(meta), flush=True)
    if opts.skip_bad:
        print(job.bad.summary(), file=sys.stderr, flush=True)
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
    a.add_argument("--chunk-mb", type=float, default=4.0, help="skeleton block size in MB")
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
    if not opts.progress:
        print(summary(meta))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
