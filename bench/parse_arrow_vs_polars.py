"""pyarrow vs polars on the nested-separator work of the raw Ali-CCP parse (issue 16's decision).

    python bench/parse_arrow_vs_polars.py [--mb 64] [--rounds 3]

Needs polars, which is not a dependency of the package (``pip install polars``).

Writes raw Ali-CCP files (``aliccp_writer.write_raw``), takes ``--mb`` MB of whole lines of the
skeleton and of the common-features file, and turns each into the entry columns the reduction
needs — line index, field, id (int64), value (float64) — four ways, one thread each (our workers
are processes; ``POLARS_MAX_THREADS=1``, ``pyarrow.set_cpu_count(1)``):

* ``arrow split``: ``pyarrow.csv`` for the columns, ``pyarrow.compute.split_pattern`` on
  ``\\x01``, ``\\x02``, ``\\x03``, casts;
* ``polars split``: ``polars.read_csv``, ``str.split`` + ``explode``, ``str.split_exact``, casts;
* ``arrow rows`` / ``polars rows``: one ``bytes.translate`` makes every entry a CSV row
  ``field\\x03id\\x03value`` (what ``readers/aliccp_raw.py`` does), read by each library's CSV
  reader with typed columns; rows longer than a field id start a line.

It reports CPU seconds (``time.process_time``, min over ``--rounds`` alternating rounds) and MB per
CPU-second; no validation is timed (the same checks follow whichever library splits).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("POLARS_MAX_THREADS", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402

from mtl_jax.data.aliccp_writer import write_raw  # noqa: E402

pa.set_cpu_count(1)
pa.set_io_thread_count(1)
COLUMNS = {"skeleton": ["sid", "click", "conv", "key", "fnum", "flist"],
           "common": ["key", "fnum", "flist"]}  # fmt: skip
_TO_ROWS = bytes.maketrans(b"\x01\x02", b"\n\x03")


def arrow_split(data: bytes, kind: str):
    t = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=COLUMNS[kind], use_threads=False),
        parse_options=pacsv.ParseOptions(quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS[kind]}),
    )
    entries = pc.split_pattern(t.column("flist").combine_chunks(), "\x01")
    line = pc.list_parent_indices(entries)
    flat = pc.list_flatten(entries)
    a = pc.list_flatten(pc.split_pattern(flat, "\x02"))
    n = len(a) // 2
    field = a.take(pa.array(np.arange(0, 2 * n, 2)))
    b = pc.list_flatten(pc.split_pattern(a.take(pa.array(np.arange(1, 2 * n, 2))), "\x03"))
    ids = pc.cast(b.take(pa.array(np.arange(0, 2 * n, 2))), pa.int64())
    w = pc.cast(b.take(pa.array(np.arange(1, 2 * n, 2))), pa.float64())
    return line, field, ids, w


def polars_split(data: bytes, kind: str):
    df = pl.read_csv(
        io.BytesIO(data), has_header=False, new_columns=COLUMNS[kind], quote_char=None,
        schema_overrides={c: pl.String for c in COLUMNS[kind]},
    )  # fmt: skip
    e = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("line"), pl.col("flist"))
    e = e.with_columns(pl.col("flist").str.split("\x01")).explode("flist")
    p = e["flist"].str.split_exact("\x02", 1).struct.unnest()
    q = p["field_1"].str.split_exact("\x03", 1).struct.unnest()
    return e["line"], p["field_0"], q["field_0"].cast(pl.Int64), q["field_1"].cast(pl.Float64)


def arrow_rows(data: bytes, kind: str):
    t = pacsv.read_csv(
        pa.py_buffer(data.translate(_TO_ROWS)),
        read_options=pacsv.ReadOptions(column_names=["head", "id", "w"], use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter="\x03", quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={"head": pa.string(), "id": pa.int64(), "w": pa.float64()}
        ),
    )
    head = t.column("head").combine_chunks()
    line = np.cumsum(pc.binary_length(head).to_numpy() > 8) - 1
    return line, head, t.column("id"), t.column("w")


def polars_rows(data: bytes, kind: str):
    df = pl.read_csv(
        io.BytesIO(data.translate(_TO_ROWS)), has_header=False, new_columns=["head", "id", "w"],
        separator="\x03", quote_char=None,
        schema_overrides={"head": pl.String, "id": pl.Int64, "w": pl.Float64},
    )  # fmt: skip
    line = (df["head"].str.len_bytes() > 8).cum_sum() - 1
    return line, df["head"], df["id"], df["w"]


WAYS = {"arrow split": arrow_split, "polars split": polars_split, "arrow rows": arrow_rows,
        "polars rows": polars_rows}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=64.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_parse_", dir="/tmp")
    try:
        write_raw(tmp, int(args.mb * 1e6 / 240), seed=0, num_test=1)
        blocks = {}
        for kind, name in (("skeleton", "sample_skeleton_train.csv"),
                           ("common", "common_features_train.csv")):  # fmt: skip
            with open(os.path.join(tmp, name), "rb") as f:
                data = f.read(int(args.mb * 1e6))
            blocks[kind] = data[: data.rfind(b"\n") + 1]
        # Every way finds the same entries.
        for kind, data in blocks.items():
            ref = [np.asarray(x) for x in arrow_split(data, kind)[2:]]
            for name, fn in WAYS.items():
                got = [np.asarray(x) for x in fn(data, kind)[2:]]
                assert all(np.array_equal(a, b) for a, b in zip(ref, got)), (name, kind)
        best = {(n, k): float("inf") for n in WAYS for k in blocks}
        for _ in range(args.rounds):  # alternating rounds: the load hits every way alike
            for name, fn in WAYS.items():
                for kind, data in blocks.items():
                    t0 = time.process_time()
                    fn(data, kind)
                    best[name, kind] = min(best[name, kind], time.process_time() - t0)
        print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cpus; "
              f"pyarrow {pa.__version__}, polars {pl.__version__}, one thread each")  # fmt: skip
        print(f"{'way':14s} " + "  ".join(f"{k:>22s}" for k in blocks))
        for name in WAYS:
            cells = [
                f"{best[name, k]:6.3f} s {len(blocks[k]) / 1e6 / best[name, k]:6.1f} MB/cpu-s"
                for k in blocks
            ]
            print(f"{name:14s} " + "  ".join(cells))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
