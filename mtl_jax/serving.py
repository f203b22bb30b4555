"""Scores raw rows with a directory written by ``mtl_jax.export``, without the model code.

``load(DIR)`` reads the serialized ``jax.export`` artifact (StableHLO of the eval forward pass,
batch dimension symbolic), its parameters, the signature and, for reader-based runs, the
preprocessing (vocabularies and dense scaling). :meth:`Served.score` maps raw rows exactly as
training did (ids unseen in training → 0, counted) and returns the same columns as
``mtl_jax.predict``; :meth:`Served.predict` takes batch columns that are ids already (synthetic
data, prepared shards). Nothing here builds a model: this module needs jax, numpy, pyarrow and
``mtl_jax.data.preprocessing`` only.

Directory layout (``SIGNATURE`` describes each file):

  model.stablehlo      ``Exported.serialize()`` of ``f(params, batch) -> {probs, score[, cvr]}``
  params.npz           the flat parameter leaves ``p0, p1, ...`` in the artifact's argument order
  signature.json       inputs (name, dtype, shape with ``b`` the batch), outputs, tasks and task
                       types, export weights, cascade, platforms, step, jax version
  schema.json          the run's schema
  preprocessing.json   raw rows → batch columns (reader-based runs only)
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np
import pyarrow as pa

from mtl_jax.data.preprocessing import Preprocessing

MODEL_FILE = "model.stablehlo"
PARAMS_FILE = "params.npz"
SIGNATURE_FILE = "signature.json"
SCHEMA_FILE = "schema.json"
PREPROCESSING_FILE = "preprocessing.json"
FORMAT = "mtl_jax.serving/1"


def prediction_columns(tasks, task_types, pred: dict) -> dict[str, np.ndarray]:
    """``p_<task>`` (binary) or ``value_<task>`` (regression) per task, ``p_cvr`` under a cascade,
    and ``score``: the output columns ``predict`` and :meth:`Served.score` share."""
    out = {}
    for k, (task, kind) in enumerate(zip(tasks, task_types)):
        out[f"{'value' if kind == 'regression' else 'p'}_{task}"] = np.asarray(pred["probs"][:, k])
    if "cvr" in pred:
        out["p_cvr"] = np.asarray(pred["cvr"])
    out["score"] = np.asarray(pred["score"])
    return out


@dataclasses.dataclass
class Served:
    """A loaded export directory (see :func:`load`)."""

    directory: str
    signature: dict
    exported: jax.export.Exported
    params: list
    preprocessing: Preprocessing | None
    last_id_counts: dict = dataclasses.field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return list(self.signature["tasks"])

    def predict(self, columns: dict, *, batch_size: int = 4096) -> dict[str, np.ndarray]:
        """Batch columns (ids already) → ``probs`` [N, T], ``score`` [N] (and ``cvr`` [N]).

        Rows run in chunks of ``batch_size``; a short chunk is padded to the next power of two
        (at most ``batch_size``), so a stream of requests compiles a few shapes, not one per size.
        """
        names = [i["name"] for i in self.signature["inputs"]]
        missing = [k for k in names if k not in columns]
        if missing:
            raise ValueError(f"{self.directory}: input columns {missing} are missing; need {names}")
        inputs = {
            i["name"]: np.asarray(columns[i["name"]], i["dtype"]) for i in self.signature["inputs"]
        }
        n = len(inputs["cat"])
        parts: dict[str, list] = {}
        for start in range(0, n, batch_size):
            chunk = {k: v[start : start + batch_size] for k, v in inputs.items()}
            rows = len(chunk["cat"])
            size = min(batch_size, 1 << max(rows - 1, 0).bit_length())
            if size > rows:  # padded with copies of the chunk's first row
                chunk = {
                    k: np.concatenate([v, np.repeat(v[:1], size - rows, 0)])
                    for k, v in chunk.items()
                }
            out = self.exported.call(self.params, chunk)
            for k, v in out.items():
                parts.setdefault(k, []).append(np.asarray(v)[:rows])
        return {k: np.concatenate(v) for k, v in parts.items()}

    def score(self, rows, *, batch_size: int = 4096) -> pa.Table:
        """Raw rows (an Arrow table, a pandas DataFrame or a dict of columns) → output table.

        Maps them with the run's preprocessing (its ids unseen in training → 0, counted in
        ``last_id_counts``); for runs without one (synthetic data) ``rows`` are batch columns.
        """
        if self.preprocessing is None:
            columns, self.last_id_counts = dict(rows), {}
        else:
            if not isinstance(rows, pa.Table):
                rows = pa.Table.from_pandas(rows) if hasattr(rows, "iloc") else pa.table(rows)
            columns, self.last_id_counts = self.preprocessing.apply(rows)
        pred = self.predict(columns, batch_size=batch_size)
        return pa.table(prediction_columns(self.tasks, self.signature["task_types"], pred))


def load(directory: str) -> Served:
    """Loads an export directory written by ``python -m mtl_jax.export``."""
    path = os.path.join(directory, SIGNATURE_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not an export directory (run mtl_jax.export)")
    with open(path) as f:
        signature = json.load(f)
    if signature.get("format") != FORMAT:
        raise ValueError(f"{path}: format {signature.get('format')!r}, expected {FORMAT!r}")
    with open(os.path.join(directory, MODEL_FILE), "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    with np.load(os.path.join(directory, PARAMS_FILE)) as npz:
        params = [jax.device_put(npz[f"p{i}"]) for i in range(len(npz.files))]
    prep_path = os.path.join(directory, PREPROCESSING_FILE)
    preprocessing = None
    if os.path.isfile(prep_path):
        with open(prep_path) as f:
            preprocessing = Preprocessing.from_json(f.read())
    return Served(directory, signature, exported, params, preprocessing)
