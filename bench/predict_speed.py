"""Rows per second of ``mtl_jax.predict`` and of the exported ``jax.export`` artifact.

Usage:
    python bench/predict_speed.py [--workdir RUN] [--model mmoe] [--rows 200000]
        [--batch-size 4096] [--repeats 3]

Without ``--workdir`` it trains ``configs/<model>.py:runlocal`` for 20 steps in a temporary
directory (the weights do not change the speed). It scores ``--rows`` rows (the run's test split,
repeated) with the two paths, after one untimed pass that compiles:

* predict: ``mtl_jax.predict.score``, the jitted eval step over the run's mesh (every device of
  this machine), host batches made global arrays, predictions gathered in row order;
* artifact: ``mtl_jax.serving.load(DIR).predict``, the deserialized StableHLO on one device;
* onnx (where jax2onnx and onnxruntime are installed, the ``onnx`` extra): ``model.onnx`` in an
  onnxruntime CPU session, batch by batch.

Both exclude reading and writing files and mapping raw rows (``Preprocessing.apply``). The best of
``--repeats`` passes is reported.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mtl_jax import export, loop, predict, serving  # noqa: E402
from mtl_jax.data import loading  # noqa: E402
from mtl_jax.restore import restore_run  # noqa: E402


def best_rate(fn, rows: int, repeats: int) -> float:
    fn()  # compiles
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return rows / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--model", default="mmoe")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="mtl_jax_predict_speed_")
    try:
        measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args, tmp: str) -> None:
    workdir = args.workdir
    if workdir is None:
        config = importlib.import_module(f"configs.{args.model}").get_config("runlocal")
        config.num_steps = 20
        workdir = os.path.join(tmp, "run")
        loop.train_and_evaluate(config, workdir)
    run = restore_run(workdir)
    _, splits = loading.load(run.config.data)
    test = splits["test"]
    reps = -(-args.rows // len(test["cat"]))
    columns = {k: np.concatenate([v] * reps)[: args.rows] for k, v in test.items()}

    def via_predict():
        predict.score(run, columns, batch_size=args.batch_size, progress=False)

    onnx = importlib.util.find_spec("jax2onnx") is not None
    directory = os.path.join(tmp, "export")
    export.export_run(run, directory, platforms=(jax.default_backend(),), onnx=onnx)
    served = serving.load(directory)

    def via_artifact():
        served.predict(columns, batch_size=args.batch_size)

    print(
        f"model={run.config.model.name} rows={args.rows:,} batch={args.batch_size} "
        f"devices={jax.device_count()} ({jax.devices()[0].device_kind}) cpus={os.cpu_count()}"
    )
    print(f"predict  {best_rate(via_predict, args.rows, args.repeats):>12,.0f} rows/s")
    print(f"artifact {best_rate(via_artifact, args.rows, args.repeats):>12,.0f} rows/s")
    if onnx:
        import onnxruntime

        session = onnxruntime.InferenceSession(os.path.join(directory, export.ONNX_FILE))
        names = [i["name"] for i in served.signature["inputs"]]

        def via_onnx():
            for start in range(0, args.rows, args.batch_size):
                session.run(None, {k: columns[k][start : start + args.batch_size] for k in names})

        print(f"onnx     {best_rate(via_onnx, args.rows, args.repeats):>12,.0f} rows/s")


if __name__ == "__main__":
    main()
