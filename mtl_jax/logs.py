"""Metric writers (JSONL + TensorBoard) and the progress bar; only process 0 writes or draws."""

from __future__ import annotations

import json
import math
import os
import time

import jax
import numpy as np
from tqdm.auto import tqdm


def _scalar(v):
    v = np.asarray(v)
    return float(v) if v.size == 1 else [float(x) for x in v.ravel()]


class MetricWriter:
    """Appends ``{"step", "split", ...metrics}`` lines to ``metrics.jsonl`` and to TensorBoard."""

    def __init__(self, workdir: str, *, tensorboard: bool = True):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if self.active:
            os.makedirs(workdir, exist_ok=True)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.active:
            return
        row = {"step": int(step), "split": split, "time": time.time()}
        row.update({k: _scalar(v) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(row, allow_nan=True) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k in ("step", "split", "time"):
                    continue
                tag = f"{split}/{k}".replace("@", "_at_")  # TensorBoard tags allow no '@'
                if isinstance(v, float) and math.isfinite(v):
                    self.tb.add_scalar(tag, v, step)
                elif isinstance(v, list):
                    for i, x in enumerate(v):
                        if math.isfinite(x):
                            self.tb.add_scalar(f"{tag}/{i}", x, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def progress(total: int, initial: int = 0, desc: str = "train"):
    """A tqdm bar on process 0; a silent stand-in elsewhere."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        disable=jax.process_index() != 0 or os.environ.get("MTL_JAX_NO_PROGRESS") == "1",
        dynamic_ncols=True,
        unit="step",
    )
