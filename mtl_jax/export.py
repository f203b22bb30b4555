"""CLI: ``python -m mtl_jax.export --workdir RUN --out DIR``: a run as a self-contained artifact.

Writes the eval forward pass of the run's checkpoint (latest or ``--step``) as a serialized
``jax.export`` artifact: StableHLO of ``f(params, batch) -> {probs, score[, cvr]}`` with a
symbolic batch dimension ``b``, lowered for ``--platforms`` (default ``cpu,cuda,tpu``: one
artifact serves on any of them), plus the parameters, the schema, the preprocessing
(vocabularies and dense scaling) and a signature JSON. ``mtl_jax.serving.load(DIR)`` scores raw
rows from that directory alone; the directory layout is in :mod:`mtl_jax.serving`.

The parameters are arguments of the artifact, not constants inside it: the StableHLO stays small
whatever the embedding tables weigh, and the tables can be replaced without exporting again.
The function is the same ``steps.eval_step`` that training evaluates with (gates left out).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import jax
import numpy as np

from mtl_jax import serving, steps
from mtl_jax.data.schema import Schema

OUTPUTS = ("probs", "score", "cvr")


def input_specs(schema: Schema, batch) -> dict[str, jax.ShapeDtypeStruct]:
    """The model inputs of a batch of ``batch`` rows (an int or a symbolic dimension)."""
    specs = {
        "cat": jax.ShapeDtypeStruct((batch, schema.num_fields), np.int32),
        "dense": jax.ShapeDtypeStruct((batch, schema.num_dense), np.float32),
        "source": jax.ShapeDtypeStruct((batch,), np.int32),
    }
    if schema.sequence is not None:
        length = schema.sequence.max_len
        specs["seq_item"] = jax.ShapeDtypeStruct((batch, length), np.int32)
        specs["seq_days"] = jax.ShapeDtypeStruct((batch, length), np.float32)
        specs["seq_loc"] = jax.ShapeDtypeStruct((batch, length), np.int32)
    return specs


def serving_function(run):
    """``(f, leaves)``: ``f(leaves, batch)`` is the run's eval step on the flat parameter
    leaves (params and model state), returning ``probs``, ``score`` and (cascade) ``cvr``."""
    leaves, treedef = jax.tree.flatten((run.params, run.model_state))
    eval_step = functools.partial(
        steps.eval_step, graphdef=run.graphdef, config=run.config, regression=run.regression
    )

    def f(leaves, batch):
        params, model_state = jax.tree.unflatten(treedef, leaves)
        pred = eval_step(params, model_state, batch)
        return {k: pred[k] for k in OUTPUTS if k in pred}

    return f, [np.asarray(jax.device_get(x)) for x in leaves]


def export_run(run, directory: str, platforms=("cpu", "cuda", "tpu")) -> dict:
    """Writes ``run`` as an export directory; returns the signature."""
    f, leaves = serving_function(run)
    (b,) = jax.export.symbolic_shape("b")
    leaf_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    exported = jax.export.export(jax.jit(f), platforms=tuple(platforms))(
        leaf_specs, input_specs(run.schema, b)
    )
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, serving.MODEL_FILE), "wb") as fh:
        fh.write(exported.serialize())
    params = {f"p{i}": x for i, x in enumerate(leaves)}
    np.savez(os.path.join(directory, serving.PARAMS_FILE), **params)
    signature = {
        "format": serving.FORMAT,
        "inputs": [
            {"name": k, "dtype": np.dtype(s.dtype).name, "shape": ["b", *s.shape[1:]]}
            for k, s in input_specs(run.schema, 1).items()
        ],
        "outputs": {
            k: [str(d) for d in aval.shape]
            for k, aval in jax.tree.unflatten(exported.out_tree, exported.out_avals).items()
        },
        "tasks": list(run.schema.tasks),
        "task_types": list(run.schema.task_types),
        "export_weights": list(run.config.loss.export_weights),
        "cascade": run.config.loss.cascade,
        "platforms": list(exported.platforms),
        "step": run.step,
        "workdir": os.path.abspath(run.workdir),
        "model": run.config.model.name,
        "jax_version": jax.__version__,
        "num_params": int(sum(x.size for x in leaves)),
    }
    with open(os.path.join(directory, serving.SIGNATURE_FILE), "w") as fh:
        json.dump(signature, fh, indent=2)
    with open(os.path.join(directory, serving.SCHEMA_FILE), "w") as fh:
        fh.write(run.schema.to_json())
    prep_path = os.path.join(directory, serving.PREPROCESSING_FILE)
    if run.preprocessing is not None:
        with open(prep_path, "w") as fh:
            fh.write(run.preprocessing.to_json())
    elif os.path.exists(prep_path):  # from an earlier export of another run
        os.remove(prep_path)
    return signature


def main(argv=None) -> int:
    from mtl_jax import cli
    from mtl_jax.restore import restore_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="run directory written by mtl_jax.train")
    ap.add_argument("--out", required=True, help="directory to write the artifact to")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    ap.add_argument(
        "--platforms", default="cpu,cuda,tpu", help="comma-separated: cpu, cuda, rocm, tpu"
    )
    cli.add_traceback_flag(ap)
    args = ap.parse_args(argv)
    platforms = [p for p in args.platforms.split(",") if p]
    bad = sorted(set(platforms) - {"cpu", "cuda", "rocm", "tpu"})
    if bad or not platforms:
        raise ValueError(f"--platforms {args.platforms}: expected some of cpu, cuda, rocm, tpu")
    signature = export_run(restore_run(args.workdir, args.step), args.out, platforms)
    print(
        f"exported {signature['model']} step {signature['step']} "
        f"({signature['num_params']:,} parameters) for {','.join(signature['platforms'])} "
        f"to {args.out}"
    )
    return 0


if __name__ == "__main__":
    from mtl_jax import cli

    sys.exit(cli.run(main))
