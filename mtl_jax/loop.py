"""The one training loop: mesh → data → state → steps → restore → train/eval/checkpoint.

Host syncs are limited to log, eval and checkpoint steps: per-step metrics stay on the device
until the log interval, where they are fetched together. A non-finite loss is detected there (and
always before a checkpoint is written), so a bad step can never reach a checkpoint.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import logging

from mtl_jax import config_check, evaluation, optim, sharding, steps
from mtl_jax.checkpoint import Checkpointer, abstract_with_sharding
from mtl_jax.data import datasets, pipeline
from mtl_jax.logs import MetricWriter, progress
from mtl_jax.state import abstract_model, abstract_train_state, create_train_state, init_model


class NonFiniteLossError(FloatingPointError):
    pass


def total_steps(config, n_train: int) -> int:
    if config.num_steps is not None:
        return int(config.num_steps)
    return pipeline.steps_per_epoch(n_train, config.batch_size) * int(config.num_epochs)


def _check_finite(window: list[tuple[int, dict]], schema) -> list[dict]:
    """Fetches a window of per-step metrics; raises naming the first step with a bad loss."""
    host = jax.device_get([m for _, m in window])
    for (step, _), m in zip(window, host):
        if not np.isfinite(m["loss"]):
            losses = dict(zip(schema.tasks, np.asarray(m["task_losses"]).tolist()))
            raise NonFiniteLossError(
                f"non-finite loss {float(m['loss'])} at step {step} (task losses {losses}); "
                "training stopped and the last checkpoint (written before this step) is intact. "
                "Check the input data for NaN/inf values or lower config.optim.learning_rate."
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


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains per ``config`` in ``workdir`` (resuming if it holds a checkpoint).

    Returns the final ``{"val": metrics, "test": metrics}``.
    """
    schema, splits, preprocessing = datasets.load_with_preprocessing(config.data)
    config_check.validate(config, schema)
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_batch_size(config.batch_size, mesh)
    sharding.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
    n_train = pipeline.num_rows(splits["train"])
    num_steps = total_steps(config, n_train)

    opt = optim.make_optimizer(config.optim, num_steps)
    graphdef, _, _ = abstract_model(schema, config.model, config.seed)
    abstract_state = abstract_train_state(schema, config.model, opt, config.seed)
    state_sh = sharding.state_sharding(abstract_state, mesh, sharding.sharding_rules(config.mesh))
    # Initialised inside jit straight onto its shardings: a row-sharded table is never whole on
    # one device.
    state = jax.jit(
        lambda: create_train_state(*init_model(schema, config.model, config.seed)[1:], opt),
        out_shardings=state_sh,
    )()
    batch_sh = sharding.batch_sharding(mesh)

    train_ds = pipeline.train_dataset(
        datasets.model_inputs(splits["train"]),
        batch_size=config.batch_size,
        num_steps=num_steps,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        prefetch=config.prefetch,
    )
    train_iter = iter(train_ds)

    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.max_to_keep)
    start = ckpt.latest_step()
    if start is not None:
        state = ckpt.restore(start, abstract_with_sharding(state, state_sh), train_iter)
        start = int(jax.device_get(state.step))
    else:
        start = 0
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        with open(os.path.join(workdir, "schema.json"), "w") as f:
            f.write(schema.to_json())
        if preprocessing is not None:  # how raw rows became these columns (for predict)
            with open(os.path.join(workdir, "preprocessing.json"), "w") as f:
                f.write(preprocessing.to_json())

    regression = tuple(schema.is_regression(k) for k in range(schema.num_tasks))
    train_step = steps.jit_train_step(graphdef, opt, config, state_sh, batch_sh, regression)
    eval_step = steps.jit_eval_step(
        graphdef, config, state_sh.params, state_sh.model_state, batch_sh, regression
    )
    writer = MetricWriter(workdir)
    report_kw = dict(
        tasks=schema.tasks,
        task_types=schema.task_types,
        cascade=config.loss.cascade,
        loss_weights=list(config.loss.loss_weights),
        top_n=config.metrics.top_n,
    )

    flags: dict[str, dict[str, list[str]]] = {}

    def evaluate(split: str, step: int) -> dict:
        pred = evaluation.predict_split(
            eval_step,
            state.params,
            state.model_state,
            splits[split],
            batch_size=config.eval_batch_size,
            mesh=mesh,
        )
        result = evaluation.report(pred, **report_kw)
        writer.write(step, split, result)
        bad = evaluation.degenerate_tasks(pred, tasks=schema.tasks, task_types=schema.task_types)
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
                host = _check_finite(window, schema)
                dt = time.perf_counter() - t0
                summary = _summarise(host, schema)
                summary["examples_per_sec"] = rows_in_window / max(dt, 1e-9)
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
    # A degenerate task output (constant, NaN, AUC exactly 0.5) marks the run: ablation tables
    # count such runs and leave them out of every mean.
    final_flags = {split: flags[split] for split in final if flags.get(split)}
    if jax.process_index() == 0:
        for split, r in final.items():
            print(f"final {split}: " + _brief(r, schema), flush=True)
        for split, bad in final_flags.items():
            for task, reasons in bad.items():
                print(f"FLAGGED {split}: task {task!r} is degenerate: {'; '.join(reasons)}")
        with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
            json.dump(jsonable(dict(final, flags=final_flags)), f, indent=2)
    writer.close()
    return final


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
