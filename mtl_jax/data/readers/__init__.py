"""Readers of real multi-task datasets; each is a ``config.data.kind``.

Every reader returns :class:`SplitColumns`: the schema, ``{"train", "val", "test"}`` columns in the
batch layout of ``schema.py`` (``cat`` int32 [N, F] with 0 = missing / rare / unseen, ``dense``
float32 [N, N_d], ``labels`` float32 [N, T], ``source`` int32 [N], ``user`` int32 [N] when the
schema has a user field, ``p_true`` [N, T] with oracle columns), statistics, and the
:class:`~mtl_jax.data.preprocessing.Preprocessing` that made the columns from the raw rows.

=============  =====================================================================================
kind           module and ``config.data.path``
=============  =====================================================================================
rechub_csv     ``rechub``: torch-rechub's Ali-CCP files ``*train*.csv``, ``*val*.csv``,
               ``*test*.csv`` (33 columns with header); the three files are the three splits
aitm_csv       ``aitm``: AITM's ``ctr_cvr.train`` / ``ctr_cvr.dev`` (optional) / ``ctr_cvr.test``,
               or ``train/`` and ``test/`` sub-directories (PaddleRec's layout), or ``*train*`` and
               ``*test*`` files; 20 columns, header optional (detected per file)
esmm_text      ``esmm``: ``train/`` and ``test/`` sub-directories (PaddleRec's ESMM layout) or
               ``*train*`` / ``*test*`` files; lines ``sample_id,click,conversion,field:id,...``
aliexpress     ``aliexpress``: ``*train*.csv`` and ``*test*.csv`` (82 columns with header); several
               directories separated by commas are several sources (e.g. countries)
census         ``census``: the UCI census-income file (``.gz`` or plain; 42 columns, or 43 with
               DeepCTR's leading index column): a seeded 80/10/10 split; or a directory with
               ``census-income.data[.gz]`` and ``census-income.test[.gz]`` (train / test)
csv            ``generic_csv``: a ``.csv`` or ``.parquet`` file (seeded 80/10/10 split) or a
               directory with ``*train*`` and ``*test*`` (and optionally ``*val*``) files; columns
               named by ``config.data.label_columns`` / ``categorical_columns`` /
               ``dense_columns`` / ``user_column`` / ``source_column`` / ``oracle_columns``, task
               types by ``task_types``
prepared       ``prepared``: a directory written by ``python -m mtl_jax.data.prepare``
=============  =====================================================================================

``shared`` holds what they have in common; ``aliccp_raw`` is the parser of the raw Ali-CCP files
that ``prepare`` uses. Relative paths are resolved against the current working directory.

Parsing. Text goes through Arrow (``pyarrow.csv`` and ``pyarrow.compute``): RFC 4180 quoting, a
UTF-8 byte-order mark, CRLF line ends, gzip (``.gz``) and the conversion of numbers are the
library's. A bad line stops the read with ``path:line: problem`` (the line is the physical line,
counted outside quoted fields; blank lines are ignored and counted); ``config.data.skip_bad=True``
skips bad lines and counts them per reason (``SplitColumns.stats["bad_lines"]``): nothing is
dropped silently, guessed, or turned into NaN.

Common ``config.data`` keys (defaults in brackets): ``min_count`` [1] — ids with fewer training
occurrences become 0 (vocabularies are built from the training split only; ids unseen in training
are 0 too; both are counted per split and field); ``val_split`` ["random"] or "user" — the
validation split taken from the training file keeps each user's rows together; ``val_fraction``
[0.1]; ``seed`` [0] — seeds every split; ``skip_bad`` [False]; ``dense_scaling`` ["standard",
``preprocessing.DEFAULT_DENSE_SCALING``, chosen by measurement: see that module's docstring] —
``standard``, ``minmax`` or ``none`` for the readers
that scale (census, csv; the others' dense columns were scaled by their publishers and are used as
given); ``extra_columns`` [()] — ``prepared`` only: stored columns beyond the batch keys to load
(e.g. ``("sample_id", "bag_210_ids")``).

Choices per format:

* The single id of each field is what the file holds (torch-rechub and AITM already reduced
  multi-valued fields to their last id); ``esmm_text`` keeps the first id of each field, as
  PaddleRec's reader does, but reads every feature token (PaddleRec's reader skips the first).
* Id 0 of rechub / AITM files and an absent field in ``esmm_text`` mean missing and stay 0.
* Vocabulary ids are 1..K by descending training count, ties by raw value.
* Rows with order = 1 and click = 0 (present in the PaddleRec AITM excerpt) are kept and counted.
* A user column is a grouping (GAUC, CLICK@N), numbered 1.. over all splits; a user column that is
  not a categorical feature is a field of vocabulary size 1 (always 0, a constant input).

Preprocessing saved with the run. ``SplitColumns.preprocessing`` is a
:class:`~mtl_jax.data.preprocessing.Preprocessing`: per categorical field the vocabulary (raw
value → id, 0 for missing / rare / unseen), per dense column the scaling and its training
statistics, the column names, the tasks with their types, and the label / user / source / oracle
columns. ``to_json`` / ``from_json`` store it, and ``apply(table)`` maps a raw Arrow table (what a
reader module's ``read_file(path, bad, stats).table`` gives for a file; unseen values → 0, counted)
to batch columns. The training loop writes it to ``<workdir>/preprocessing.json`` for reader-based
data, so that new data can later be mapped exactly as the training data was.
"""

from __future__ import annotations

from mtl_jax.data.readers import (
    aitm,
    aliexpress,
    census,
    esmm,
    generic_csv,
    prepared,
    rechub,
    shared,
)
from mtl_jax.data.readers.shared import SplitColumns, split_indices

READERS = {
    "rechub_csv": rechub.read,
    "aitm_csv": aitm.read,
    "esmm_text": esmm.read,
    "aliexpress": aliexpress.read,
    "census": census.read,
    "csv": generic_csv.read,
    "prepared": prepared.read,
}
KINDS = tuple(READERS)
SPLITS = shared.SPLITS

__all__ = ["KINDS", "READERS", "SplitColumns", "read", "split_indices", "summary"]


def read(cfg) -> SplitColumns:
    """Reads the dataset ``config.data`` names."""
    kind = cfg.kind
    if kind not in READERS:
        raise ValueError(f"config.data.kind must be one of {('synthetic', *KINDS)}, got {kind!r}")
    return READERS[kind](cfg)


def summary(data: SplitColumns) -> str:
    """Rows, label rates, rare / unseen ids per split and skipped lines, in a few lines."""
    lines = []
    for s, info in data.stats.get("splits", {}).items():
        rates = info.get("label_rates")
        rate = " ".join(f"{k}={v:.4f}" for k, v in rates.items()) if rates else ""
        ids = data.stats.get("ids", {}).get(s, {})
        rare = sum(v["rare"] for v in ids.values())
        unseen = sum(v["unseen"] for v in ids.values())
        lines.append(
            f"  {s:5s} {info['rows']:>10,} rows {rate}  ids → 0: rare {rare:,} unseen {unseen:,}"
        )
    bad = data.stats.get("bad_lines")
    if bad and bad["skipped_lines"]:
        lines.append(f"  skipped bad lines: {bad['skipped_lines']} {bad['by_reason']}")
    if data.stats.get("blank_lines"):
        lines.append(f"  blank lines ignored: {data.stats['blank_lines']}")
    return "\n".join(lines)
