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
    from mtl_jax import eval_report
    from mtl_jax.data import loading
    from mtl_jax.loop import jsonable
    from mtl_jax.restore import restore_run

    bad = sorted(set(splits) - set(loading.SPLITS))
    if bad:
        raise ValueError(f"--splits: unknown {bad}; valid splits are {list(loading.SPLITS)}")
    run = restore_run(workdir, step)
    _, data = loading.load(run.config.data)
    eval_step = run.eval_step()
    out = {"step": run.step}
    for split in splits:
        _, out[split] = eval_report.evaluate_split(
            eval_step,
            run.params,
            run.model_state,
            data[split],
            config=run.config,
            schema=run.schema,
            mesh=run.mesh,
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
