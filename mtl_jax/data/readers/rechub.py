"""``rechub_csv``: torch-rechub's processed Ali-CCP (``ali_ccp_{train,val,test}*.csv``).

33 columns with a header: ``click,purchase``, the 23 fields as re-mapped integer ids (0 = missing
or rare), and 8 dense columns already MinMax-scaled by their publisher (used as given). The three
files are the three splits.
"""

from __future__ import annotations

from mtl_jax.data.errors import BadLines
from mtl_jax.data.readers import shared
from mtl_jax.data.synthetic import DENSE

COLUMNS = ("click", "purchase", *shared.ALICCP_FIELDS, *DENSE)
KINDS = {
    "click": "binary",
    "purchase": "binary",
    **{f: "id" for f in shared.ALICCP_FIELDS},
    **{d: "number" for d in DENSE},
}


def read_file(path: str, bad: BadLines, stats: dict) -> shared.Raw:
    """One file as a raw table (ids int64, labels and dense float64), bad lines reported."""
    raw = shared.read_text(path, stats, header=True)
    shared.expect_header(raw, COLUMNS)
    return shared.check_columns(raw, KINDS, bad)


def read(cfg) -> shared.SplitColumns:
    opts, path = shared.options(cfg), shared.resolve_path(cfg, kind="rechub_csv")
    bad, stats = BadLines(opts.skip_bad), {}
    parts = {s: read_file(shared.one(path, f"*{s}*.csv", s), bad, stats) for s in shared.SPLITS}
    stats["bad_lines"] = bad.to_dict()
    prep = shared.aliccp_preprocessing("rechub_csv", shared.ALICCP_FIELDS, dense=DENSE)
    return shared.finish(parts, prep, opts, stats)
