"""Fingerprints of the trained parameters of every model's runlocal config, to show that a
refactor changed no arithmetic: same seed → bit-identical parameters.

    python bench/param_fingerprint.py --output bench/param_fingerprint_before.json
    (refactor)
    python bench/param_fingerprint.py --compare bench/param_fingerprint_before.json

Each variant trains ``configs/<name>.py:runlocal`` for ``--steps`` steps through the real loop
(``loop.train_and_evaluate``), restores the final checkpoint (``restore.restore_run``) and hashes
every parameter and model-state leaf (SHA-256 of path, dtype, shape and bytes). The task-weighting
parameters, when a run has them (a learned weighting), get their own hash, so a change of where
they are kept does not hide a change of their values. Runs without a learned weighting once held
untrained task-weighting parameters too; a recorded hash of those is not compared. Variants
cover every model config, the learned loss weightings and the embedding updates. Bit-identity
holds on one machine and one JAX build; a fingerprint file is not meant to match across machines.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mtl_jax import loop, optim, restore, weighting  # noqa: E402

MODELS = (
    "mlp", "shared_bottom", "omoe", "mmoe", "esmm", "cgc", "ple", "aitm", "coarse_attention",
    "fine_attention", "boost_experts", "expert_attention", "feature_attention", "sequence_mmoe",
    "multisource", "paper_full",
)  # fmt: skip
VARIANTS = {
    **{m: (m, []) for m in MODELS},
    "mmoe_uncertainty": ("mmoe", ["loss.weighting=uncertainty"]),
    "mmoe_gradnorm": ("mmoe", ["loss.weighting=gradnorm"]),
    "mmoe_pcgrad": ("mmoe", ["loss.weighting=pcgrad"]),
    "mmoe_dense_embed": ("mmoe", ["optim.embedding_update=dense"]),
    "mmoe_rowwise_adagrad": (
        "mmoe",
        ["optim.embedding_update=rowwise_adagrad", "optim.name=adagrad"],
    ),
    "paper_full_paper": ("paper_full", ["@paper"]),
}


def _digest(tree) -> str:
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    for path, leaf in sorted(leaves, key=lambda pl: jax.tree_util.keystr(pl[0])):
        a = np.asarray(jax.device_get(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def fingerprint(name: str, steps: int) -> dict:
    model, overrides = VARIANTS[name]
    arg = "runlocal" + ("".join(",paper" for o in overrides if o == "@paper"))
    config = importlib.import_module(f"configs.{model}").get_config(arg)
    with config.unlocked():
        config.num_steps = steps
        config.eval_every_steps = steps
        config.checkpoint_every_steps = steps
        for o in overrides:
            if o.startswith("@"):
                continue
            key, value = o.split("=", 1)
            node = config
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = type(node[leaf])(value) if node[leaf] is not None else value
    with tempfile.TemporaryDirectory() as workdir:
        loop.train_and_evaluate(config, workdir)
        run = restore.restore_run(workdir)
        params = dict(run.params)
        weighting = params.pop(optim.TASK_WEIGHTING, None)
        out = {"params": _digest(params), "model_state": _digest(run.model_state)}
        if weighting is not None:
            out["task_weighting"] = _digest(weighting)
    return out


def _same(name: str, before: dict | None, after: dict) -> bool:
    """Equal fingerprints; a recorded task-weighting hash counts only under a learned weighting."""
    if before is None:
        return False
    kinds = [o.split("=", 1)[1] for o in VARIANTS[name][1] if o.startswith("loss.weighting=")]
    if not set(kinds) & set(weighting.LEARNED):
        before = {k: v for k, v in before.items() if k != "task_weighting"}
    return before == after


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--output", help="write the fingerprints here (JSON)")
    p.add_argument(
        "--compare", help="compare with the fingerprints in this file; exit 1 if any differ"
    )
    a = p.parse_args()
    os.environ.setdefault("MTL_JAX_NO_PROGRESS", "1")
    result = {}
    for name in a.variants.split(","):
        result[name] = fingerprint(name, a.steps)
        print(name, json.dumps(result[name]), flush=True)
    if a.output:
        with open(a.output, "w") as f:
            json.dump(
                {"steps": a.steps, "jax": jax.__version__, "fingerprints": result}, f, indent=1
            )
    if a.compare:
        with open(a.compare) as f:
            ref = json.load(f)["fingerprints"]
        bad = [n for n in result if not _same(n, ref.get(n), result[n])]
        for n in bad:
            print(f"DIFFERS {n}: before {ref.get(n)} after {result[n]}")
        print(f"{len(result) - len(bad)}/{len(result)} variants bit-identical")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
