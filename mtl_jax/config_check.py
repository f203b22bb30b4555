"""Checks a config against the dataset before anything is built; errors name the key."""

from __future__ import annotations

from absl import logging

from mtl_jax import losses, optim, weighting
from mtl_jax.models import get_model_class, layers, model_names, paper

DTYPES = ("float32", "bfloat16")


def _positive_int(value, key: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


def _widths(value, key: str, *, allow_empty: bool) -> None:
    if not isinstance(value, (tuple, list)) or (not allow_empty and not value):
        raise ValueError(
            f"{key} must be a {'' if allow_empty else 'non-empty '}list of widths, got {value!r}"
        )
    for v in value:
        _positive_int(v, f"{key}[*]")


def _names(value, key: str) -> None:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} must be a list of parameter names, got {value!r}")


def _check_weighting(lc) -> None:
    kind = lc.get("weighting", "static")
    if kind not in weighting.WEIGHTINGS:
        raise ValueError(
            f"config.loss.weighting must be one of {weighting.WEIGHTINGS}, got {kind!r}"
        )
    if kind in ("uncertainty", "gradnorm"):
        lr = lc.weighting_lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"config.loss.weighting_lr must be a number > 0, got {lr!r}")
    if kind in ("gradnorm", "pcgrad"):
        _names(lc.task_specific_params, "config.loss.task_specific_params")
    if kind == "gradnorm":
        alpha = lc.gradnorm_alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise ValueError(f"config.loss.gradnorm_alpha must be a number >= 0, got {alpha!r}")
        _names(lc.gradnorm_params, "config.loss.gradnorm_params")


def _note_single_source(m, schema) -> None:
    """A multi-source model on one source trains, but its improved loss does nothing: say so."""
    cls = get_model_class(m.name)
    if not issubclass(cls, paper.PaperMMoE) or schema.num_sources > 1:
        return
    if paper.resolve_options(m, m.name, cls.fixed)["multisource"]:
        logging.warning(
            "config.model.name=%r uses the multi-source improved loss, but the data has one "
            "source (num_sources=%d): one feature-space mapping serves every row and the source "
            "discriminator has one class, so its loss is 0 and the adversarial term is inert",
            m.name,
            schema.num_sources,
        )


def _regression_tasks(schema) -> list[str]:
    return [t for k, t in enumerate(schema.tasks) if schema.is_regression(k)]


def validate(config, schema) -> None:
    T = schema.num_tasks
    m = config.model
    if m.name not in model_names():
        raise ValueError(
            f"config.model.name: unknown model {m.name!r}; valid names: {model_names()}"
        )
    _positive_int(m.embed_dim, "config.model.embed_dim")
    _positive_int(m.num_experts, "config.model.num_experts")
    _widths(m.expert_hidden, "config.model.expert_hidden", allow_empty=False)
    _widths(m.gate_hidden, "config.model.gate_hidden", allow_empty=True)
    _widths(m.tower_hidden, "config.model.tower_hidden", allow_empty=True)
    for key in ("expert_activation", "tower_activation"):
        if m[key] not in layers.ACTIVATIONS:
            raise ValueError(
                f"config.model.{key} must be one of {layers.ACTIVATIONS}, got {m[key]!r}"
            )
    if not 0.0 <= m.dropout < 1.0:
        raise ValueError(f"config.model.dropout must be in [0, 1), got {m.dropout}")
    _note_single_source(m, schema)

    lc = config.loss
    if lc.cascade not in losses.CASCADES:
        raise ValueError(
            f"config.loss.cascade must be one of {losses.CASCADES}, got {lc.cascade!r}"
        )
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

    _positive_int(config.batch_size, "config.batch_size")
    _positive_int(config.eval_batch_size, "config.eval_batch_size")
    if config.num_steps is None:
        _positive_int(config.num_epochs, "config.num_epochs")
    else:
        _positive_int(config.num_steps, "config.num_steps")
    for key in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
        _positive_int(config[key], f"config.{key}")
    if config.compute_dtype not in DTYPES:
        raise ValueError(
            f"config.compute_dtype must be one of {DTYPES}, got {config.compute_dtype!r}"
        )
    if config.optim.name not in optim.OPTIMIZERS:
        raise ValueError(
            f"config.optim.name must be one of {optim.OPTIMIZERS}, got {config.optim.name!r}"
        )
    if config.optim.schedule not in optim.SCHEDULES:
        raise ValueError(
            f"config.optim.schedule must be one of {optim.SCHEDULES}, got {config.optim.schedule!r}"
        )
    if not config.optim.learning_rate > 0:
        raise ValueError(
            f"config.optim.learning_rate must be > 0, got {config.optim.learning_rate}"
        )
    _positive_int(config.metrics.top_n, "config.metrics.top_n")
