"""Model registry: ``config.model.name`` → the class that builds it.

Every model is constructed as ``cls(schema, model_config, rngs=rngs)`` and called as
``model(batch, train=..., key=...)``, returning a dict with at least ``logits`` [B, T]; models with
gates also return ``gates`` [B, T, E] (per-task expert weights) for diagnostics, and models with an
auxiliary objective return ``aux_loss`` (a scalar added to the task loss) and ``aux_metrics``.

Names: one name per concept. A registered name (``config.model.name``, what users type and what
results/ and the README show) names one assembly class, its CamelCase (``mlp`` → ``MLP``,
``boost_experts`` → ``BoostExperts``), in the architecture's assembly file (``mlp.py``, ``mmoe.py``,
...; the paper's variants, which differ only in the options they fix, all in ``paper.py``). The
building block a variant adds lives in the module of its concept and carries the concept's name
plus the kind of block, never a model's bare name: ``expert_attention.py`` holds
``ExpertAttentionLayer``, ``feature_attention.py`` ``FeatureAttentionLayer``,
``boost_experts.py`` ``BoostExpertBank``, ``attention_gates.py`` ``CoarseAttentionGates`` and
``FineAttentionGates``.
"""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

_MODELS: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice ({_MODELS[name]} and {cls})")
        _MODELS[name] = cls
        return cls

    return wrap


def model_names() -> list[str]:
    return sorted(_MODELS)


def get_model_class(name: str) -> type:
    if name not in _MODELS:
        raise ValueError(f"config.model.name: unknown model {name!r}; valid names: {model_names()}")
    return _MODELS[name]


def build_model(schema, model_config, *, seed: int) -> nnx.Module:
    """Builds the configured model with parameters initialised from ``seed``."""
    cls = get_model_class(model_config.name)
    return cls(schema, model_config, rngs=nnx.Rngs(params=seed))
