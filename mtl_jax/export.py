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

``--onnx`` (needs the ``onnx`` extra: ``pip install -e ".[onnx]"``, jax2onnx and onnxruntime)
also writes ``model.onnx`` through ``jax2onnx`` (parameters as initializers, batch dimension
``B``) and checks it with onnxruntime against the StableHLO artifact on random rows of the
schema; the largest difference goes into ``signature.json``. A conversion that fails says why
(jax2onnx names the primitive it has no rule for) and leaves the StableHLO artifact as it is.
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
from mtl_jax.cli import UserError
from mtl_jax.data.schema import Schema

OUTPUTS = ("probs", "score", "cvr")
ONNX_FILE = "model.onnx"
ONNX_TOLERANCE = 1e-5  # float32 kernels of another runtime; the four families agree within 1e-7


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


def sample_inputs(schema: Schema, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random valid model inputs: ids within each field's vocabulary, standard normal dense."""
    rng = np.random.default_rng(seed)
    out = {
        "cat": np.stack(
            [rng.integers(0, f.vocab_size, rows) for f in schema.categorical], axis=1
        ).astype(np.int32),
        "dense": rng.standard_normal((rows, schema.num_dense)).astype(np.float32),
        "source": rng.integers(0, schema.num_sources, rows).astype(np.int32),
    }
    if schema.sequence is not None:
        seq, shape = schema.sequence, (rows, schema.sequence.max_len)
        out["seq_item"] = rng.integers(0, schema.tables()[seq.table], shape).astype(np.int32)
        out["seq_days"] = (rng.random(shape) * 30).astype(np.float32)
        out["seq_loc"] = rng.integers(0, seq.num_locations, shape).astype(np.int32)
    return out


def export_onnx(run, directory: str, exported) -> dict:
    """Writes ``model.onnx`` and checks it against ``exported``; returns what the signature
    records (``max_abs_diff`` on 512 random rows), or ``{"error": why}`` when it does not
    convert."""
    try:
        import jax2onnx
        import onnxruntime
    except ImportError as e:
        raise UserError(f"--onnx needs the onnx extra (pip install -e '.[onnx]'): {e}") from e
    f, leaves = serving_function(run)
    (b,) = jax.export.symbolic_shape("B")
    specs = input_specs(run.schema, b)
    names = list(specs)
    outputs = [k for k in OUTPUTS if k in jax.tree.unflatten(exported.out_tree, exported.out_avals)]
    constants = [jax.numpy.asarray(x) for x in leaves]

    def positional(*inputs):
        out = f(constants, dict(zip(names, inputs)))
        return tuple(out[k] for k in outputs)

    try:
        model = jax2onnx.to_onnx(
            positional, list(specs.values()), input_names=names, output_names=outputs
        )
    except Exception as e:  # a jax2onnx limitation, not ours: keep the StableHLO artifact
        return {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:500]}"}
    path = os.path.join(directory, ONNX_FILE)
    with open(path, "wb") as fh:
        fh.write(model.SerializeToString())
    batch = sample_inputs(run.schema, 512)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = dict(zip(outputs, session.run(outputs, batch)))
    want = exported.call([jax.numpy.asarray(x) for x in leaves], batch)
    diff = max(float(np.abs(np.asarray(want[k]) - got[k]).max()) for k in outputs)
    if not diff <= ONNX_TOLERANCE:
        os.remove(path)
        return {"error": f"onnxruntime differs from the StableHLO artifact by {diff:g}"}
    return {"file": ONNX_FILE, "opset": int(model.opset_import[0].version), "max_abs_diff": diff}


def export_run(run, directory: str, platforms=("cpu", "cuda", "tpu"), onnx: bool = False) -> dict:
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
    onnx_path = os.path.join(directory, ONNX_FILE)
    if os.path.exists(onnx_path):  # from an earlier export
        os.remove(onnx_path)
    if onnx:
        signature["onnx"] = export_onnx(run, directory, exported)
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
    ap.add_argument("--onnx", action="store_true", help="also model.onnx (the onnx extra)")
    cli.add_traceback_flag(ap)
    args = ap.parse_args(argv)
    platforms = [p for p in args.platforms.split(",") if p]
    bad = sorted(set(platforms) - {"cpu", "cuda", "rocm", "tpu"})
    if bad or not platforms:
        raise ValueError(f"--platforms {args.platforms}: expected some of cpu, cuda, rocm, tpu")
    signature = export_run(restore_run(args.workdir, args.step), args.out, platforms, args.onnx)
    print(
        f"exported {signature['model']} step {signature['step']} "
        f"({signature['num_params']:,} parameters) for {','.join(signature['platforms'])} "
        f"to {args.out}"
    )
    onnx = signature.get("onnx", {})
    if "error" in onnx:
        print(f"ONNX not written ({onnx['error']}); the StableHLO artifact serves")
    elif onnx:
        print(f"ONNX: {onnx['file']}, onnxruntime within {onnx['max_abs_diff']:.1e} of StableHLO")
    return 0


if __name__ == "__main__":
    from mtl_jax import cli

    sys.exit(cli.run(main))
