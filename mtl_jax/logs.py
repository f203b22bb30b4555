"""Metric writers (JSONL + TensorBoard) and the progress bar; only process 0 writes or draws.

A resumed run passes the step it restored (``MetricWriter(workdir, resume_step=S)``): rows after
``S`` were logged by the interrupted run after its last usable checkpoint and are logged again by
the resumed one, so they are dropped from ``metrics.jsonl`` and TensorBoard. Evaluation rows at
``S`` are dropped too (the resumed run repeats the evaluation due at ``S``: the interrupted run may
have stopped between the checkpoint and its evaluation); training rows at ``S`` are kept. The
file then holds each row once, as an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm


def _scalar(v):
    v = np.asarray(v)
    return float(v) if v.size == 1 else [float(x) for x in v.ravel()]


def write_atomic(path: str, text: str) -> None:
    """Replaces ``path`` with ``text`` in one rename: a kill leaves the old or the new file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _kept_on_resume(row: dict, step: int) -> bool:
    return row["step"] < step or (row["step"] == step and row["split"] == "train")


def truncate_metrics(path: str, step: int) -> list[dict]:
    """Drops the rows a run resumed at ``step`` writes again (module docstring); returns the rest.

    Lines that do not parse (a write cut short by a kill) are dropped with a note on stderr.
    """
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    rows, unreadable = [], 0
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            unreadable += 1
    if unreadable:
        print(
            f"{path}: dropped {unreadable} unreadable line(s) (a write cut short)",
            file=sys.stderr,
        )
    kept = [r for r in rows if _kept_on_resume(r, step)]
    if len(kept) != len(lines):
        write_atomic(path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept))
    return kept


class MetricWriter:
    """Appends ``{"step", "split", ...metrics}`` lines to ``metrics.jsonl`` and to TensorBoard.

    Args:
      workdir: the run directory.
      tensorboard: also write TensorBoard events under ``workdir/tb``.
      resume_step: the step the run starts from (0 for a new run): rows a previous invocation
        logged past it are dropped (module docstring). None appends to whatever is there.
    """

    def __init__(self, workdir: str, *, tensorboard: bool = True, resume_step: int | None = None):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if self.active:
            os.makedirs(workdir, exist_ok=True)
            kept = [] if resume_step is None else truncate_metrics(self.path, resume_step)
            if tensorboard:
                from tensorboardX import SummaryWriter

                # purge_step: TensorBoard discards this run's events at steps >= resume_step;
                # the training row kept at resume_step is written again below.
                self.tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resume_step)
                for row in kept:
                    if row["step"] == resume_step:
                        self._write_tb(row)

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.active:
            return
        row = {"step": int(step), "split": split, "time": time.time()}
        row.update({k: _scalar(v) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(row, allow_nan=True) + "\n")
        self._write_tb(row)

    def _write_tb(self, row: dict) -> None:
        if self.tb is None:
            return
        step, split = row["step"], row["split"]
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
