"""``prepared``: a directory written by ``python -m mtl_jax.data.prepare`` (memory-mapped
shards; see ``prepare.py`` and ``shards.py``). ``config.data.extra_columns`` names stored columns
beyond the batch keys to load (e.g. ``("sample_id", "bag_210_ids")``)."""

from __future__ import annotations

from mtl_jax.data import shards
from mtl_jax.data.readers import shared
from mtl_jax.data.schema import Schema, batch_keys


def read(cfg) -> shared.SplitColumns:
    path = shared.resolve_path(cfg, kind="prepared")
    meta = shards.read_metadata(path)
    schema = Schema.from_dict(meta["schema"])
    extra = shared.names(cfg, "extra_columns")
    names = list(dict.fromkeys([*batch_keys(schema), *extra]))
    splits = {s: shards.open_split(path, s, meta, names) for s in shared.SPLITS}
    rates = {
        s: dict(zip(schema.tasks, (info["click_rate"], info["conversion_rate"])))
        for s, info in meta["splits"].items()
    }
    stats = {
        "splits": {
            s: {"rows": meta["splits"][s]["rows"], "label_rates": rates[s]} for s in shared.SPLITS
        },
        "ids": {s: v["fields"] for s, v in meta.get("ids", {}).items()},
        "prepared": {k: meta[k] for k in ("dropped", "timing") if k in meta},
    }
    return shared.SplitColumns(schema=schema, splits=splits, stats=stats)
