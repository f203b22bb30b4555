"""CLI: ``python -m mtl_jax.evaluate --workdir runs/mmoe [--splits val,test] [--step N]``.

Restores a checkpoint written by ``mtl_jax.train`` (its config is read from the checkpoint),
evaluates it on the requested splits and writes ``eval_metrics.json`` (or ``--output``).
It evaluates exactly the checkpoint asked for: one that does not restore is an error naming why
(``mtl_jax.train`` on the same workdir falls back to the newest complete checkpoint and trains
the rest again). Bad input prints one ``error: ...`` line and exits 2 (``mtl_jax/cli.py``).
"""

from __future__ import annotations

import json
import os

from absl import flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by mtl_jax.train.")
_SPLITS = flags.DEFINE_list("splits", ["val", "test"], "Splits to evaluate.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_OUTPUT = flags.DEFINE_string(
    "output", None, "Metrics JSON path (default workdir/eval_metrics.json)."
)
flags.mark_flags_as_required(["workdir"])


def evaluate_checkpoint(workdir: str, splits=("val", "test"), step: int | None = None) -> dict:
    """Restores ``workdir``'s checkpoint (latest or ``step``) and returns metrics per split."""
    import ml_collections

    from mtl_jax import evaluation, optim, sharding, steps
    from mtl_jax.checkpoint import Checkpointer, abstract_with_sharding, failure_reason
    from mtl_jax.cli import UserError
    from mtl_jax.data import datasets, pipeline
    from mtl_jax.loop import jsonable, total_steps
    from mtl_jax.state import abstract_model, abstract_train_state

    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"{ckpt_dir}: no checkpoints; train first with mtl_jax.train")
    bad = sorted(set(splits) - set(datasets.SPLITS))
    if bad:
        raise ValueError(f"--splits: unknown {bad}; valid splits are {list(datasets.SPLITS)}")
    ckpt = Checkpointer(ckpt_dir)
    steps_there = ckpt.all_steps()
    step = ckpt.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"{ckpt_dir}: no checkpoint found")
    if step not in steps_there:
        raise ValueError(f"--step {step}: no such checkpoint in {ckpt_dir}; steps: {steps_there}")

    def unusable(e: Exception) -> UserError:
        return UserError(
            f"{ckpt_dir}/{step} does not restore ({failure_reason(e)}); rerun mtl_jax.train on "
            f"this workdir to fall back to an older checkpoint and retrain from it, or pass --step "
            f"with another of {steps_there}"
        )

    try:
        config = ml_collections.ConfigDict(ckpt.restore_config(step))
    except Exception as e:
        raise unusable(e) from e
    schema, data = datasets.load(config.data)
    mesh = sharding.make_mesh(config.mesh)
    graphdef, _, _ = abstract_model(schema, config.model, config.seed)
    # The optimizer state's structure is part of the checkpoint, so restore the whole state.
    opt = optim.make_optimizer(config.optim, total_steps(config, pipeline.num_rows(data["train"])))
    abstract = abstract_train_state(schema, config.model, opt, config.seed)
    state_sh = sharding.state_sharding(abstract, mesh, sharding.sharding_rules(config.mesh))
    try:
        state = ckpt.restore(step, abstract_with_sharding(abstract, state_sh))
    except Exception as e:
        raise unusable(e) from e
    ckpt.close()
    eval_step = steps.jit_eval_step(
        graphdef, config, state_sh.params, state_sh.model_state, sharding.batch_sharding(mesh)
    )
    out = {"step": int(step)}
    for split in splits:
        pred = evaluation.predict_split(
            eval_step,
            state.params,
            state.model_state,
            data[split],
            batch_size=config.eval_batch_size,
            mesh=mesh,
        )
        out[split] = evaluation.report(
            pred,
            tasks=schema.tasks,
            cascade=config.loss.cascade,
            loss_weights=list(config.loss.loss_weights),
            top_n=config.metrics.top_n,
        )
    return jsonable(out)


def main(argv):
    del argv
    result = evaluate_checkpoint(_WORKDIR.value, tuple(_SPLITS.value), _STEP.value)
    path = _OUTPUT.value or os.path.join(_WORKDIR.value, "eval_metrics.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    for split in _SPLITS.value:
        keys = [k for k in result[split] if k.endswith("/auc") or "@" in k or k == "loss"]
        print(split, " ".join(f"{k}={result[split][k]:.4f}" for k in keys))
    print(f"wrote {path}")


if __name__ == "__main__":
    from mtl_jax import cli

    cli.run_absl(main)
