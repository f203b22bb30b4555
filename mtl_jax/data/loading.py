"""``config.data`` → (schema, {"train", "val", "test"} columns): the one way data is loaded.

Every reader returns columns in the batch layout of ``schema.py``; the pipeline and the model
never see a file format. ``config.data.kind`` is ``synthetic`` (the built-in Ali-CCP-shaped
generator), ``relatedness`` (the MMoE paper's task-relatedness benchmark, ``relatedness.py``) or
one of the real-data readers of the ``readers`` package (``rechub_csv``, ``aitm_csv``,
``esmm_text``, ``aliexpress``, ``census``, ``csv``, ``prepared``); their ``config.data`` keys and
path layouts are documented there.
"""

from __future__ import annotations

import dataclasses

from absl import logging

from mtl_jax.data import readers, relatedness, synthetic
from mtl_jax.data.preprocessing import Preprocessing
from mtl_jax.data.schema import Schema

KINDS = ("synthetic", "relatedness", *readers.KINDS)
SPLITS = ("train", "val", "test")

# Keys the model and the loss consume; everything else stays on the host.
MODEL_KEYS = ("cat", "dense", "labels", "source", "seq_item", "seq_days", "seq_loc", "valid")


def _generator_config(cls, given, key: str):
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ValueError(
            f"config.data.{key}: unknown keys {unknown}; valid keys are {sorted(fields)}"
        )
    return cls(**given)


def synthetic_config(data_cfg) -> synthetic.SyntheticConfig:
    return _generator_config(synthetic.SyntheticConfig, dict(data_cfg.synthetic), "synthetic")


def relatedness_config(data_cfg) -> relatedness.RelatednessConfig:
    if "relatedness" not in data_cfg:
        raise ValueError(
            "config.data.kind='relatedness' needs config.data.relatedness "
            "(see configs/relatedness.py)"
        )
    return _generator_config(
        relatedness.RelatednessConfig, dict(data_cfg.relatedness), "relatedness"
    )


def load(data_cfg) -> tuple[Schema, dict]:
    """Loads (or generates) every split named by ``config.data``.

    Real datasets log a short report at INFO (rows, label rates, ids mapped to 0 as rare or
    unseen, skipped lines).
    """
    schema, splits, _ = load_with_preprocessing(data_cfg)
    return schema, splits


def load_with_preprocessing(data_cfg) -> tuple[Schema, dict, Preprocessing | None]:
    """``load`` plus the preprocessing that mapped the raw rows (None for synthetic data and
    prepared shards, whose mapping is in their own metadata)."""
    kind = data_cfg.kind
    if kind == "synthetic":
        cfg = synthetic_config(data_cfg)
        splits = {s: synthetic.generate(cfg, s) for s in SPLITS}
        return synthetic.synthetic_schema(cfg), splits, None
    if kind == "relatedness":
        cfg = relatedness_config(data_cfg)
        splits = {s: relatedness.generate(cfg, s) for s in SPLITS}
        return relatedness.schema(cfg), splits, None
    if kind in readers.KINDS:
        data = readers.read(data_cfg)
        logging.info("data: %s %s\n%s", kind, data_cfg.get("path"), readers.summary(data))
        return data.schema, data.splits, data.preprocessing
    raise ValueError(f"config.data.kind must be one of {KINDS}, got {kind!r}")


def model_inputs(batch: dict) -> dict:
    """The keys of a host batch that go to the device."""
    return {k: v for k, v in batch.items() if k in MODEL_KEYS}
