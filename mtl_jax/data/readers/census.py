"""``census``: UCI Census-Income (KDD), the MMoE paper's real-data benchmark.

``config.data.path`` is the census-income file (``.gz`` or plain; 42 columns, or 43 with
DeepCTR's leading index column) with a seeded 80/10/10 split, or a directory with
``census-income.data[.gz]`` and ``census-income.test[.gz]`` (train / test). No header; values
follow ``", "`` and are stripped.

Tasks: the MMoE paper's ``income`` (``income_50k`` is ``50000+.``) and ``never_married``
(``marital_stat`` is ``Never married``). Categorical columns as in keras-mmoe (29); the other
numeric columns are dense features, scaled per ``config.data.dense_scaling`` with training
statistics; ``instance_weight`` is dropped (a sampling weight, not a feature — the UCI
documentation says so) and the label columns are not features.

Every numeric column has a plausible range (:data:`RANGES`, wide around what the data holds:
ages 0–150, weeks worked 0–52, money amounts non-negative): a value outside it is a bad line
naming the column. Without this an age of 1e308 would load and squash the whole scaled column to
~0.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow.compute as pc

from mtl_jax.data import preprocessing as pp
from mtl_jax.data.errors import BadLines, DataError
from mtl_jax.data.readers import shared

COLUMNS = (
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour",
    "hs_college", "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex",
    "union_member", "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses",
    "stock_dividends", "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat",
    "det_hh_summ", "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same",
    "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father", "country_mother",
    "country_self", "citizenship", "own_or_self", "vet_question", "vet_benefits", "weeks_worked",
    "year", "income_50k",
)  # fmt: skip
#: keras-mmoe's categorical columns (drawbridge/keras-mmoe census_income_demo.py).
CATEGORICAL = (
    "class_worker", "det_ind_code", "det_occ_code", "education", "hs_college", "major_ind_code",
    "major_occ_code", "race", "hisp_origin", "sex", "union_member", "unemp_reason",
    "full_or_part_emp", "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat",
    "det_hh_summ", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt",
    "fam_under_18", "country_father", "country_mother", "country_self", "citizenship",
    "vet_question",
)  # fmt: skip
NUMERIC = tuple(
    c
    for c in COLUMNS
    if c not in CATEGORICAL and c not in ("marital_stat", "income_50k", "instance_weight")
)
TASKS = ("income", "never_married")
#: Plausible [lo, hi] of each numeric column (the UCI test split holds: age 0–90, wage per hour
#: 0–9,900 (cents), capital gains / dividends 0–99,999, losses 0–4,608, num_emp 0–6, the coded
#: own_or_self / vet_benefits 0–2, weeks 0–52, year 94–95).
RANGES = {
    "age": (0.0, 150.0),
    "wage_per_hour": (0.0, 1e7),
    "capital_gains": (0.0, 1e9),
    "capital_losses": (0.0, 1e9),
    "stock_dividends": (0.0, 1e9),
    "num_emp": (0.0, 1000.0),
    "own_or_self": (0.0, 2.0),
    "vet_benefits": (0.0, 2.0),
    "weeks_worked": (0.0, 52.0),
    "year": (0.0, 2100.0),
}
_INCOME = {"- 50000.": 0.0, "50000+.": 1.0}


def _width(path: str) -> int:
    """Columns of the file's first line (42, or 43 with a leading index)."""
    data = shared.read_bytes(path)
    first = data.lstrip(b"\r\n").split(b"\n", 1)[0]
    width = first.count(b",") + 1
    if width not in (42, 43):
        line = data[: len(data) - len(data.lstrip(b"\r\n"))].count(b"\n") + 1
        raise DataError(
            path, line, f"expected 42 columns (or 43 with a leading index), found {width}"
        )
    return width


def read_file(path: str, bad: BadLines, stats: dict) -> shared.Raw:
    """One file as a raw table: the 42 columns (stripped text; numbers float64) and the labels
    ``income`` and ``never_married``."""
    width = _width(path)
    names = (["index"] if width == 43 else []) + list(COLUMNS)
    raw = shared.read_text(path, stats, header=False, column_names=names, quoting=False)
    for c in names:
        raw.set(c, pc.utf8_trim_whitespace(raw.table.column(c)))
    problems = []
    if width == 43:
        index = raw.table.column("index").to_numpy(zero_copy_only=False)
        ok = pc.ascii_is_decimal(raw.table.column("index")).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(~ok).tolist():
            problems.append((i, f"index column {index[i][:40]!r} is not an integer", "bad index"))
    income_text = raw.table.column("income_50k").to_numpy(zero_copy_only=False)
    income = np.array([_INCOME.get(v, np.nan) for v in income_text.tolist()])
    for i in np.flatnonzero(np.isnan(income)).tolist():
        problems.append(
            (i, f"income_50k is {income_text[i][:40]!r}, not '- 50000.' or '50000+.'",
             "label not 0/1")
        )  # fmt: skip
    marital = pc.equal(raw.table.column("marital_stat"), "Never married")
    raw.set("income", np.nan_to_num(income))
    raw.set("never_married", marital.to_numpy(zero_copy_only=False).astype(np.float64))
    raw = shared.check_columns(
        raw, {c: "number" for c in NUMERIC}, bad, ranges=RANGES, problems=problems
    )
    stats.setdefault("files", {})[path] = {"columns": width, "rows": raw.table.num_rows}
    return raw


def preprocessing(dense_scaling: str) -> pp.Preprocessing:
    return pp.Preprocessing(
        kind="census",
        categorical=[pp.CategoricalColumn(c, c, "string", "other") for c in CATEGORICAL],
        dense=[pp.DenseColumn(c, c, scaling=dense_scaling) for c in NUMERIC],
        tasks=list(TASKS),
        label_columns=list(TASKS),
        task_types=["binary", "binary"],
    )


def read(cfg) -> shared.SplitColumns:
    opts, path = shared.options(cfg), shared.resolve_path(cfg, kind="census")
    bad, stats = BadLines(opts.skip_bad), {}
    if os.path.isdir(path):
        train = shared.concat(
            [read_file(f, bad, stats) for f in shared.files(path, "census-income.data*", "train")]
        )
        test = shared.concat(
            [read_file(f, bad, stats) for f in shared.files(path, "census-income.test*", "test")]
        )
        train, val = shared.train_val(train, opts, user_column=None, what="census")
        parts = {"train": train, "val": val, "test": test}
    else:
        if opts.val_split == "user":
            raise ValueError("config.data.val_split='user' needs a user column; census has none")
        parts = shared.three_way(read_file(path, bad, stats), opts, user_column=None, what="census")
    stats["bad_lines"] = bad.to_dict()
    return shared.finish(parts, preprocessing(opts.dense_scaling), opts, stats)
