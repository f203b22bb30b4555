"""Checks a config against the dataset before anything is built; errors name the key.

``config.model`` is checked by the model's own ``read_options`` (the function that reads it when
the model is built, ``mtl_jax/models/options.py``); the rest here, with the same value checks.
"""

from __future__ import annotations

from absl import logging

from mtl_jax import losses, optim, weighting
from mtl_jax.models import get_model_class, paper
from mtl_jax.models.options import choice, number, positive_int

DTYPES = ("float32", "bfloat16")


def _names(value, key: str) -> None:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} must be a list of parameter names, got {value!r}")


def _check_weighting(lc) -> None:
    kind = choice(lc.get("weighting", "static"), "config.loss.weighting", weighting.WEIGHTINGS)
    if kind in ("uncertainty", "gradnorm"):
        number(lc.weighting_lr, "config.loss.weighting_lr", positive=True)
    if kind in ("gradnorm", "pcgrad"):
        _names(lc.task_specific_params, "config.loss.task_specific_params")
    if kind == "gradnorm":
        number(lc.gradnorm_alpha, "config.loss.gradnorm_alpha")
        _names(lc.gradnorm_params, "config.loss.gradnorm_params")


def _note_single_source(opts, schema) -> None:
    """A multi-source model on one source trains, but its improved loss does nothing: say so."""
    if isinstance(opts, paper.PaperOptions) and opts.multisource and schema.num_sources <= 1:
        logging.warning(
            "config.model.name=%r uses the multi-source improved loss, but the data has one "
            "source (num_sources=%d): one feature-space mapping serves every row and the source "
            "discriminator has one class, so its loss is 0 and the adversarial term is inert",
            opts.name,
            schema.num_sources,
        )


def _regression_tasks(schema) -> list[str]:
    return [t for k, t in enumerate(schema.tasks) if schema.is_regression(k)]


def _check_loss(lc, schema) -> None:
    T = schema.num_tasks
    choice(lc.cascade, "config.loss.cascade", losses.CASCADES)
    if lc.cascade != "none" and T < 2:
        raise ValueError(f"config.loss.cascade={lc.cascade!r} needs >= 2 tasks; the data has {T}")
    if lc.cascade != "none" and not schema.all_binary:
        raise ValueError(
            f"config.loss.cascade={lc.cascade!r} chains task probabilities, but the data has "
            f"regression tasks {_regression_tasks(schema)}; set config.loss.cascade='none'"
        )
    for key in ("loss_weights", "export_weights"):
        if len(lc[key]) != T:
            raise ValueError(
                f"config.loss.{key} has {len(lc[key])} entries; the data has {T} tasks "
                f"{list(schema.tasks)}"
            )
    if len(lc.label_weights) != T or any(len(w) != 2 for w in lc.label_weights):
        raise ValueError(
            f"config.loss.label_weights must be {T} pairs (positive, negative) for tasks "
            f"{list(schema.tasks)}, got {lc.label_weights!r}"
        )

    for k, t in enumerate(schema.tasks):
        if schema.is_regression(k) and tuple(lc.label_weights[k]) != (1.0, 1.0):
            logging.warning(
                "config.loss.label_weights[%d] = %s does not apply: task %r is a regression task "
                "(squared error; every row weighs 1)",
                k,
                tuple(lc.label_weights[k]),
                t,
            )

    _check_weighting(lc)


def validate(config, schema) -> None:
    opts = get_model_class(config.model.name).read_options(config.model, schema)
    _note_single_source(opts, schema)
    _check_loss(config.loss, schema)
    positive_int(config.batch_size, "config.batch_size")
    positive_int(config.eval_batch_size, "config.eval_batch_size")
    if config.num_steps is None:
        positive_int(config.num_epochs, "config.num_epochs")
    else:
        positive_int(config.num_steps, "config.num_steps")
    for key in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
        positive_int(config[key], f"config.{key}")
    choice(config.compute_dtype, "config.compute_dtype", DTYPES)
    choice(config.optim.name, "config.optim.name", optim.OPTIMIZERS)
    choice(config.optim.schedule, "config.optim.schedule", optim.SCHEDULES)
    if not config.optim.learning_rate > 0:
        raise ValueError(
            f"config.optim.learning_rate must be > 0, got {config.optim.learning_rate}"
        )
    positive_int(config.metrics.top_n, "config.metrics.top_n")
