"""Models: pure Flax NNX modules (they import only jax, jax.numpy and flax.nnx).

Importing this package registers every architecture; ``build_model`` builds one by name. Every
architecture is an ``assembly.Assembly`` (inputs → bottom → per-task towers) that says only what
differs, and reads ``config.model`` once through ``options.py``; names follow the rule in
``registry.py``.
"""

import mtl_jax.models.paper  # noqa: F401  (registers the paper's models)
from mtl_jax.models import aitm, esmm, mlp, mmoe, ple, shared_bottom  # noqa: F401
from mtl_jax.models.registry import build_model, get_model_class, model_names

__all__ = ["build_model", "get_model_class", "model_names"]
