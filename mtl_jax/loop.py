"""The one training loop: mesh → data → state → steps → restore → train/eval/checkpoint.

Host syncs are limited to log, eval and checkpoint steps: per-step metrics stay on the device
until the log interval, where they are fetched together. A non-finite loss is detected there (and
always before a checkpoint is written), so a bad step can never reach a checkpoint.
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from mtl_jax import config_check, eval_report, resume, sharding, steps, touched_rows
from mtl_jax.checkpoint import Checkpointer, abstract_with_sharding
from mtl_jax.cli import UserError
from mtl_jax.data import loading, pipeline
from mtl_jax.logs import MetricWriter, progress, write_atomic
from mtl_jax.state import create_train_state, init_model, layout


class NonFiniteLossError(FloatingPointError, UserError):
    """A non-finite training loss; the message says which step and what was saved."""


def jit_train_step(graphdef, tx, config, state_sharding, batch_sharding, regression=None):
    """The jitted ``steps.train_step``: donated state, shardings fixed, so it compiles once."""
    regression = None if regression is None else tuple(bool(r) for r in regression)
    return jax.jit(
        functools.partial(
            steps.train_step, graphdef=graphdef, tx=tx, config=config, regression=regression
        ),
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, None),
        donate_argnums=(0,),
    )


def jit_eval_step(
    graphdef, config, params_sharding, model_state_sharding, batch_sharding, regression=None
):
    """The jitted ``steps.eval_step``, its inputs sharded like training's."""
    regression = None if regression is None else tuple(bool(r) for r in regression)
    return jax.jit(
        functools.partial(steps.eval_step, graphdef=graphdef, config=config, regression=regression),
        in_shardings=(params_sharding, model_state_sharding, batch_sharding),
    )


def total_steps(config, n_train: int) -> int:
    if config.num_steps is not None:
        return int(config.num_steps)
    return pipeline.steps_per_epoch(n_train, config.batch_size) * int(config.num_epochs)


def _check_finite(
    window: list[tuple[int, dict]], schema, checkpoint_step: int | None = None
) -> list[dict]:
    """Fetches a window of per-step metrics; raises naming the first step with a bad loss.

    ``checkpoint_step`` is the newest checkpoint's step (None: there is none), for the message.
    """
    host = jax.device_get([m for _, m in window])
    for (step, _), m in zip(window, host):
        if not np.isfinite(m["loss"]):
            losses = dict(zip(schema.tasks, np.asarray(m["task_losses"]).tolist()))
            if checkpoint_step is None:
                saved = "no checkpoint has been written, so a rerun starts again from step 0"
            else:
                # Every checkpoint is written after the window before it passed this check.
                saved = (
                    f"the newest checkpoint, at step {checkpoint_step}, holds finite values and a "
                    "rerun resumes there (and meets the same batches again)"
                )
            raise NonFiniteLossError(
                f"non-finite loss {float(m['loss'])} at step {step} (task losses {losses}); "
                f"training stopped; {saved}. Check the input data for NaN/inf values or lower "
                "config.optim.learning_rate (changing it on resume needs --allow_config_change)."
            )
    return host


def _summarise(host: list[dict], schema) -> dict:
    out = {"loss": float(np.mean([m["loss"] for m in host]))}
    tl = np.mean([m["task_losses"] for m in host], axis=0)
    for name, v in zip(schema.tasks, tl):
        out[f"loss/{name}"] = float(v)
    for k in host[0]:
        if k in ("loss", "task_losses"):
            continue
        v = np.mean([np.asarray(m[k]) for m in host], axis=0)
        if v.ndim == 1:  # per-task metrics such as task_weights [T]
            out.update({f"{k}/{name}": float(x) for name, x in zip(schema.tasks, v)})
        else:
            out[k] = float(v)
    return out


def train_and_evaluate(config, workdir: str, *, allow_config_change: bool = False) -> dict:
    """Trains per ``config`` in ``workdir`` (resuming if it holds a checkpoint).

    A resume continues from the newest checkpoint that restores completely, and refuses a config
    that changes what is trained unless ``allow_config_change`` (``mtl_jax/resume.py``). A
    finished run (its final checkpoint and ``final_metrics.json`` present) writes nothing.

    Returns the final ``{"val": metrics, "test": metrics}``.
    """
    schema, splits, preprocessing = loading.load_with_preprocessing(config.data)
    config_check.validate(config, schema)
    n_train = pipeline.num_rows(splits["train"])
    num_steps = total_steps(config, n_train)
    mesh, graphdef, tx, abstract_state, state_sh = layout(config, schema, num_steps)
    sharding.check_batch_size(config.batch_size, mesh)
    sharding.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
    weighting_kind = config.loss.get("weighting", "static")
    # Initialised inside jit straight onto its shardings: a row-sharded table is never whole on
    # one device.
    state = jax.jit(
        lambda: create_train_state(
            *init_model(schema, config.model, config.seed, weighting_kind)[1:], tx
        ),
        out_shardings=state_sh,
    )()
    batch_sh = sharding.batch_sharding(mesh)

    train_batches = pipeline.train_batches(
        loading.model_inputs(splits["train"]),
        batch_size=config.batch_size,
        num_steps=num_steps,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        prefetch=config.prefetch,
        transform=touched_rows.host_transform(
            graphdef, abstract_state.params, abstract_state.model_state, sparse=tx.sparse
        ),
    )
    train_iter = iter(train_batches)

    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.max_to_keep)
    new_config = resume.as_dict(config)
    changes: dict = {}

    def check_config(old: dict, step: int) -> None:
        old_total = total_steps(ml_collections.ConfigDict(old), n_train)
        changes["changed"], changes["outside"] = resume.check(
            old,
            new_config,
            step=step,
            old_total=old_total,
            new_total=num_steps,
            allow_change=allow_config_change,
            workdir=workdir,
        )

    try:
        restored = ckpt.restore_newest(
            abstract_with_sharding(state, state_sh), train_iter, check_config=check_config
        )
    except BaseException:
        ckpt.close()
        train_iter.close()
        raise
    start = 0 if restored is None else restored.step
    if restored is not None:
        state = restored.state
    final_path = os.path.join(workdir, "final_metrics.json")
    final = _read_final(final_path) if start == num_steps else None
    if final is not None:
        # Finished: final_metrics.json is removed whenever a run trains on (below), so this one
        # belongs to this final checkpoint. Nothing is trained, evaluated or written.
        ckpt.close()
        train_iter.close()
        if jax.process_index() == 0:
            logging.info("%s: run already finished at step %d; nothing to do", workdir, start)
            for split in ("val", "test"):
                logging.info("final %s: %s", split, _brief(final[split], schema))
        return final
    if jax.process_index() == 0:
        if restored is not None:
            logging.info("%s: resuming at step %d of %d", workdir, start, num_steps)
        resume.record(
            workdir,
            start,
            new_config,
            checkpoint_config=None if restored is None else restored.config,
            changed=changes.get("changed"),
            outside=changes.get("outside"),
        )
        _write_run_files(workdir, config, schema, preprocessing)

    regression = tuple(schema.is_regression(k) for k in range(schema.num_tasks))
    train_step = jit_train_step(graphdef, tx, config, state_sh, batch_sh, regression)
    eval_step = jit_eval_step(
        graphdef, config, state_sh.params, state_sh.model_state, batch_sh, regression
    )
    writer = MetricWriter(workdir, resume_step=start)

    flags: dict[str, dict[str, list[str]]] = {}

    def evaluate(split: str, step: int) -> dict:
        pred, result = eval_report.evaluate_split(
            eval_step,
            state.params,
            state.model_state,
            splits[split],
            config=config,
            schema=schema,
            mesh=mesh,
        )
        writer.write(step, split, result)
        bad = eval_report.degenerate_tasks(pred, tasks=schema.tasks, task_types=schema.task_types)
        flags[split] = bad
        for task, reasons in bad.items():
            logging.warning(
                "step %d %s: task %r is degenerate: %s", step, split, task, "; ".join(reasons)
            )
        return result

    window: list[tuple[int, dict]] = []
    t0, rows_in_window = time.perf_counter(), 0
    bar = progress(num_steps, initial=start)
    step = start
    try:
        if 0 < start < num_steps and start % config.eval_every_steps == 0:
            # The evaluation due at the restored step (the writer dropped its rows: the
            # interrupted run may have stopped between the checkpoint and the evaluation).
            r = evaluate("val", start)
            bar.write(f"step {start} val " + _brief(r, schema))
            t0 = time.perf_counter()
        while step < num_steps:
            batch = sharding.to_global(next(train_iter), mesh)
            state, step_metrics = train_step(state, batch)
            step += 1
            window.append((step, step_metrics))
            rows_in_window += config.batch_size
            bar.update(1)
            last = step == num_steps
            if (
                step % config.log_every_steps == 0
                or last
                or step % config.checkpoint_every_steps == 0
            ):
                summary = _summarise(_check_finite(window, schema, ckpt.latest_step()), schema)
                summary["examples_per_sec"] = rows_in_window / max(time.perf_counter() - t0, 1e-9)
                writer.write(step, "train", summary)
                bar.set_postfix(
                    loss=f"{summary['loss']:.4f}", ex_s=f"{summary['examples_per_sec']:.0f}"
                )
                window, t0, rows_in_window = [], time.perf_counter(), 0
            if step % config.checkpoint_every_steps == 0 and not last:
                ckpt.save(step, state, train_iter, config.to_json_best_effort())
            if step % config.eval_every_steps == 0 and not last:
                r = evaluate("val", step)
                bar.write(f"step {step} val " + _brief(r, schema))
                t0 = time.perf_counter()  # eval time is not training throughput
        if start < num_steps or ckpt.latest_step() != num_steps:
            ckpt.save(num_steps, state, train_iter, config.to_json_best_effort())
    finally:
        bar.close()
        ckpt.close()
        train_iter.close()  # stops the prefetch thread before interpreter shutdown
    final = {split: evaluate(split, num_steps) for split in ("val", "test")}
    if jax.process_index() == 0:
        _write_final(final_path, final, flags, schema)
    writer.close()
    return final


def _write_run_files(workdir: str, config, schema, preprocessing) -> None:
    """What a run's directory says about it besides checkpoints and metrics: its config, its
    schema and, for raw data, how raw rows became columns (``predict`` reads it). A
    ``final_metrics.json`` from a shorter run that this one extends is removed."""
    write_atomic(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
    write_atomic(os.path.join(workdir, "schema.json"), schema.to_json())
    final_path = os.path.join(workdir, "final_metrics.json")
    if os.path.exists(final_path):
        os.remove(final_path)
    if preprocessing is not None:
        write_atomic(os.path.join(workdir, "preprocessing.json"), preprocessing.to_json())


def _write_final(path: str, final: dict, flags: dict, schema) -> None:
    """Logs the final metrics and writes ``final_metrics.json`` with the flags of the splits
    that have degenerate tasks (constant, NaN, AUC exactly 0.5): ablation tables count such
    runs and leave them out of every mean."""
    final_flags = {split: flags[split] for split in final if flags.get(split)}
    for split, r in final.items():
        logging.info("final %s: %s", split, _brief(r, schema))
    for split, bad in final_flags.items():
        for task, reasons in bad.items():
            logging.warning(
                "FLAGGED %s: task %r is degenerate: %s", split, task, "; ".join(reasons)
            )
    write_atomic(path, json.dumps(jsonable(dict(final, flags=final_flags)), indent=2))


def _read_final(path: str) -> dict | None:
    """The final metrics a finished run wrote, or None (none yet, or written only in part)."""
    try:
        with open(path) as f:
            final = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return final if isinstance(final, dict) and {"val", "test"} <= set(final) else None


def _brief(r: dict, schema) -> str:
    parts = []
    for k, t in enumerate(schema.tasks):
        metric = "mse" if schema.is_regression(k) else "auc"
        parts.append(f"{t}/{metric}={r[f'{t}/{metric}']:.4f}")
        if f"{t}/oracle_gap" in r:
            parts.append(f"{t}/gap={r[f'{t}/oracle_gap']:.4f}")
    parts.append(f"loss={r['loss']:.4f}")
    return " ".join(parts)


def jsonable(x):
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
