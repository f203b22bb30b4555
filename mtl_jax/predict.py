"""CLI: score data with a trained run: ``python -m mtl_jax.predict --workdir RUN --out FILE``.

The data to score is one of:

* ``--data-path FILE``: raw rows of the run's reader (``.csv``, ``.csv.gz``, ``.parquet`` with a
  header; census / AITM / ESMM files in their own format), mapped with the run's own
  ``preprocessing.json``: the training vocabularies and dense scaling, so a raw id maps exactly
  as in training; ids the training split never saw become 0 and are counted per field. Label
  columns are not needed.
* ``--data-config FILE.py[:ARG]``: the ``data`` of another config (synthetic or relatedness
  generators, prepared shards, or a reader whose vocabularies are the run's), split ``--split``.
* neither: the run's own data, split ``--split`` (default ``test``).

The output (``.parquet`` or ``.csv``, by ``--out``'s suffix) has one row per input row, in input
order: ``row`` (0-based position), the ``--id-columns`` copied from the raw file (with
``--data-path``) or ``user`` (the user id the batch carries), ``p_<task>`` per binary task
(impression-space probability; under a cascade the order column is P(click and order)),
``value_<task>`` per regression task, ``p_cvr`` under a cascade, and ``score``: the ranking score
``Σ_k w_k p_k`` with ``config.loss.export_weights``. Rows are scored in global batches of
``--batch-size`` (default the run's ``eval_batch_size``) sharded over the run's mesh, with the
same jitted eval step as training's evaluation (:mod:`mtl_jax.restore`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import numpy as np
import pyarrow as pa

from mtl_jax.cli import UserError

OUT_SUFFIXES = (".parquet", ".csv")


def load_data_config(spec: str):
    """``FILE.py[:ARG]`` → that config's ``data``."""
    path, _, arg = spec.partition(":")
    if not path.endswith(".py") or not os.path.isfile(path):
        raise FileNotFoundError(
            f"--data-config {spec}: {path} is not a config file (FILE.py[:ARG])"
        )
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if root not in sys.path:  # configs import ``configs.common``
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location("_mtl_jax_data_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    if "data" not in config:
        raise ValueError(f"--data-config {spec}: the config has no data section")
    return config.data


def _raw_columns(prep) -> list[str]:
    cols = [c.column for c in prep.categorical if not c.group_only]
    cols += [d.column for d in prep.dense]
    cols += [c for c in (prep.user_column, prep.source_column) if c]
    return list(dict.fromkeys(cols))


def read_raw(path: str, prep, id_columns=()) -> pa.Table:
    """A raw file of the run's reader as an Arrow table of the columns ``prep`` maps."""
    from mtl_jax.data.errors import BadLines
    from mtl_jax.data.readers import aitm, census, esmm

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--data-path {path}: no such file")
    own_format = {
        "census": census.read_file,
        "aitm_csv": aitm.read_file,
        "esmm_text": esmm.read_file,
    }
    if prep.kind in own_format:
        table = own_format[prep.kind](path, BadLines(), {}).table
    elif path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    elif path.endswith((".csv", ".csv.gz")):
        import pyarrow.csv as pacsv

        with pacsv.open_csv(path) as reader:
            names = reader.schema.names
        # Text, as the readers read it: "007" stays a different id from "7".
        types = pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
        table = pacsv.read_csv(path, convert_options=types)
    else:
        raise ValueError(f"--data-path {path}: expected a .csv, .csv.gz or .parquet file")
    missing = [c for c in [*_raw_columns(prep), *id_columns] if c not in table.column_names]
    if missing:
        raise ValueError(
            f"--data-path {path}: columns {missing} are missing; the run maps "
            f"{_raw_columns(prep)} (its preprocessing.json)"
        )
    return table


def load_rows(run, *, data_config=None, data_path=None, split="test", id_columns=()):
    """The columns to score, the id columns to copy to the output, and the ids mapped to 0.

    Returns ``(columns, ids, id_counts)``: batch columns (``cat``, ``dense``, ``source``, ...),
    ``{name: array}`` for the output, and ``{field: {"missing"|"rare"|"unseen": n}}`` (empty for
    data whose columns are ids already).
    """
    from mtl_jax.data import loading

    if data_path is not None:
        if run.preprocessing is None:
            raise ValueError(
                f"--data-path: {run.workdir} has no preprocessing.json (its data is "
                f"{run.config.data.kind}, already ids); use --data-config or the run's own data"
            )
        table = read_raw(data_path, run.preprocessing, id_columns)
        columns, counts = run.preprocessing.apply(table)
        ids = {c: table.column(c).to_numpy(zero_copy_only=False) for c in id_columns}
        return columns, ids, counts
    if id_columns:
        raise ValueError("--id-columns needs --data-path (raw files carry the named columns)")
    data_cfg = run.config.data if data_config is None else load_data_config(data_config)
    schema, splits, prep = loading.load_with_preprocessing(data_cfg)
    if split not in splits:
        raise ValueError(f"--split {split}: expected one of {list(splits)}")
    same_prep = prep is None or (
        run.preprocessing is not None and prep.to_json() == run.preprocessing.to_json()
    )
    if schema.to_json() != run.schema.to_json() or not same_prep:
        what = f"--data-config {data_config}" if data_config else "the run's config.data"
        raise ValueError(
            f"{what}: its schema or vocabularies differ from the run's "
            f"({run.workdir}/schema.json); score raw files with --data-path instead"
        )
    columns = splits[split]
    ids = {"user": columns["user"]} if "user" in columns else {}
    return columns, ids, {}


def score(run, columns: dict, *, batch_size: int | None = None, progress: bool = True) -> dict:
    """Scores every row of ``columns`` with the run's eval step; host arrays, in row order."""
    from mtl_jax import eval_report, logs, sharding
    from mtl_jax.data import loading, pipeline

    batch_size = batch_size or run.config.eval_batch_size
    sharding.check_batch_size(batch_size, run.mesh, "--batch-size")
    keys = set(loading.MODEL_KEYS) - {"labels"}
    inputs = {k: v for k, v in columns.items() if k in keys}
    n = pipeline.num_rows(inputs)
    bar = logs.progress(-(-n // batch_size), desc="predict") if progress else None
    pred = eval_report.predict_split(
        run.eval_step(),
        run.params,
        run.model_state,
        inputs,
        batch_size=batch_size,
        mesh=run.mesh,
        bar=bar,
    )
    if bar is not None:
        bar.close()
    return pred


def output_table(run, pred: dict, ids: dict) -> pa.Table:
    """The output columns (module docstring) as an Arrow table."""
    from mtl_jax.serving import prediction_columns

    out = {"row": np.arange(len(pred["score"]), dtype=np.int64)}
    out.update({k: np.asarray(v) for k, v in ids.items()})
    out.update(prediction_columns(run.schema.tasks, run.schema.task_types, pred))
    return pa.table(out)


def write_table(table: pa.Table, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)


def _unseen_line(counts: dict) -> str:
    unseen = {f: c["unseen"] for f, c in counts.items() if c["unseen"]}
    total = sum(unseen.values())
    detail = ", ".join(f"{f} {n:,}" for f, n in sorted(unseen.items(), key=lambda x: -x[1])[:5])
    return f"ids unseen in training → 0: {total:,}" + (f" ({detail})" if detail else "")


def main(argv=None) -> int:
    from mtl_jax import cli

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="run directory written by mtl_jax.train")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data-config", help="FILE.py[:ARG] whose data section to score")
    src.add_argument("--data-path", help="raw file of the run's reader, mapped as in training")
    ap.add_argument("--split", default="test", help="split of --data-config / the run's data")
    ap.add_argument("--out", required=True, help="output file, .parquet or .csv")
    ap.add_argument("--id-columns", default="", help="raw columns to copy (with --data-path)")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    ap.add_argument("--batch-size", type=int, default=None, help="global batch (default: eval)")
    cli.add_traceback_flag(ap)
    args = ap.parse_args(argv)
    if not args.out.endswith(OUT_SUFFIXES):
        raise UserError(f"--out {args.out}: expected a {' or '.join(OUT_SUFFIXES)} file")

    from mtl_jax.restore import restore_run

    run = restore_run(args.workdir, args.step)
    id_columns = [c for c in args.id_columns.split(",") if c]
    columns, ids, counts = load_rows(
        run,
        data_config=args.data_config,
        data_path=args.data_path,
        split=args.split,
        id_columns=id_columns,
    )
    pred = score(run, columns, batch_size=args.batch_size)
    import jax

    if jax.process_index() == 0:
        write_table(output_table(run, pred, ids), args.out)
        if counts:
            print(_unseen_line(counts))
        print(f"scored {len(pred['score']):,} rows with step {run.step}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    from mtl_jax import cli

    sys.exit(cli.run(main))
