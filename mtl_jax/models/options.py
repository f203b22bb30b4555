"""Reading the config: typed values, each checked once, each error one line naming its key.

Every assembly model reads ``config.model`` once, through its ``read_options(cfg, schema)``, into a
frozen ``ModelOptions`` (or a subclass that adds the model's own keys); the building blocks then
take those typed values and check nothing. ``mtl_jax.config_check`` calls the same
``read_options`` before anything is built, and checks the rest of the config with the same value
checks below, so no check is written twice.
"""

from __future__ import annotations

import dataclasses

from mtl_jax.models.layers import ACTIVATIONS


def positive_int(value, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return value


def widths(value, key: str, *, allow_empty: bool = True) -> tuple[int, ...]:
    if (
        not isinstance(value, (tuple, list))
        or (not allow_empty and not value)
        or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in value)
    ):
        raise ValueError(
            f"{key} must be a {'' if allow_empty else 'non-empty '}list of positive widths, "
            f"got {value!r}"
        )
    return tuple(value)


def choice(value, key: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
    return value


def flag(value, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be True or False, got {value!r}")
    return value


def number(value, key: str, *, positive: bool = False) -> float:
    """A number >= 0 (``positive``: > 0)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 if positive else value >= 0)
    ):
        raise ValueError(f"{key} must be a number {'>' if positive else '>='} 0, got {value!r}")
    return float(value)


def required(cfg, key: str):
    """``config.model.<key>``, which the model named by ``config.model.name`` cannot do without."""
    if key not in cfg:
        raise ValueError(f"config.model.{key} is not set; model {cfg.name!r} needs it")
    return cfg[key]


def needs_two_tasks(schema, name: str, why: str) -> None:
    if schema.num_tasks < 2:
        raise ValueError(f"model {name!r} {why}; the data has tasks {list(schema.tasks)}")


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """The ``config.model`` keys every assembly model has (``configs/common.py``)."""

    name: str
    embed_dim: int
    num_experts: int
    expert_hidden: tuple[int, ...]
    gate_hidden: tuple[int, ...]
    tower_hidden: tuple[int, ...]
    expert_activation: str
    tower_activation: str
    dropout: float

    @staticmethod
    def read(cfg) -> ModelOptions:
        """Reads and checks the shared keys of ``cfg`` (``config.model``)."""
        options = ModelOptions(
            name=cfg.name,
            embed_dim=positive_int(cfg.embed_dim, "config.model.embed_dim"),
            num_experts=positive_int(cfg.num_experts, "config.model.num_experts"),
            expert_hidden=widths(
                cfg.expert_hidden, "config.model.expert_hidden", allow_empty=False
            ),
            gate_hidden=widths(cfg.gate_hidden, "config.model.gate_hidden"),
            tower_hidden=widths(cfg.tower_hidden, "config.model.tower_hidden"),
            expert_activation=choice(
                cfg.expert_activation, "config.model.expert_activation", ACTIVATIONS
            ),
            tower_activation=choice(
                cfg.tower_activation, "config.model.tower_activation", ACTIVATIONS
            ),
            dropout=cfg.dropout,
        )
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"config.model.dropout must be in [0, 1), got {cfg.dropout}")
        return options

    def extend(self, cls: type, **own):
        """These options as ``cls``, a subclass, with its own fields ``own`` added."""
        return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **own)
